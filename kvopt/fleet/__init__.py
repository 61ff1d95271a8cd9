"""Fleet sizing as a MILP (Pyomo, solved with HiGHS): which replica configurations, how many,
for one or more workloads under SLOs, budget, inventory and power. See README.md, "Fleet
sizing"."""
