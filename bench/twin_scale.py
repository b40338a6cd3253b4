"""`make bench-twin-scale`: how far the twin goes, in wall-clock time and memory, on two cores.

Cells (each in its own process, so its peak memory is its own; wall time includes building
the fabric and the schedule and computing the metrics; CPU seconds are printed beside it, as
the wall clock of a shared machine also counts other processes' turns):

- a uniform MoE all-to-all (every host sends to every other host, pairwise-shift rounds,
  3 channels) on fat-trees k=4, 8, 16 under ``ecmp``, ``congestion``, ``hedera`` and
  ``collective``, and k=32 under ``ecmp`` and ``collective`` (``--k`` picks sizes);
  targets: k=16 <= 60 s and <= 4 GB each, k=32 <= 15 minutes;
- ring all-reduce over the 1,024 hosts of the k=16 fat-tree: <= 60 s;
- all with ``twin.resolution`` 0.01 (``--resolution``; 0 is exact, and ten times slower at
  k=16) and ``twin.epoch`` 0.1 (``--epoch``: the rates are solved again once 10% of the
  flows in flight have started or ended, not at every event; 0 is every event, 8x slower at
  k=16);
- the price of those two: the all-to-all at ``--agree-k`` (8; several sizes may be given)
  under every policy, exact (resolution 0, epoch 0) beside the cells' settings, efficiency
  and FCT percentiles side by side;
- the k=4 demo spec (experiments/demo.yaml) on the emulation and on the twin, one after the
  other, ``--speed-runs`` times (3): the twin's median wall clock must be >= 100x below the
  emulation's (needs root; ``--no-emulation`` skips it).

With ``--cut-at-us US`` every twin stops at that simulated time: the cell gives the CPU
time of building the schedule and the twin, of the policy's set-up and of the event loop
so far (per event), and the whole run's CPU time extrapolated by the flows received: how
to size a cell out of reach (k=32) from a run of minutes.

A cell that runs past ``--cell-timeout`` (a k=32 cell: past its 15 minutes) is stopped and
reported as such; one whose estimated memory exceeds what the machine has free is not
started. Printed and written
under results/<run-id>/ (``scale.md``, ``scale.json``, ``scale.png``: wall time and peak
memory against hosts, log-log).

Run: ``python -m bench.twin_scale [--k 4 8 16 32] [--policies ...] [--no-ring]
[--no-emulation] [--speed-runs N] [--cell-timeout S] [--cut-at-us US] [--results DIR]``.
"""

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from fabric import bundled, runner, spec as specs
from fabric.emulate import EmulationError
from fabric.progress import Progress

POLICIES = ("ecmp", "congestion", "hedera", "collective")
K32_POLICIES = ("ecmp", "collective")
ALLTOALL = {"tokens_per_host": 4096, "hidden": 4096, "dtype_bytes": 2, "top_k": 2,
            "skew": 0.0, "schedule": "shift", "channels": 3}
RING = {"size_bytes": 256 * 2 ** 20, "channels": 1}
TARGETS = {16: (60.0, 4.0), 32: (900.0, None)}   # k -> (seconds, GB)
RING_TARGET_S = 60.0
SPEEDUP_TARGET = 100.0


