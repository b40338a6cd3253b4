"""`make bench-twin`: the twin against the emulation on the cells of `make bench`, in one
invocation.

The cells are bench/policies.py's: the k=4 fat-tree and the 2:1 leaf-spine, every policy of
the routing core and the one-switch non-blocking baseline, the four workloads (skewed and
uniform MoE all-to-all, stride and random permutations), the same seeds and sizes. Each cell
runs in the emulation (real Mininet, Open vSwitch, the Ryu app; bench/policies.py's runner)
and then in the twin (fabric/twin.py) with the same spec and schedule, in the emulation's
timebase (``twin.timebase: emulated``: the same scaled rates and times, so the controller's
statistics period relates to the flows as in the emulation):

- ``twin``: the twin on its own (what a user of the twin gets), drawing the source ports
  from the seed as the emulation's agents bound theirs (traffic/ports.py);
- ``replay``: the twin given the emulation run's connections (``connections.json``); it
  differs from ``twin`` only where the kernel had to pick a port (the drawn one was in use
  on the host), and the gap between ``replay`` and the emulation is the model (TCP against
  max-min fair sharing).

Compared per (fabric, workload, policy): the median over seeds of the efficiency relative to
the non-blocking baseline (paired by seed) on each backend, their difference (target: within
0.10), and whether the policies rank alike on every (fabric, workload): every pair of
policies whose emulation medians differ by more than :data:`RANK_TIE` must be ordered the same
by the twin, not reversed by more than 0.01 (pairs closer than that in the emulation are ties
the seeds cannot order; pairs the twin ties are listed). Then two scenarios of
their own, ring all-reduce and inference serving (experiments/allreduce_ring.yaml and
inference.yaml), on both backends: completion time and latency percentiles within 15%.
Printed and written under results/<run-id>/ (``agreement.md``, ``agreement.csv``,
``runs.csv``, ``summary.json``), with the wall-clock time of each backend.

Run: ``python -m bench.twin_bench [--quick] [--seeds N] [--fabrics ...] [--policies ...]
[--workloads ...] [--no-scenarios] [--results DIR]``; ``--quick`` runs 3 seeds.
"""

import argparse
import csv
import json
import os
import statistics
import sys
import time

from bench import policies as pb
from fabric import bundled, runner, spec as specs
from fabric.progress import Progress
from topologies import build
from topologies.nonblocking import nonblocking_like
from traffic import workloads

BACKENDS = ("emulation", "twin", "replay")
TARGET_EFFICIENCY_GAP = 0.10
RANK_TIE = 0.05
RANK_TWIN_TIE = 0.01
TARGET_SCENARIO_GAP = 0.15
SCENARIOS = ("allreduce_ring", "inference")  # bundled specs (fabric/bundled.py)
SCENARIO_KEYS = {
    "allreduce_ring": ("completion_time_s", "fct_p50_s", "fct_p99_s"),
    "inference": ("completion_time_s", "ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "e2e_p50_s",
                  "e2e_p95_s", "e2e_p99_s"),
}


def twin_spec(spec):
    """The same spec on the twin, in the emulation's timebase."""
    raw = {k: v for k, v in spec.items() if k not in ("backend", "twin")}
    return specs.check(dict(raw, backend="twin", twin={"timebase": "emulated"}))


def graph(fabric):
    if fabric == pb.BASELINE:
        return nonblocking_like(build(*pb.FABRICS["fattree"][:1], **pb.FABRICS["fattree"][1]))
    return build(*pb.FABRICS[fabric][:1], **pb.FABRICS[fabric][1])


def twin_rows(emu_rows, size, out_dir):
    """The twin (own ports) and the replay (the emulation's connections) of every
    emulation row; each row done is a milestone shown as it finishes."""
    rows = []
    graphs = {}
    with Progress(len(emu_rows), "twin cells") as progress:
        for er in emu_rows:
            rows += _twin_cell(er, graphs, size, out_dir, progress)
    return rows


