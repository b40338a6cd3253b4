"""AI traffic: flow schedules, their generators and the metrics of a run.

- ``schedule``: the DAG of flows every backend executes (pure data);
- ``moe``: Mixture-of-Experts all-to-all and permutation generators;
- ``metrics``: bounds, bus bandwidth and flow completion times from flow records.

Nothing imported from this package opens sockets or touches Mininet; the in-host agent that
executes schedules lives in its own module.
"""
