"""Fleet sizing as a MILP (Pyomo, solved with HiGHS): which replica configurations, how many,
for one or more workloads under SLOs, budget, inventory and power. How it is built (the
linearization, the table of constraints and their builders): kvopt/fleet/README.md."""
