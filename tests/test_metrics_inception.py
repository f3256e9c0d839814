"""``inception`` extractor (metrics/features/inception.py): both real file formats, written here.

The pytorch-fid format is checked against pytorch-fid's own FIDInception blocks (the copy inside
clean-fid), randomly initialised and saved as a state_dict; the clean-fid format is a TorchScript
module with the same call convention (``layers`` -> pool3, ``output`` -> 1008 logits).
"""
import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from metrics.features.inception import ENV, URLS, InceptionExtractor, clean_resize
from metrics.features.inception_net import FIDInceptionV3


def _pytorch_fid_reference():
    """pytorch-fid's fid_inception_v3() architecture, without its download."""
    from cleanfid import inception_pytorch as ip

    net = torchvision.models.inception.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    net.Mixed_5b, net.Mixed_5c = ip.FIDInceptionA(192, pool_features=32), ip.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = ip.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b, net.Mixed_6c = ip.FIDInceptionC(768, channels_7x7=128), ip.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d, net.Mixed_6e = ip.FIDInceptionC(768, channels_7x7=160), ip.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b, net.Mixed_7c = ip.FIDInceptionE_1(1280), ip.FIDInceptionE_2(2048)
    for m in net.modules():   # variance-preserving init: O(1) activations (no slow denormals) and real signal
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    return net.eval()


class TinyTorchScriptInception(nn.Module):
    """clean-fid / stylegan2-ada call convention: ``layers`` on (x - 128) / 128 at 299, ``output`` 2048 -> 1008."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(3, 8, 5, stride=8), nn.ReLU(), nn.Conv2d(8, 2048, 1),
                                    nn.AdaptiveAvgPool2d(1))
        self.output = nn.Linear(2048, 1008)

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = torch.nn.functional.interpolate(img.float(), size=(299, 299), mode="bilinear", align_corners=False)
        features = self.layers((x - 128) / 128).reshape(-1, 2048)
        if return_features:
            return features
        return torch.softmax(self.output(features), dim=1)


@pytest.fixture(scope="module")
def pth_file(tmp_path_factory):
    torch.manual_seed(0)
    ref = _pytorch_fid_reference()
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(ref.state_dict(), path)
    return path, ref


def _images(n=2, c=3, size=8, seed=0):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(seed))


def test_missing_file_is_one_line_error_with_urls(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    for where in (None, tmp_path / "nope.pth"):
        with pytest.raises(FileNotFoundError) as e:
            InceptionExtractor(where)
        msg = str(e.value)
        assert "\n" not in msg and URLS[0] in msg and URLS[1] in msg and ENV in msg


def test_not_a_weights_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(3)}, bad)
    with pytest.raises(ValueError, match="neither"):
        InceptionExtractor(bad)


def test_architecture_matches_pytorch_fid_blocks(pth_file):
    path, ref = pth_file
    ext = InceptionExtractor(path)           # the real loader: strict state_dict load
    assert ext.format == "pytorch-fid" and isinstance(ext.net, FIDInceptionV3)
    x = torch.rand(2, 3, 75, 75, generator=torch.Generator().manual_seed(1)) * 2 - 1   # smallest valid input
    with torch.no_grad():
        ours = ext.net.pool3(x) @ ext.net.fc.weight.T + ext.net.fc.bias
        theirs = ref(x)
    scale = theirs.abs().max()
    torch.testing.assert_close(ours / scale, theirs / scale, rtol=1e-5, atol=1e-5)


def test_pth_forward_on_two_tiny_images(pth_file, monkeypatch):
    path, _ = pth_file
    monkeypatch.setenv(ENV, str(path))       # path from the environment
    ext = InceptionExtractor()
    feats, logits = ext.embed(_images())
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008) and torch.isfinite(feats).all()
    torch.testing.assert_close(logits, feats @ ext.net.fc.weight.T)       # no output bias
    assert ext.identity()["weights_sha256"] and ext.id.startswith("inception-")


def test_torchscript_file_loads_and_follows_clean_fid_convention(tmp_path):
    torch.manual_seed(0)
    module = TinyTorchScriptInception().eval()
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(module).save(str(path))
    ext = InceptionExtractor(path)
    assert ext.format == "torchscript"
    x = _images(c=1)                          # grey: replicated to 3 channels after the resize
    feats, logits = ext.embed(x)
    big = torch.from_numpy(np.stack([clean_resize(im) for im in (x * 255).numpy()])).repeat(1, 3, 1, 1)
    with torch.no_grad():
        expected = module.layers((big - 128) / 128).reshape(2, 2048)
    torch.testing.assert_close(feats, expected)
    torch.testing.assert_close(logits, expected @ module.output.weight.T)


def test_clean_resize_equals_clean_fid():
    from cleanfid.resize import make_resizer

    img = np.random.RandomState(0).randint(0, 256, (12, 10, 3)).astype(np.uint8)
    theirs = make_resizer("PIL", False, "bicubic", (299, 299))(img)          # H x W x C
    ours = clean_resize(img.transpose(2, 0, 1).astype(np.float32))            # C x H x W
    np.testing.assert_array_equal(ours.transpose(1, 2, 0), theirs)    # exact: the same single-threaded PIL call


def test_wrong_channel_count_is_rejected(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.script(TinyTorchScriptInception()).save(str(path))
    with pytest.raises(ValueError, match="C in"):
        InceptionExtractor(path).embed(torch.rand(1, 2, 8, 8))