def _twin_cell(er, graphs, size, out_dir, progress):
    """The twin and replay rows of one emulation row."""
    rows = []
    fabric, workload, seed = er["fabric"], er["workload"], er["seed"]
    policy = "ecmp" if er["policy"] == pb.BASELINE else er["policy"]
    g = graphs.get(fabric) or graphs.setdefault(fabric, graph(fabric))
    spec = twin_spec(pb.make_spec(fabric, policy, workload, size))
    schedule = workloads.build(spec["workload"]["name"], g, seed,
                               **spec["workload"]["params"])
    label = f"{fabric}-{policy}-{workload}-s{seed}"
    conn_path = os.path.join(out_dir, "networks", f"{fabric}-{policy}", label,
                             "connections.json")
    for backend in ("twin", "replay"):
        conns = None
        if backend == "replay":
            if not os.path.exists(conn_path):
                continue
            with open(conn_path) as f:
                conns = json.load(f)
        t0 = time.monotonic()
        res = runner.run_twin(g, schedule, spec,
                              os.path.join(out_dir, backend, label), lambda m: None,
                              five_tuples=conns)
        rows.append(dict(er, backend=backend, efficiency=res["efficiency"],
                         flows_completed=res["flows_completed"],
                         flows_total=res["flows_total"], timed_out=res["timed_out"],
                         cpu_idle_min=None, cpu_saturated=False,
                         run_s=round(time.monotonic() - t0, 3)))
    eff = {r["backend"]: r["efficiency"] for r in rows}
    progress.advance(f"{label}: emulation {_f(er['efficiency'])}, twin {_f(eff['twin'])}, "
                     f"replay {_f(eff.get('replay'))}")
    return rows


def _f(x, digits=3):
    return "-" if x is None else f"{x:.{digits}f}"


def _sig(x):
    """A time of a scenario, which may be microseconds (nominal 400 Gbit/s), to 4 figures."""
    return "-" if x is None else f"{x:.4g}"


def agreement(rows):
    """Per (fabric, workload, policy): the median relative efficiency on each backend and
    the twin's and replay's gaps to the emulation; per (fabric, workload): rank agreement."""
    tables = {b: pb.summarize([r for r in rows if r["backend"] == b]) for b in BACKENDS}
    cells = []
    ran = {r["fabric"] for r in rows if r["policy"] != pb.BASELINE}
    for i, e in enumerate(tables["emulation"]):
        if not e["runs"] or e["policy"] == pb.STP or e["fabric"] not in ran:
            continue
        med = {b: tables[b][i]["vs_nonblocking"]["median"] for b in BACKENDS}
        eff = {b: tables[b][i]["efficiency"]["median"] for b in BACKENDS}
        gap = {b: None if med[b] is None or med["emulation"] is None
               else med[b] - med["emulation"] for b in ("twin", "replay")}
        cells.append({"fabric": e["fabric"], "workload": e["workload"], "policy": e["policy"],
                      "seeds": e["runs"], "rel": med, "efficiency": eff, "gap": gap,
                      "within": gap["twin"] is not None
                      and abs(gap["twin"]) <= TARGET_EFFICIENCY_GAP,
                      "cpu_saturated_runs": e["cpu_saturated_runs"]})
    ranks = []
    for fabric in pb.FABRICS:
        for workload in pb.WORKLOADS:
            mine = [c for c in cells if (c["fabric"], c["workload"]) == (fabric, workload)
                    and c["policy"] != pb.BASELINE and c["rel"]["emulation"] is not None]
            if len(mine) < 2:
                continue
            bad, tied = [], []
            for x in mine:
                for y in mine:
                    if x["rel"]["emulation"] - y["rel"]["emulation"] > RANK_TIE:
                        d_twin = (x["rel"]["twin"] or 0) - (y["rel"]["twin"] or 0)
                        if d_twin < -RANK_TWIN_TIE:
                            bad.append(f"{x['policy']} > {y['policy']}")
                        elif d_twin <= RANK_TWIN_TIE:
                            tied.append(f"{x['policy']} = {y['policy']}")
            order = {b: [c["policy"] for c in sorted(
                mine, key=lambda c: -(c["rel"][b] or 0))] for b in ("emulation", "twin")}
            ranks.append({"fabric": fabric, "workload": workload, "same": not bad,
                          "inverted": sorted(bad), "tied_in_twin": sorted(tied),
                          "order": order})
    return cells, ranks


