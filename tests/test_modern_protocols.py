"""Issue 36 through the protocols and the page: the new columns (Vendi, MMD, memorization) in the cell's feature
space, a DINOv2 / CLIP table from random-weight files marked as such, the nearest-training-image gallery, and an
unlabelled ``folder:`` dataset measured in a self-supervised space with no weight file and no labels."""
import numpy as np
import pytest
from PIL import Image

from common.store import ResultsStore
from metrics import keys

timm = pytest.importorskip("timm")
pytest.importorskip("open_clip")


def _run(tmp_path, *args):
    from protocols.run import main
    return main(["--budget", "smoke", "--no-progress", "--seeds", "1", "--results", str(tmp_path / "r.sqlite"),
                 "--out", str(tmp_path / "runs"), "--site", str(tmp_path / "site"), *args])


def test_ablation_records_the_new_columns_and_marks_random_dinov2_weights(tmp_path):
    from test_metrics_modern import clip_file, dinov2_file
    weights, _ = dinov2_file(tmp_path / "dinov2_random.pth", depth=1)
    clip = clip_file(tmp_path / "clip_random.pt")
    assert _run(tmp_path, "--protocol", "ablation", "--model", "vae", "--set", "eval.n_samples=100",
                "--set", "eval.n_real=100", "--set", f"eval.dinov2_weights={weights}",
                "--set", f"eval.clip_weights={clip}") == 0
    rows = ResultsStore(tmp_path / "r.sqlite").measurements()
    vae = {(r["metric"], r["extractor"]) for r in rows if r["model"] == "vae"}
    for k in (keys.VENDI, keys.MMD, keys.AUTHPCT, keys.FLD, keys.FLD_GAP, keys.C_T):
        assert (k, "domain") in vae, k
    assert (keys.BPD_GAP, "") in vae
    dino = {e for m, e in vae if m == keys.FID and e.startswith("dinov2")}
    assert len(dino) == 1 and "-unpublished-" in dino.pop()            # never a plain FD_DINOv2 label
    assert any(m == keys.CMMD and "unpublished" in e for m, e in vae)
    from protocols.verdicts import stored_values        # claims and the summary: the cell's own (domain) space
    vae_rows = [r for r in rows if r["model"] == "vae" and r["metric"] == keys.FID]
    domain_fid = next(r["value"] for r in vae_rows if r["extractor"] == "domain")
    assert stored_values(ResultsStore(tmp_path / "r.sqlite"), {"vae": vae_rows[0]["group_key"]})["vae"][keys.FID] == [
        domain_fid]
    floor = {r["metric"] for r in rows if r["model"] == "real"}
    assert keys.VENDI in floor and keys.AUTHPCT not in floor           # the floor's samples are training images
    run = next(r for r in ResultsStore(tmp_path / "r.sqlite").runs() if r["model"] == "vae")
    assert (tmp_path / "runs").exists() and __import__("pathlib").Path(run["run_dir"], "nearest_train.png").exists()
    page = (tmp_path / "site" / "index.html").read_text()
    for text in ("Vendi", "AuthPct (%)", "FLD gap", "BPD gap", "RANDOM OR UNPUBLISHED WEIGHTS", "nearest training"):
        assert text in page, text


def test_unlabelled_folder_runs_in_a_self_supervised_space(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(400):                                   # 5% test: 20 images, no labels
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    assert _run(tmp_path, "--protocol", "datasets", "--model", "avade-s2", "--dataset", f"folder:{d}@8") == 0
    rows = ResultsStore(tmp_path / "r.sqlite").measurements()
    model = {r["metric"]: r for r in rows if r["model"] == "avade-s2"}
    assert model[keys.FID]["extractor"] == "selfsup" and keys.IS not in model
    assert {keys.VENDI, keys.MMD, keys.AUTHPCT, keys.FLD_GAP} <= set(model)
    assert model[keys.FID]["extra"]["extractor_label"].startswith("self-supervised")
    page = (tmp_path / "site" / "index.html").read_text()
    assert "self-supervised denoising autoencoder" in page and "reconstruction R" in page
    # a second run finds the cell complete although it has no IS (the space has no classes)
    assert _run(tmp_path, "--protocol", "datasets", "--model", "avade-s2", "--dataset", f"folder:{d}@8") == 0
    assert len(ResultsStore(tmp_path / "r.sqlite").measurements()) == len(rows)
