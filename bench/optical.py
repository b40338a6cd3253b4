"""`make bench-optical`: uniform against engineered optical circuits, in the twin.

Cells: two fabrics with optical circuit switches (topologies/jupiter.py: 4 aggregation blocks
of 4 hosts, 2 OCSes; topologies/railocs.py: 2 servers of 8 GPUs, 8 rails on 3 OCSes), three
workloads (a skewed MoE dispatch all-to-all, Zipf 1.2; a stride permutation whose blocks send
to the next block, the block-level skew topology engineering is for; one training iteration
with 4 pipeline stages, data parallelism and one MoE layer), each with the fabric's uniform
circuit plan and with circuits engineered for the run's demand (fabric/optical.py,
controllers/topoeng.py), several seeds. Every cell goes through the runner like any spec
(``backend: twin``, nominal timebase).

Printed per cell, medians over seeds: completion time (ms), efficiency against the lower
bound the runner computes for the workload, the share of block-to-block demand the circuits
serve directly, the reconfiguration time paid before the run (ms; engineered circuits are
set up between jobs, so it is not overlapped with the flows), flows lost, and the speedup of
engineered over uniform without and with the reconfiguration time. Next to them, published
figures: TopoOpt (NSDI'23) reports up to 3.4x faster training from co-optimizing topology and
parallelization; Jupiter (SIGCOMM'22) reports that traffic plus topology engineering on
its OCS direct-connect fabric reaches throughput similar to a Clos for production traffic,
with 60% of traffic on direct block-to-block paths (mean block-level path length 1.4), and
credits the Clos-to-direct-connect evolution (with other changes) with 30% lower capex and 41%
lower power. Those are whole-system figures at their scale; ours are per-collective at 16 hosts.

Run: ``python -m bench.optical [--seeds N] [--results DIR]``.
"""

import argparse
import json
import os
import statistics
import sys

from fabric import runner, spec as specs

FABRICS = {
    "jupiter": {"name": "jupiter", "params": {}},
    "railocs": {"name": "railocs", "params": {"servers": 2, "gpus_per_server": 8, "ocses": 3}},
}
WORKLOADS = {
    "moe_skewed": {"name": "moe_alltoall",
                   "params": {"tokens_per_host": 512, "skew": 1.2, "schedule": "all"}},
    "block_ring": {"name": "permutation",
                   "params": {"bytes_per_flow": 10 ** 8, "kind": "stride", "stride": 4}},
    "training": {"name": "training_iteration",
                 "params": {"pp": 4, "microbatches": 4, "grad_bytes": 64 * 2 ** 20,
                            "moe_layers": 1, "tokens": 1024, "skew": 1.2}},
}
PLANS = ("uniform", "engineered")
PUBLISHED = ("TopoOpt (NSDI'23): up to 3.4x faster training; Jupiter (SIGCOMM'22): "
             "throughput similar to Clos with traffic + topology engineering, 60% of traffic "
             "on direct block paths (mean path length 1.4 blocks)")


def run_cell(fabric, workload, plan, seed, results):
    raw = {"name": f"opt-{fabric}-{workload}-{plan}", "seed": seed, "backend": "twin",
           "circuits": plan, "topology": FABRICS[fabric], "policy": "ecmp",
           "workload": WORKLOADS[workload]}
    spec = specs.check(raw, where=raw["name"])
    _dir, s = runner.run_spec(spec, raw["name"], results, log=lambda *_: None,
                              report_at_end=False)
    return {"completion_s": s["completion_time_s"], "efficiency": s["efficiency"],
            "direct_share": s["ocs"]["direct_share"],
            "reconfiguration_s": s["ocs"]["reconfiguration_ms"] / 1e3,
            "flows_lost": s["flows_total"] - s["flows_completed"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--results", default="results")
    args = ap.parse_args(argv)
    rows, cells = [], {}
    for fabric in FABRICS:
        for workload in WORKLOADS:
            for plan in PLANS:
                runs = [run_cell(fabric, workload, plan, seed, args.results)
                        for seed in range(1, args.seeds + 1)]
                cells[(fabric, workload, plan)] = runs
    head = (f"{'fabric':8} {'workload':11} {'plan':10} {'time_ms':>9} {'eff':>5} "
            f"{'direct':>6} {'reconf_ms':>9} {'lost':>4} {'speedup':>7} {'w/reconf':>8}")
    print(head)
    print("-" * len(head))
    for (fabric, workload, plan), runs in cells.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        base = cells[(fabric, workload, "uniform")]
        speed = statistics.median(b["completion_s"] / r["completion_s"]
                                  for b, r in zip(base, runs))
        paid = statistics.median(b["completion_s"] / (r["completion_s"] + r["reconfiguration_s"])
                                 for b, r in zip(base, runs))
        print(f"{fabric:8} {workload:11} {plan:10} {med['completion_s'] * 1e3:9.3f} "
              f"{med['efficiency']:5.2f} {med['direct_share']:6.2f} "
              f"{med['reconfiguration_s'] * 1e3:9.1f} {sum(r['flows_lost'] for r in runs):4d} "
              f"{speed:7.2f} {paid:8.2f}")
        rows.append({"fabric": fabric, "workload": workload, "plan": plan, "seeds": len(runs),
                     **med, "speedup": speed, "speedup_with_reconfiguration": paid})
    print(f"\n{len(next(iter(cells.values())))} seeds per cell, twin (nominal rates), medians. "
          f"Published: {PUBLISHED}.")
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "bench-optical.json")
    with open(path, "w") as f:
        json.dump(rows, f, indent=2)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
