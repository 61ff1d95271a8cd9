"""Every catalog model estimates, plans (one small plan) and exports (vLLM launch config):
no architecture in the catalog that the physics, the planner or the exporter cannot take."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kvopt import api, list_models
from kvopt.catalog.model_spec import ModelSpec
from kvopt.errors import KvoptError
from kvopt.export.plans import render
from kvopt.serving.replica import build_replica

GPUS = ("B200", "B300")  # large enough for every catalog model at TP <= 8
SHORT = {"input_len": 256, "output_len": 32}


def _where(m: ModelSpec) -> tuple[str, int]:
    """The smallest (GPU, TP) that holds the model in its checkpoint's own format."""
    for gpu in GPUS:
        for tp in (1, 2, 4, 8):
            try:
                if build_replica(model=m, gpu=gpu, tp=tp).fits:
                    return gpu, tp
            except KvoptError:
                continue
    raise AssertionError(f"{m.name} fits nowhere")


def _images(m: ModelSpec) -> dict[str, Any]:
    return {"images_per_request": 1, "image_size": "512x512"} if m.vision else {}


@pytest.mark.parametrize("model", list_models(), ids=lambda m: m.name)
def test_every_model_estimates_plans_and_exports(model: ModelSpec) -> None:
    gpu, tp = _where(model)
    e = api.estimate(model=model.name, gpu=gpu, tp=tp, rps=0.5, **SHORT, **_images(model))
    assert e.memory.fits and e.weights == model.default_weights
    assert math.isfinite(e.latency.ttft_p99_ms) and e.latency.tpot_ms > 0
    plan = api.plan(model=model.name, rps=0.5, **SHORT, **_images(model), gpus=(gpu,),
                    tp_options=(tp,), precisions=((model.default_weights, "bf16"),),
                    batches=(8,), capacity="screen", explain=False)
    d = plan.to_dict()
    assert d["fleet"] and d["fleet"][0]["tp"] == tp
    text = render(d, "vllm")
    assert "vllm serve" in text and f"--tensor-parallel-size {tp}" in text
