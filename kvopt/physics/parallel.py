"""A replica's parallel layout beyond tensor parallelism: expert parallelism (EP), attention
data parallelism (DP) and pipeline parallelism (PP).

One replica is ``tp x dp x pp`` GPUs:

* ``pp`` pipeline stages, each holding about ``L / pp`` consecutive layers (the largest stage
  ``ceil(L / pp)``), activations handed from stage to stage;
* in each stage ``dp`` attention ranks, each a tensor-parallel group of ``tp`` GPUs with its
  own batch and KV cache (SGLang ``--enable-dp-attention``, vLLM ``--data-parallel-size``,
  TensorRT-LLM ``enable_attention_dp``); the dense parts (attention, dense MLPs, shared
  experts, embeddings, LM head) are replicated across the ranks;
* the routed experts of a stage spread over all ``W = tp x dp`` GPUs of the stage: ``ep``
  expert-parallel ranks of ``moe_tp = W / ep`` GPUs each, every rank holding ``E / ep``
  experts sliced ``moe_tp`` ways (aiconfigurator's ``tp x attention_dp = moe_tp x moe_ep``).

``tp``-only (ep = dp = pp = 1) is the layout kvopt models everywhere else; :func:`check` says
in one line why a layout cannot run a model (EP on a dense model, EP that does not divide the
experts or ``tp x dp``, more stages than layers).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kvopt.catalog.model_spec import ModelSpec
from kvopt.errors import InputError

Array = npt.NDArray[np.float64]
_PART = re.compile(r"(tp|ep|dp|pp)(\d+)")


@dataclass(frozen=True, kw_only=True, order=True)
class Parallel:
    """``tp x dp x pp`` GPUs, experts over ``ep`` ranks (see the module docstring)."""

    tp: int = 1
    ep: int = 1
    dp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        for name in ("tp", "ep", "dp", "pp"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(name, v, "must be a positive integer")
        if self.world % self.ep:
            raise InputError("ep", self.ep, f"expert parallelism must divide the tp x dp = "
                             f"{self.world} GPUs of a stage (moe_tp = tp x dp / ep)",
                             f"use an ep that divides {self.world}")

    @property
    def world(self) -> int:
        """GPUs of one pipeline stage (``tp x dp``): the MoE layers' group."""
        return self.tp * self.dp

    @property
    def gpus(self) -> int:
        """GPUs of the replica."""
        return self.tp * self.dp * self.pp

    @property
    def moe_tp(self) -> int:
        """Tensor-parallel slices of each expert (``tp x dp / ep``)."""
        return self.world // self.ep

    @property
    def plain(self) -> bool:
        """Tensor parallelism only (the layout the rest of kvopt models)."""
        return self.ep == self.dp == self.pp == 1

    @property
    def label(self) -> str:
        """``tp4``, ``tp1ep8dp8``, ``tp4pp2``: the parts that are not 1 after ``tp``."""
        rest = "".join(f"{k}{v}" for k, v in (("ep", self.ep), ("dp", self.dp),
                                              ("pp", self.pp)) if v > 1)
        return f"tp{self.tp}{rest}"


def parse(text: str, field: str = "--parallel") -> Parallel:
    """``"tp4ep8dp2"``, ``"tp8"``, ``"tp2pp2"`` (order free, each part once; a missing part
    is 1) -> :class:`Parallel`."""
    s = str(text).strip().lower()
    parts = _PART.findall(s)
    if not s or "".join(f"{k}{v}" for k, v in parts) != s:
        raise InputError(field, text, "a layout is tpN followed by any of epN, dpN, ppN",
                         "e.g. tp8, tp4ep8dp2, tp2pp2")
    seen: dict[str, int] = {}
    for k, v in parts:
        if k in seen:
            raise InputError(field, text, f"{k} given twice")
        seen[k] = int(v)
    if "tp" not in seen:
        seen["tp"] = 1
    return Parallel(**seen)


def stage_layers(model: ModelSpec, pp: int) -> int:
    """Layers of the largest pipeline stage: ``ceil(L / pp)`` (vLLM, SGLang and TensorRT-LLM
    split the layers into ``pp`` contiguous near-equal parts)."""
    return math.ceil(model.num_layers / pp)


def micro_batches(sequences: Any, pp: int) -> Array:
    """Micro-batches in flight: the engine keeps up to ``pp`` (one per stage), each with at
    least one sequence: ``min(pp, max(1, sequences))``."""
    return np.asarray(np.clip(np.asarray(sequences, dtype=np.float64), 1.0, float(pp)))


def pipeline_cycle_s(*, micro_s: Any, micro: Any, handoff_s: Any, stage_share: float) -> Array:
    """Time in which each of ``micro`` micro-batches crosses every stage once (every
    sequence advances one step): the dependency chain of one micro-batch (``micro_s``, the
    whole model's layers over all stages, plus the ``pp - 1`` hand-offs ``handoff_s``), or
    the busiest stage serving all of them one after another, whichever is longer::

        cycle = max(micro_s + handoff_s,  micro x micro_s x stage_share)

    ``stage_share`` = ``ceil(L / pp) / L``. With fewer micro-batches than stages the stages
    idle ``1 - micro x micro_s x stage_share / cycle`` of the cycle (the bubble)."""
    t = np.asarray(micro_s, dtype=np.float64)
    return np.asarray(np.maximum(t + np.asarray(handoff_s), np.asarray(micro) * t * stage_share))


def check(model: ModelSpec, par: Parallel) -> None:
    """Raise :class:`InputError` when ``par`` cannot run ``model``."""
    moe = model.moe
    if moe is None and (par.ep > 1 or par.dp > 1):
        what = "expert parallelism" if par.ep > 1 else "attention data parallelism"
        raise InputError("ep" if par.ep > 1 else "dp", par.ep if par.ep > 1 else par.dp,
                         f"{what} needs a mixture-of-experts model; {model.name} is dense",
                         "use tp (and more replicas) for a dense model")
    if moe is not None and moe.num_experts % par.ep:
        raise InputError("ep", par.ep, f"{model.name} has {moe.num_experts} routed experts: "
                         "expert parallelism must divide them",
                         f"use an ep that divides {moe.num_experts}")
    if par.pp > model.num_layers:
        raise InputError("pp", par.pp, f"{model.name} has {model.num_layers} layers: at most "
                         "that many pipeline stages", f"use pp <= {model.num_layers}")


def layouts(tps: tuple[int, ...], eps: tuple[int, ...] = (1,), dps: tuple[int, ...] = (1,),
            pps: tuple[int, ...] = (1,)) -> tuple[Parallel, ...]:
    """The cross product of the options as layouts (those whose ep divides tp x dp), in
    order, each once."""
    out: dict[Parallel, None] = {}
    for tp in tps:
        for pp in pps:
            for dp in dps:
                for ep in eps:
                    if (tp * dp) % ep == 0:
                        out[Parallel(tp=tp, ep=ep, dp=dp, pp=pp)] = None
    return tuple(out)