def run_cell(k, workload, params, policy, resolution=0.0, cut_at_s=None, epoch=0.0):
    """One twin run in this process; returns its figures (called in a child process).
    With ``cut_at_s`` the twin stops at that simulated time, and the event loop's CPU time
    is extrapolated to the whole schedule by the flows received (see ``--cut-at-us``)."""
    from fabric.twin import Twin
    from topologies import build
    from traffic import metrics, workloads
    if cut_at_s is not None:
        _warm_kernel(build, workloads, Twin)
    t0, c0 = time.monotonic(), _cpu_s()
    g = build("fattree", k=k, link_gbps=400)
    schedule = workloads.build(workload, g, 1, **params)
    t1 = time.monotonic()
    twin = Twin(g, schedule, policy=policy, seed=1, resolution=resolution,
                max_time_s=cut_at_s, epoch=epoch)
    c1 = _cpu_s()
    if cut_at_s is not None:
        # The connections before the clock (the policy's set-up) are timed apart from the
        # event loop (run_columns does not make them again): only the loop is extrapolated.
        twin.setup()
    c2 = _cpu_s()
    records, info = twin.run_columns()
    c3 = _cpu_s()
    t2 = time.monotonic()
    res = {"k": k, "hosts": k ** 3 // 4, "workload": workload, "policy": policy,
           "flows": len(schedule), "events": info["events"], "resolution": resolution,
           "epoch": epoch,
           "rate_solves": info["rate_solves"], "stats_rounds": info["stats_rounds"]}
    if cut_at_s is not None:
        received = int(np.isfinite(records.end_s).sum())
        # The run's preparation (its columns' children, the tables) is paid once: only the
        # event loop after it grows with the flows received.
        prepare = info["prepare_cpu_s"]
        loop = c3 - c2 - prepare
        res.update({
            "cut_at_s": cut_at_s, "flows_received": received,
            "build_s": round(t1 - t0, 2), "simulate_s": round(t2 - t1, 2),
            "cpu_s": round(c3 - c0, 1), "build_cpu_s": round(c1 - c0, 1),
            "setup_cpu_s": round(c2 - c1, 1), "prepare_cpu_s": round(prepare, 1),
            "loop_cpu_s": round(loop, 1),
            "us_per_event": round(loop / max(info["events"], 1) * 1e6, 1),
            # Early events come denser per flow received than later ones: at k=16 this
            # over-estimates the whole run's loop (see the README's twin-scale figures).
            "extrapolated_cpu_s": round(c2 - c0 + prepare
                                        + loop * len(schedule) / max(received, 1)),
            "peak_rss_gb": _peak_rss_gb()})
        return res
    summary = metrics.summarize(g, schedule, records, 1.0)
    t3 = time.monotonic()
    fct = records.end_s - records.start_s
    fct = fct[np.isfinite(fct)]
    res.update({"flows_completed": summary["flows_completed"],
                "efficiency": summary["efficiency"], "wall_s": round(t3 - t0, 2),
                "fct_p50_s": float(np.percentile(fct, 50)) if len(fct) else None,
                "fct_p99_s": float(np.percentile(fct, 99)) if len(fct) else None,
                "build_s": round(t1 - t0, 2), "simulate_s": round(t2 - t1, 2),
                "metrics_s": round(t3 - t2, 2), "cpu_s": round(_cpu_s(), 1),
                "peak_rss_gb": _peak_rss_gb()})
    return res


def _warm_kernel(build, workloads, Twin):
    """Load the compiled event loop (numba, from its cache) with a k=4 run, so that a cut
    run's CPU time per event is the loop's, not the loading's (about a second)."""
    g = build("fattree", k=4)
    Twin(g, workloads.build("moe_alltoall", g, 1, tokens_per_host=64, schedule="shift"),
         seed=1).run_columns(compiled=True)


def _peak_rss_gb():
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 3)