def scenario(name, path, out_dir, log):
    """One scenario spec on both backends; the key figures side by side."""
    spec = specs.load(path)
    spec = dict(spec, repeats=1, baseline=False)
    out = {}
    for backend, s in (("emulation", spec), ("twin", twin_spec(spec))):
        t0 = time.monotonic()
        run_dir, summary = runner.run_spec(s, path, os.path.join(out_dir, "scenarios", backend),
                                           log=lambda m: None)
        run = summary["runs"][0]
        figures = {k: run.get(k) for k in ("completion_time_s", "fct_p50_s", "fct_p99_s")}
        inf = run.get("inference") or {}
        figures.update({k: inf.get(k) for k in SCENARIO_KEYS[name] if k.startswith(
            ("ttft", "e2e"))})
        out[backend] = {"figures": figures, "wall_s": round(time.monotonic() - t0, 2),
                        "flows": f"{run['flows_completed']}/{run['flows_total']}",
                        "cpu_idle_min": run.get("cpu_idle_min")}
    diffs = {}
    for k in SCENARIO_KEYS[name]:
        e, t = out["emulation"]["figures"].get(k), out["twin"]["figures"].get(k)
        diffs[k] = None if not e or t is None else (t - e) / e
    out["relative_diff"] = diffs
    out["within"] = all(d is not None and abs(d) <= TARGET_SCENARIO_GAP for d in diffs.values())
    log(f"  {name}: " + ", ".join(f"{k} {_sig(out['emulation']['figures'].get(k))} / "
                                  f"{_sig(out['twin']['figures'].get(k))}"
                                  for k in SCENARIO_KEYS[name]))
    return out


