"""Resolution-generic nets: powers of two from a 4x4 base and 48x48 (STL-10) from a 6x6 base."""
import pytest
import torch

from models import Batch, DataSpec, build_model
from protocols.config import resolve


@pytest.mark.parametrize("res", [16, 48])
@pytest.mark.parametrize("name", ["gan", "vae", "avade", "avade-rd", "avade-s2"])
def test_models_train_and_sample_at_resolution(name, res):
    torch.manual_seed(0)
    spec = DataSpec(3, res, 256, 10)
    model = build_model(name, resolve(name, budget="smoke").model_cfg, spec).train()
    batch = Batch(torch.randint(0, 256, (2, *spec.shape), dtype=torch.uint8), torch.randint(0, 10, (2,)))
    for stage in model.stages(1):
        for phase in stage.phases:
            out = model.losses(phase, batch)
            assert torch.isfinite(out["loss"]), (name, res, phase)
            out["loss"].backward()
    model.eval()
    assert model.sample(2).shape == (2, *spec.shape)
    nll = model.nll(batch.x)
    assert nll is not None and torch.isfinite(nll).all()


def test_unsupported_resolution_is_a_clear_error():
    with pytest.raises(ValueError, match="resolution must be a power of two"):
        build_model("vae", resolve("vae", budget="smoke").model_cfg, DataSpec(1, 28, 256, 10))
