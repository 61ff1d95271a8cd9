"""The discrete-event simulator of the engine model, request by request and step by step:
it validates the analytic steady state (:mod:`kvopt.serving.steady`) and runs what the
analytic model approximates (preemptions, arbitrary traces)."""

from kvopt.serving.sim.simulator import SimResult, simulate

__all__ = ["SimResult", "simulate"]