def _cpu_s():
    """CPU seconds this process has used: on a shared machine, what a cell costs when the
    wall clock also counts the other processes' turns."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# Peak memory per flow of a cell, measured at k=16 (1,047,552 flows): under ecmp the schedule's
# and the twin's columns (0.33-0.38 GB; 6.5 GB for the 67 million flows of k=32, before the
# metrics); under collective the intent's columns, its paths as columns and its assignment
# besides (0.52 GB; 3.1 GB for k=24's 11.9 million flows, 15.6 GB for k=32's 67 million,
# about 230 bytes a flow); policies whose core learns every flow, both directions, its flow
# objects (hedera 1.68 GB, congestion 2.47 GB). What a cell is estimated to need, with some
# margin (collective's little: more would refuse k=32 on a machine of 23 GB).
BYTES_PER_FLOW = {"ecmp": 150, "collective": 250, "hedera": 1800}
LEARNED_BYTES_PER_FLOW = 2600


def available_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def cell(k, workload, params, policy, timeout_s, resolution=0.0, cut_at_s=None, epoch=0.0):
    """Run one cell in a child process; a cell past ``timeout_s`` is killed, and a cell
    whose estimated memory exceeds what the machine has free is not started."""
    hosts = k ** 3 // 4
    # An all-to-all has a flow per host pair; a ring all-reduce one per rank, step and channel.
    flows = (hosts * (hosts - 1) if workload == "moe_alltoall"
             else 2 * (hosts - 1) * hosts * params.get("channels", 1))
    need = flows * BYTES_PER_FLOW.get(policy, LEARNED_BYTES_PER_FLOW)
    free = available_bytes()
    if free is not None and need > 0.8 * free:
        res = {"k": k, "hosts": hosts, "workload": workload, "policy": policy,
               "error": f"not started: {flows:,} flows need about {need / 2 ** 30:.0f} GB "
                        f"under {policy}, {free / 2 ** 30:.1f} GB are free"}
        return res
    cmd = [sys.executable, "-m", "bench.twin_scale", "--cell",
           json.dumps([k, workload, params, policy, resolution, cut_at_s, epoch])]
    t0 = time.monotonic()
    try:
        out = subprocess.run(cmd, cwd=runner.ROOT, capture_output=True, text=True,
                             timeout=timeout_s)
    except subprocess.TimeoutExpired:
        res = {"k": k, "hosts": k ** 3 // 4, "workload": workload, "policy": policy,
               "timed_out": True, "wall_s": round(time.monotonic() - t0, 1)}
    else:
        if out.returncode != 0:
            res = {"k": k, "hosts": k ** 3 // 4, "workload": workload, "policy": policy,
                   "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            res = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def line(r):
    head = f"k={r['k']:<2} {r['hosts']:>5} hosts {r['workload']:<14} {r['policy']:<10}"
    if r.get("timed_out"):
        return f"{head} stopped after {r['wall_s']:.0f} s (cell timeout)"
    if r.get("error"):
        return f"{head} failed: {r['error']}"
    if r.get("cut_at_s") is not None:
        return (f"{head} cut at {r['cut_at_s'] * 1e6:g} us simulated: "
                f"{r['flows_received']:,} of {r['flows']:,} flows received; CPU: build "
                f"{r['build_cpu_s']} s, set-up {r['setup_cpu_s']} s, preparing the loop "
                f"{r['prepare_cpu_s']} s, loop {r['loop_cpu_s']} s "
                f"({r['events']:,} events, {r['us_per_event']:,.0f} us each); "
                f"{r['peak_rss_gb']:.2f} GB; whole run extrapolated: "
                f"{r['extrapolated_cpu_s']:,} s CPU")
    return (f"{head} {r['flows']:>9,} flows: {r['wall_s']:8.1f} s wall (build {r['build_s']}, "
            f"simulate {r['simulate_s']}, metrics {r['metrics_s']}; {r['cpu_s']} s CPU), "
            f"{r['peak_rss_gb']:.2f} GB, efficiency {r['efficiency']:.3f}, "
            f"{r['events']:,} events")


def agreement_lines(pairs):
    """Exact against the cells' settings, per policy: efficiency, FCT p50 and p99, CPU."""
    if not pairs:
        return []
    out = ["exact (resolution 0, epoch 0) beside the cells' settings, uniform all-to-all:",
           "  | k | policy | efficiency exact | approx | gap | FCT p50 gap | FCT p99 gap "
           "| CPU s exact | approx |", "  |---|---|---|---|---|---|---|---|---|"]
    for exact, approx in pairs:
        if any(r.get("error") or r.get("timed_out") for r in (exact, approx)):
            out.append(f"  | {exact['k']} | {exact['policy']} | failed or stopped | | | | | | |")
            continue

        def rel(key):
            return f"{approx[key] / exact[key] - 1:+.1%}" if exact[key] else "-"
        out.append(f"  | {exact['k']} | {exact['policy']} | {exact['efficiency']:.4f} | "
                   f"{approx['efficiency']:.4f} | {approx['efficiency'] - exact['efficiency']:+.4f}"
                   f" | {rel('fct_p50_s')} | {rel('fct_p99_s')} | {exact['cpu_s']} | "
                   f"{approx['cpu_s']} |")
    return out


