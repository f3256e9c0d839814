"""Every registered model, one training step and the ablation's evaluation at the smoke budget, through the real
driver path (``scheduler.run_cells``: claim, train with the one trainer, BPD, samples -> features -> every metric,
rows committed to a store).  Parametrised over ``MODELS.names()`` at collection time, so a model added in a new
file is covered without editing a test file (README "Add a model").

Cost: the fast suite runs one name per model class (``representatives``: ~1-3 s each on a 2-core machine); every
other name runs under ``-m slow`` (``tox -e slow``).  The digits data are the real embedded set; the feature
extractor is the domain classifier at a recipe of seconds (``tests_support.TINY``), fitted once per module.
"""
from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from common.store import ResultsStore
from metrics import keys as K
from metrics.features import DomainExtractor
from models import MODELS, DataSpec, GenerativeModel, build_model, register_model
from protocols import cells as C
from protocols import evaluate as E
from protocols.api import PROTOCOLS
from protocols.base import Context
from protocols.config import resolve, stage_plan
from protocols.datasets import ImageDataset, load_dataset
from protocols.pipeline import Cell, extractor_identity
from protocols.scheduler import run_cells
from tests_support import TINY

ROOT = Path(__file__).resolve().parents[1]
#: the smoke budget at one step, a few test images for BPD, one thread (the values are not the point: that every
#: stage runs); its 200 samples are what the memorization tests need at least
SMOKE = {"train.steps": "1", "train.threads": "1", "train.progress": "false", "eval.bpd_images": "8",
         "eval.snapshots": "0"}


def representatives(names: List[str] | None = None) -> List[str]:
    """The first registered name of each model class: what the fast suite trains (a new file's class is new)."""
    first: Dict[type, str] = {}
    for name in names if names is not None else MODELS.names():
        first.setdefault(MODELS.get(name), name)
    return sorted(first.values())


def _upsampled(ds: ImageDataset, factor: int) -> ImageDataset:
    up = lambda x: x.repeat_interleave(factor, 2).repeat_interleave(factor, 3)  # noqa: E731
    return ImageDataset(f"{ds.name}-x{factor}", up(ds.train_x), ds.train_y, up(ds.val_x), ds.val_y, up(ds.test_x),
                        ds.test_y, ds.levels, ds.n_classes, ds.source)