def lines(cells, ranks, scen, walls):
    out = ["efficiency relative to non-blocking, median over seeds (emulation | twin | "
           "replay), twin - emulation (target |gap| <= 0.10):"]
    head = ("fabric", "workload", "policy", "emulation", "twin", "replay", "gap", "ok")
    rows = [head]
    for c in cells:
        rows.append((c["fabric"], c["workload"], c["policy"], _f(c["rel"]["emulation"]),
                     _f(c["rel"]["twin"]), _f(c["rel"]["replay"]),
                     "-" if c["gap"]["twin"] is None else f"{c['gap']['twin']:+.3f}",
                     "yes" if c["within"] else "NO"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    out += [" | ".join(x.ljust(w) for x, w in zip(r, widths)) for r in rows]
    n_ok = sum(c["within"] for c in cells)
    gaps = [abs(c["gap"]["twin"]) for c in cells if c["gap"]["twin"] is not None]
    out.append(f"cells within 0.10: {n_ok}/{len(cells)}; max |gap| {max(gaps, default=0):.3f}")
    out.append(f"policy ranking (pairs apart by > {RANK_TIE} in the emulation keep their order "
               f"in the twin):")
    for r in ranks:
        out.append(f"  {'same' if r['same'] else 'DIFFERENT':<9} {r['fabric']}/{r['workload']}: "
                   f"emulation {' > '.join(r['order']['emulation'])}; twin "
                   f"{' > '.join(r['order']['twin'])}"
                   + (f"; inverted: {', '.join(r['inverted'])}" if r["inverted"] else "")
                   + (f"; tied in the twin: {', '.join(r['tied_in_twin'])}"
                      if r["tied_in_twin"] else ""))
    for name, s in scen.items():
        d = s["relative_diff"]
        out.append(f"{name} (twin vs emulation, target within 15%): "
                   + ", ".join(f"{k} {_sig(s['emulation']['figures'].get(k))} / "
                               f"{_sig(s['twin']['figures'].get(k))} "
                               f"({'-' if d[k] is None else f'{d[k]:+.1%}'})" for k in d)
                   + f" -> {'within' if s['within'] else 'NOT within'}; wall "
                     f"{s['emulation']['wall_s']} s / {s['twin']['wall_s']} s")
    out.append(f"wall clock of the cells: emulation {walls['emulation']:.0f} s (runs only, "
               f"bring-up excluded), twin {walls['twin']:.1f} s, replay {walls['replay']:.1f} s"
               f" -> twin {walls['emulation'] / max(walls['twin'], 1e-9):,.0f}x faster")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 seeds (default 5)")
    p.add_argument("--seeds", type=int)
    p.add_argument("--results", default="results")
    p.add_argument("--fabrics", nargs="+", choices=list(pb.FABRICS), default=list(pb.FABRICS))
    p.add_argument("--policies", nargs="+", choices=pb.POLICIES, default=list(pb.POLICIES))
    p.add_argument("--workloads", nargs="+", choices=list(pb.WORKLOADS),
                   default=list(pb.WORKLOADS))
    p.add_argument("--no-scenarios", action="store_true",
                   help="skip the ring all-reduce and inference comparisons")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full"
    seeds = list(range(1, 1 + (a.seeds or pb.SEEDS[mode])))
    if os.geteuid() != 0:
        print("error: the emulation side needs root", file=sys.stderr)
        return 2
    out_dir, log = pb.start(a.results, f"bench-twin-{mode}")
    t0 = time.monotonic()
    size = pb.SIZES["full"]
    log(f"bench-twin ({mode}): {a.fabrics} x {a.policies} + {pb.BASELINE}, {a.workloads}, "
        f"seeds {seeds}, sizes x {size}; results in {out_dir}")
    try:
        emu = pb.run_matrix(seeds, size, a.fabrics, a.policies, a.workloads, out_dir, log)
        for r in emu:
            r["backend"] = "emulation"
        log("twin, every cell")
        tw = twin_rows(emu, size, out_dir)
        scen = {}
        if not a.no_scenarios:
            log("scenarios")
            for name in SCENARIOS:
                scen[name] = scenario(name, bundled.spec_path(name), out_dir, log)
    except KeyboardInterrupt:
        print("interrupted: network, controller and agents torn down", file=sys.stderr)
        return 130
    rows = emu + tw
    cells, ranks = agreement(rows)
    walls = {b: sum(r["run_s"] for r in rows if r["backend"] == b) for b in BACKENDS}
    text = lines(cells, ranks, scen, walls)
    idle = [r["cpu_idle_min"] for r in emu if r["cpu_idle_min"] is not None] or [0]
    text.append(f"bench-twin duration {(time.monotonic() - t0) / 60:.1f} min; emulation CPU "
                f"idle min over runs: median {_f(statistics.median(idle))}"
                f", saturated runs {sum(1 for r in emu if r['cpu_saturated'])}/{len(emu)}")
    pb.write_runs(out_dir, rows)
    with open(os.path.join(out_dir, "agreement.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fabric", "workload", "policy", "seeds", "emulation", "twin", "replay",
                    "gap_twin", "gap_replay", "within"])
        for c in cells:
            w.writerow([c["fabric"], c["workload"], c["policy"], c["seeds"],
                        c["rel"]["emulation"], c["rel"]["twin"], c["rel"]["replay"],
                        c["gap"]["twin"], c["gap"]["replay"], c["within"]])
    with open(os.path.join(out_dir, "agreement.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"mode": mode, "seeds": seeds, "cells": cells, "ranks": ranks,
                   "scenarios": scen, "walls": walls, "runs": rows}, f, indent=2,
                  sort_keys=True, default=str)
    print("\n".join(text))
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