def verdicts(cells, speed):
    out = []
    for r in cells:
        target = TARGETS.get(r["k"]) if r["workload"] == "moe_alltoall" else (
            (RING_TARGET_S, None) if r["workload"] == "allreduce_ring" else None)
        if target is None:
            continue
        secs, gb = target
        if r.get("cut_at_s") is not None:
            out.append(f"  {'extrapolated':<7} k={r['k']} {r['workload']} {r['policy']}: "
                       f"<= {secs:.0f} s: about {r['extrapolated_cpu_s']:,} s CPU")
            continue
        ok = (not r.get("timed_out") and not r.get("error") and r["wall_s"] <= secs
              and (gb is None or r["peak_rss_gb"] <= gb))
        what = f"<= {secs:.0f} s" + (f", <= {gb:.0f} GB" if gb else "")
        got = ("stopped" if r.get("timed_out") else "failed" if r.get("error")
               else f"{r['wall_s']:.1f} s, {r['peak_rss_gb']:.2f} GB")
        out.append(f"  {'met' if ok else 'NOT MET':<7} k={r['k']} {r['workload']} "
                   f"{r['policy']}: {what}: {got}")
    if speed:
        ok = speed["speedup"] >= SPEEDUP_TARGET
        out.append(f"  {'met' if ok else 'NOT MET':<7} k=4 demo spec, twin >= 100x faster "
                   f"than the emulation: {speed['speedup']:,.0f}x (medians of "
                   f"{speed['runs']} runs each: {speed['emulation_s']:.1f} s vs "
                   f"{speed['twin_s']:.3f} s wall; each run "
                   f"{min(speed['ratios']):,.0f}-{max(speed['ratios']):,.0f}x)")
    return out


def speedup(out_dir, log, repeats=3):
    """The demo spec on both backends, one after the other, ``repeats`` times: the median
    wall clock of each (the twin's side is a fraction of a second that moves with what else
    the machine runs), and every pair's ratio."""
    path = bundled.spec_path("demo")
    spec = specs.load(path)
    walls = {"emulation": [], "twin": []}
    efficiency = {"emulation": [], "twin": []}
    for i in range(repeats):
        for backend in ("emulation", "twin"):
            s = specs.check(dict({k: v for k, v in spec.items() if k != "backend"},
                                 backend=backend))
            t0 = time.monotonic()
            # The runs alone: drawing their reports (the same for both) is not compared.
            _, summary = runner.run_spec(s, path,
                                         os.path.join(out_dir, "speedup", f"{backend}-{i}"),
                                         log=lambda m: None, report_at_end=False)
            walls[backend].append(time.monotonic() - t0)
            efficiency[backend].append(summary["efficiency"])
        log(f"  k=4 demo, run {i + 1} of {repeats}: emulation {walls['emulation'][-1]:.1f} s, "
            f"twin {walls['twin'][-1]:.3f} s -> "
            f"{walls['emulation'][-1] / walls['twin'][-1]:,.0f}x")
    emu, twin = float(np.median(walls["emulation"])), float(np.median(walls["twin"]))
    res = {"emulation_s": emu, "twin_s": twin, "speedup": emu / twin, "runs": repeats,
           "walls": walls,
           "ratios": [e / t for e, t in zip(walls["emulation"], walls["twin"])],
           "efficiency": {b: float(np.median(v)) for b, v in efficiency.items()}}
    log(f"  k=4 demo, medians of {repeats}: emulation {emu:.1f} s, twin {twin:.3f} s -> "
        f"{res['speedup']:,.0f}x (each run: "
        f"{', '.join(f'{r:,.0f}x' for r in res['ratios'])})")
    return res