class Harness:
    """The digits data (8x8, and 16x16 for models that need it, e.g. a 4-scale flow), a Context per resolution with
    a seconds-long domain extractor in place of the default one, and a store per test folder."""

    def __init__(self, root: Path):
        self.root, self.digits, self.ctx = root, load_dataset("digits"), {}

    def context(self, resolution: int, store: ResultsStore) -> Context:
        if resolution not in self.ctx:
            ds = self.digits if resolution == 8 else _upsampled(self.digits, resolution // 8)
            ctx = Context(dataset=ds, budget="smoke", store=None, out_dir=self.root / f"runs{resolution}",
                          device=torch.device("cpu"), progress=False)
            ctx._extractors[("domain", None, 1)] = DomainExtractor.fit_or_load(
                ds.train_x, ds.train_y, ds.levels, seed=0, cache_dir=None, recipe=TINY, progress=False)
            self.ctx[resolution] = ctx
        self.ctx[resolution].store = store
        return self.ctx[resolution]

    @staticmethod
    def resolution(name: str) -> int:
        """8, or 16 where the model cannot be built at 8x8 (it says so with a ValueError naming the resolution)."""
        cfg = resolve(name, budget="smoke", overrides=SMOKE)
        try:
            build_model(name, cfg.model_cfg, DataSpec(1, 8, 17, 10))
            return 8
        except ValueError as e:
            if "resolution" not in str(e):
                raise
            return 16

    def run(self, name: str, store: ResultsStore, protocol: str = "ablation"):
        """Train ``name`` one step and evaluate it as ``protocol``'s cells are; (outcome, stored rows, steps of every
        stage: one each)."""
        p, res = PROTOCOLS.get(protocol), self.resolution(name)
        ctx = self.context(res, store)
        cfg = resolve(name, budget="smoke", protocol=protocol, protocol_settings=p.settings(), overrides=SMOKE,
                      resolution=res)
        cell = Cell(p, name, 0, cfg, ctx.dataset.name, ctx.dataset.content_hash, extractor_identity(ctx, p, cfg))
        (outcome,) = run_cells(p, ctx, [cell], fresh=True, debug=True)
        return outcome, store.measurements(model=name), sum(s["steps"] for s in stage_plan(cfg))


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return Harness(tmp_path_factory.mktemp("every-model"))


@pytest.fixture(autouse=True)
def quick_sampling_cost(monkeypatch):
    """The cost rows come from the real code, timed once instead of 3 x 2 x 0.5 s."""
    monkeypatch.setattr(C, "sampling_cost_values", functools.partial(E.sampling_cost_values, rounds=1, min_time=0.0))


def check_one_step(harness: Harness, name: str, tmp_path: Path) -> List[dict]:
    """One step of training and the ablation's evaluation of ``name``: done, every stored value finite, a sample
    metric from the domain features, and a BPD exactly when the trained model has a density."""
    outcome, rows, steps = harness.run(name, ResultsStore(tmp_path / "results.sqlite"))
    assert outcome.status == "done", f"{name}: {outcome.error}"
    values = {r["metric"]: r["value"] for r in rows}
    bad = {k: v for k, v in values.items() if not torch.isfinite(torch.tensor(v))}
    assert not bad, f"{name}: non-finite values {bad}"
    assert K.FID in values and K.SAMPLES_PER_S in values, sorted(values)
    assert {r["at_step"] for r in rows} == {steps}, f"{name}: {sorted({r['at_step'] for r in rows})} steps, not {steps}"
    if K.BPD in values:          # a bound on bits per dimension: positive, and not per-dimension nats mistaken
        assert 0 < values[K.BPD] < 64, f"{name}: bpd {values[K.BPD]}"
    return rows


EVERY = [pytest.param(n, marks=() if n in representatives() else pytest.mark.slow, id=n) for n in MODELS.names()]


@pytest.mark.parametrize("name", EVERY)
def test_every_registered_model_trains_one_step_and_is_evaluated(name, harness, tmp_path):
    check_one_step(harness, name, tmp_path)


def test_the_fast_suite_trains_one_name_per_model_class():
    reps = representatives()
    assert {MODELS.get(n) for n in reps} == {MODELS.get(n) for n in MODELS.names()} and len(reps) == len(set(reps))
    assert "template" in reps          # the template of README "Add a model" is itself trained and evaluated


# ---- the interface is checked when a model is registered --------------------------------------------------------
def _model(**methods) -> type:
    """A GenerativeModel subclass with the template's methods, some replaced by ``methods``."""
    from models.template import TemplateModel
    return type("Broken", (TemplateModel,), methods)


@pytest.mark.parametrize("cls, message", [
    (_model(sample=lambda self, n: None), r"Broken.sample must accept \(n, labels=None\)"),
    (_model(losses=lambda self, batch: None), r"Broken.losses must accept \(phase, batch\)"),
    (_model(nll=lambda self, x: None), r"Broken.nll must accept \(x, k=1\)"),
    (_model(nll=lambda self, x, k=1: None), r"Broken.nll must say its units in its docstring: .* nats per image"),
    (_model(phases="main"), r"phases must be a non-empty tuple of phase names"),
    (type("Plain", (torch.nn.Module,), {}), r"is not a subclass of models.GenerativeModel"),
    (type("Bare", (GenerativeModel,), {}), r"Bare does not define losses; Bare does not define sample"),
])
def test_a_class_that_breaks_the_interface_is_refused_at_registration(cls, message):
    from models.template import TemplateConfig
    with pytest.raises(TypeError, match=message):
        register_model("broken-model", config=TemplateConfig)(cls)
    assert "broken-model" not in MODELS


def test_losses_without_a_loss_key_stop_at_the_first_step_with_a_message(harness, tmp_path):
    from protocols.trainer import Trainer
    cls = _model(losses=lambda self, phase, batch: {"nll": self.nll(batch.x).mean()})
    cfg = resolve("template", budget="smoke", overrides=SMOKE)
    trainer = Trainer(cls(cfg.model_cfg, DataSpec(1, 8, 17, 10)), harness.digits.train_x, cfg, tmp_path)
    with pytest.raises(TypeError, match=r"losses\('main', batch\) must return a dict .* with the key 'loss'"):
        trainer.fit()


def test_nll_of_a_batch_mean_is_refused_where_bpd_is_computed():
    import metrics
    from models.template import TemplateModel, TemplateConfig

    class MeanNll(TemplateModel):
        def nll(self, x, k=1):
            """nats per image, but averaged over the batch (wrong)."""
            return super().nll(x, k).mean()

    x = torch.randint(0, 17, (6, 1, 8, 8), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"MeanNll.nll\(x, k\) must return one value per image .*shape \(6,\)"):
        metrics.heldout_bpd(MeanNll(TemplateConfig(), DataSpec(1, 8, 17)), x, 17)


# ---- a model written from the README recipe alone --------------------------------------------------------------
def add_a_model_recipe() -> str:
    """The README's "Add a model" paragraph."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"\*\*Add a model\.\*\*(.*?)\n\n", text, re.S)
    assert m, "README.md has no **Add a model.** paragraph"
    return m.group(1)


def written_from_recipe(name: str, cls: str) -> str:
    """models/template.py with the renames the recipe asks for."""
    recipe = add_a_model_recipe()
    for needed in ("models/template.py", "models/zoo.py", '"template"', "TemplateModel", "TemplateConfig",
                   "sample(n, labels=None)", "losses(phase, batch)", "phase_parameters(phase)", "nll(x, k=1)",
                   "nats per image", "register_model", "presets"):
        assert needed in recipe, f"the README recipe no longer mentions {needed}"
    src = (ROOT / "models" / "template.py").read_text()
    for old, new in (('"template"', f'"{name}"'), ("TemplateModel", cls), ("TemplateConfig", f"{cls}Config")):
        src = src.replace(old, new)
    return src


def test_a_model_written_from_the_readme_recipe_trains_is_evaluated_shown_and_covered(harness, tmp_path):
    """The new file goes where the recipe says (a module of the models package, loaded from a temporary folder so
    the checkout is not touched); it registers, trains, is evaluated, appears on the leaderboard page and in
    ``--list``, and is among the names the every-model test trains in the fast suite, with no test file edited."""
    from leaderboard.build import build
    from protocols.run import list_registries
    name, module = "recipe-model", "models.recipe_model"
    path = tmp_path / "recipe_model.py"
    path.write_text(written_from_recipe(name, "RecipeModel"))
    spec = importlib.util.spec_from_file_location(module, path)
    try:
        sys.modules[module] = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)                       # = `from . import recipe_model` in models/zoo.py
        assert name in MODELS and name in representatives() and name in list_registries()
        rows = check_one_step(harness, name, tmp_path)
        assert {r["protocol"] for r in rows} == {"ablation"}
        page = Path(build(tmp_path / "results.sqlite", tmp_path / "site")).read_text()
        assert re.search(rf">\s*{re.escape(name)}\s*<", page), "the new model is not on the leaderboard page"
    finally:
        MODELS._items.pop(name, None)
        MODELS._meta.pop(name, None)
        sys.modules.pop(module, None)
