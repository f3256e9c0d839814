"""The cost axis: samples/s of a model against the GAN reference, measured the same way."""
import types

import pytest
import torch

from models import build_model
from models.base import DataSpec
from protocols import evaluate
from protocols.config import resolve

SPEC = DataSpec(channels=1, resolution=8, levels=17)


def _format(model: torch.nn.Module) -> str:
    """'channels_last' or 'nchw' for every 4-d weight where the two differ (more than one input channel and a
    kernel wider than 1); a mixture fails the test."""
    kinds = {p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
             for p in model.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[2] > 1}
    assert len(kinds) == 1, "a model with weights in both memory formats"
    return "channels_last" if kinds.pop() else "nchw"


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_gan_reference_runs_in_the_memory_format_of_the_model(monkeypatch, channels_last):
    cfg = resolve("avade", budget="smoke", dataset="digits", machine=False,
                  overrides={"train.channels_last": str(channels_last).lower()})
    assert cfg.train.channels_last is channels_last
    model = build_model("avade", cfg.model_cfg, SPEC).eval()
    if channels_last:                       # as the trainer leaves it (protocols/trainer.py)
        model = model.to(memory_format=torch.channels_last)
    seen = []

    def fake_rate(m, batch, min_time):
        seen.append((type(m).__name__, _format(m)))
        return 100.0 if type(m).__name__ == "GAN" else 40.0 + len(seen)     # the model's rate drifts: 42, 44, 46

    monkeypatch.setattr(evaluate, "_samples_per_s", fake_rate)
    ctx = types.SimpleNamespace(dataset=types.SimpleNamespace(spec=SPEC))
    values = {v["metric"]: v for v in evaluate.sampling_cost_values(ctx, cfg, model, rounds=3)}
    want = "channels_last" if channels_last else "nchw"
    assert [n for n, _ in seen] == ["GAN", "ADE"] * 3                      # alternating pairs
    assert {f for _, f in seen} == {want}
    assert values["samples_per_s"]["value"] == pytest.approx(44.0)        # the median round, not the fastest
    assert values["speed_vs_gan"]["value"] == pytest.approx(0.44)
    assert values["speed_vs_gan"]["extra"]["channels_last"] is channels_last
