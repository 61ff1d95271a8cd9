"""The input layer's parallel layouts (part of :mod:`kvopt.build`, which re-exports them):
one replica's ``tp``/``ep``/``dp``/``pp`` checked against :mod:`kvopt.limits`, and the
layouts of a search space from option lists or an explicit list (``"tp8,tp4ep8dp2"``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kvopt import limits
from kvopt.errors import InputError

TextOr = str | Iterable[Any]


def parallel(*, tp: int = 1, ep: int = 1, dp: int = 1, pp: int = 1) -> tuple[int, int, int, int]:
    """``(tp, ep, dp, pp)`` each in its range (:mod:`kvopt.limits`), ``tp x dp x pp``
    within :data:`kvopt.limits.REPLICA_GPUS`."""
    out = (limits.TP.check("tp", tp), limits.EP.check("ep", ep), limits.DP.check("dp", dp),
           limits.PP.check("pp", pp))
    limits.REPLICA_GPUS.check("tp x dp x pp", out[0] * out[2] * out[3],
                              "use fewer GPUs per replica (and more replicas)")
    return out


_check = parallel  # ``layouts`` takes a ``parallel`` list


def layouts(tps: tuple[int, ...], ep_options: TextOr = (1,), dp_options: TextOr = (1,),
            pp_options: TextOr = (1,), parallel: TextOr | None = None) -> tuple[Any, ...]:
    """The layouts beyond TP of a space (:class:`kvopt.physics.parallel.Parallel`); empty
    when every option is 1 (tensor parallelism over ``tps``)."""
    from kvopt.build import ints, items
    from kvopt.physics import parallel as par

    if parallel is not None and (not isinstance(parallel, str) or parallel.strip()):
        listed = items(parallel, "parallel")
        limits.check_list("parallel", listed, "e.g. tp8,tp4ep8dp2,tp2pp2")
        out = []
        for text in listed:
            lay = par.parse(str(text), "parallel")
            _check(tp=lay.tp, ep=lay.ep, dp=lay.dp, pp=lay.pp)
            out.append(lay)
        return tuple(dict.fromkeys(out))
    eps = ints(ep_options, "ep_options", limits.EP)
    dps = ints(dp_options, "dp_options", limits.DP)
    pps = ints(pp_options, "pp_options", limits.PP)
    if (eps, dps, pps) == ((1,), (1,), (1,)):
        return ()
    found = par.layouts(tps, eps, dps, pps)
    for lay in found:
        limits.REPLICA_GPUS.check("tp x dp x pp", lay.gpus, "use smaller options")
    if not found:
        raise InputError("ep_options", ",".join(map(str, eps)), "no expert-parallel size "
                         "divides any tp x dp of the options", "include ep 1 or a divisor")
    return found
