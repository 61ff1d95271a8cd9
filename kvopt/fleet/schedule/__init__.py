"""Cost over time: a schedule of replicas per period, region and way to pay (a MILP over
the plan's options; README "Schedules"). The formulation table is in
:mod:`kvopt.fleet.schedule.constraints`."""
