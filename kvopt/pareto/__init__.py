"""Pareto fronts over GPU type, replicas, TP, precision and max batch: NSGA-II (pymoo) and
an exact enumerated front, with hypervolume, a knee pick and review exports."""
