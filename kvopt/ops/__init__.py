"""Operations: watch a running deployment against its plan (:mod:`kvopt.ops.watch`,
Prometheus metrics in :mod:`kvopt.ops.metrics`) and the local web app (:mod:`kvopt.ops.ui`)."""