def plot(cells, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for policy in sorted({r["policy"] for r in cells}):
        mine = sorted((r for r in cells if r["policy"] == policy and "wall_s" in r
                       and r["workload"] == "moe_alltoall"), key=lambda r: r["hosts"])
        if not mine:
            continue
        hs = [r["hosts"] for r in mine]
        a1.loglog(hs, [r["wall_s"] for r in mine], "o-", label=policy)
        a2.loglog(hs, [r["peak_rss_gb"] for r in mine], "o-", label=policy)
    for ax, what in ((a1, "wall time (s)"), (a2, "peak memory (GB)")):
        ax.set_xlabel("hosts (fat-tree, uniform all-to-all)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        if ax.lines:   # cut cells (--cut-at-us) have no whole-run figures to draw
            ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out_dir, "scale.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--policies", nargs="+", choices=POLICIES, default=list(POLICIES))
    p.add_argument("--no-ring", action="store_true")
    p.add_argument("--no-emulation", action="store_true")
    p.add_argument("--cell-timeout", type=float, default=1800.0)
    p.add_argument("--speed-runs", type=int, default=3,
                   help="runs of the demo spec on each backend for the speed ratio (medians)")
    p.add_argument("--resolution", type=float, default=0.01,
                   help="the twin's completion resolution (twin.resolution; 0 = exact)")
    p.add_argument("--epoch", type=float, default=0.1,
                   help="solve the rates again once this fraction of the flows in flight "
                        "changed (twin.epoch; 0 = at every event)")
    p.add_argument("--agree-k", type=int, nargs="+", default=[8],
                   help="fat-tree sizes at which every policy also runs exact, to show what "
                        "--resolution and --epoch cost in accuracy (0: skip)")
    p.add_argument("--cut-at-us", type=float, default=None,
                   help="stop every twin at this simulated time (microseconds) and "
                        "extrapolate its event loop's CPU time to the whole schedule by the "
                        "flows received: what a cell out of reach would cost")
    p.add_argument("--results", default="results")
    p.add_argument("--cell", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.cell:
        print(json.dumps(run_cell(*json.loads(a.cell))))
        return 0
    out_dir = os.path.join(a.results, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                           + "-bench-twin-scale")
    os.makedirs(out_dir, exist_ok=True)

    def log(m):
        print(m, flush=True)

    todo = []
    for k in a.k:
        for policy in a.policies:
            if k >= 32 and policy not in K32_POLICIES:
                continue
            # A k=32 cell past its 15 minutes has missed its target: it is stopped there.
            timeout = min(a.cell_timeout, TARGETS[32][0]) if k >= 32 else a.cell_timeout
            todo.append((k, "moe_alltoall", ALLTOALL, policy, timeout))
    if not a.no_ring:
        todo.append((16, "allreduce_ring", RING, "ecmp", a.cell_timeout))
    cells = []
    with Progress(len(todo), "cells") as progress:
        for k, workload, params, policy, timeout in todo:
            progress.status(f"k={k} {workload} {policy}")
            cells.append(cell(k, workload, params, policy, timeout, a.resolution,
                              None if a.cut_at_us is None else a.cut_at_us * 1e-6, a.epoch))
            progress.advance(line(cells[-1]))
    agreement = []
    agree_k = [k for k in a.agree_k if k > 0]
    if agree_k and a.cut_at_us is None:
        with Progress(2 * len(a.policies) * len(agree_k), "exact beside") as progress:
            for k in agree_k:
                for policy in a.policies:
                    pair = []
                    for res, ep in ((0.0, 0.0), (a.resolution, a.epoch)):
                        progress.status(f"k={k} {policy} resolution {res} epoch {ep}")
                        pair.append(cell(k, "moe_alltoall", ALLTOALL, policy,
                                         a.cell_timeout, res, None, ep))
                        progress.advance(line(pair[-1]))
                    agreement.append(pair)
    speed = None
    if not a.no_emulation:
        if os.geteuid() != 0:
            log("  (not root: the emulation-to-twin speed ratio is skipped)")
        else:
            try:
                speed = speedup(out_dir, log, max(1, a.speed_runs))
            except EmulationError as e:   # the twin's cells still get their table
                log(f"  (speed ratio not measured: {e})")
    text = ([f"twin.epoch {a.epoch} (rates solved again once that fraction of the flows in "
             f"flight changed; 0 = every event), twin.resolution {a.resolution} (with epoch "
             f"0 only: a flow may end up to that fraction of its duration early)"]
            + [line(r) for r in cells] + agreement_lines(agreement) + ["targets:"]
            + verdicts(cells, speed))
    plot_path = plot(cells, out_dir)
    with open(os.path.join(out_dir, "scale.json"), "w") as f:
        json.dump({"cells": cells, "speedup": speed, "agreement": agreement}, f, indent=2)
    with open(os.path.join(out_dir, "scale.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))
    print(f"results: {out_dir} ({os.path.basename(plot_path)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
