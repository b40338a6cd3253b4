"""`make bench`: every routing policy on the same AI workloads, side by side, in one invocation.

Fabrics: the k=4 fat-tree and a leaf-spine with 2:1 oversubscription (4 leaves, 2 spines, 4
hosts per leaf). Controllers: our controller under every policy of the routing core
(``shortest``, ``ecmp``, ``congestion``, ``hedera``, ``collective``), and two references:
Ryu's ``simple_switch_stp_13`` (``stp``: what a user gets out of the box on a loopy fabric)
and the one-switch non-blocking fabric with the same hosts and rates under our controller
(``nonblocking``: the most the emulator itself can reach; the hosts, rates and schedules of
both fabrics are the same, so one baseline serves both). Workloads: the skewed and the uniform
MoE dispatch all-to-all (pairwise shift, 3 channels), Hedera's stride permutation and a random
permutation (traffic/moe.py), each with the same seeds under every controller.

Each (fabric, controller) network is built and brought up once and runs every workload and
seed (fabric/runner.py's ``network`` and ``run_on``); between runs a learning policy is reset
through the REST API (``POST /fabric/policy/reset``: the policy's ``reset`` forgets learned
flows, weights and intents) and the next run waits until the controller sees the fabric quiet
again, so runs do not inherit each other's state.

Printed and written under results/<run-id>/ (``table.md``, ``table.csv``, ``runs.csv``,
``summary.json``, ``efficiency-<fabric>.png``): efficiency (lower bound / completion time)
per fabric, workload and policy as the median over seeds with a distribution-free 95% interval
from order statistics (with 5 seeds that is [min, max], whose coverage is 93.8%: the table
says so), the ratio to the non-blocking baseline and to ``ecmp`` (paired by seed, same
schedule), and the issue's targets (met, tie or not met). Then the controller figures: routing core
compute time for fat-trees k=4, 8, 16 (bench/core_bench.py, no emulation), OpenFlow rules
and groups installed per second (k=8 fat-tree bring-up, timed by the controller from its
messages and their barrier replies), and the traffic gap when a link on an active path fails,
with and without FAST_FAILOVER (bench/failover.py).

This module only drives runs and summarizes their results; it decides no route and computes
no run metric itself (traffic/metrics.py does, through the runner).

Run: ``python -m bench.policies [--quick] [--seeds N] [--results DIR]`` (``--fabrics``,
``--controllers``, ``--workloads`` and ``--no-controller-figures`` run a part of it).
"""

import argparse
import csv
import datetime
import json
import math
import os
import statistics
import sys
import time

from bench import core_bench, failover
from controllers.policies import POLICY_CLASSES
from fabric import runner, spec as specs
from fabric.controller import ControllerError
from fabric.progress import Progress
from topologies import build
from topologies.nonblocking import nonblocking_like
from traffic import workloads

FABRICS = {
    "fattree": ("fattree", {"k": 4}),
    "leafspine": ("leafspine", {"leaves": 4, "spines": 2, "hosts_per_leaf": 4,
                                "oversubscription": 2.0}),
}
POLICIES = ("shortest", "ecmp", "congestion", "hedera", "collective")
STP = "stp"
BASELINE = "nonblocking"
CONTROLLERS = POLICIES + (STP,)

# Sizes: at 20 Mbit/s per NIC (the spec default) the busiest NIC of each workload needs about
# 1.6 s at line rate (the skewed all-to-all's hot expert receives four times the uniform's
# share, hence its fewer tokens); the full bench scales them to fit about 30 minutes, quick
# to a few.
WORKLOADS = {
    "moe_skewed": ("moe_alltoall", {"tokens_per_host": 64, "hidden": 4096, "dtype_bytes": 2,
                                    "top_k": 2, "skew": 1.0, "schedule": "shift",
                                    "channels": 3}),
    "moe_uniform": ("moe_alltoall", {"tokens_per_host": 256, "hidden": 4096, "dtype_bytes": 2,
                                     "top_k": 2, "schedule": "shift", "channels": 3}),
    "stride": ("permutation", {"bytes_per_flow": 4_000_000, "kind": "stride"}),
    "random": ("permutation", {"bytes_per_flow": 4_000_000, "kind": "random"}),
}
SIZE_KEYS = ("tokens_per_host", "bytes_per_flow")
SIZES = {"full": 0.6, "quick": 0.4}
SEEDS = {"full": 5, "quick": 3}
FAILOVER_REPEATS = {"full": 3}
# Tuned for transfers of about a second (the defaults suit flows of tens of seconds): statistics
# every 0.25 s, rates averaged over 1 s, a flow may move again after 1 s, and a flow counts
# with its measured rate once it has sent 4 KiB (else a TCP connection's ACK direction, which
# never sends 64 KiB, would weigh as a full flow in ``congestion``'s projections forever).
CONTROLLER = {"stats_interval_s": 0.25, "fast_failover": True,
              "options": {"util_tau_s": 1.0, "min_dwell_s": 1.0, "young_bytes": 4096}}
# A 9000-byte frame takes 3.6 ms per hop at 20 Mbit/s: the round trip of a 5-switch fat-tree
# path is ~30 ms, a bandwidth-delay product of ~75 KB, above the spec's default 64 KiB window.
EMULATION = {"tcp_window_bytes": 131072}
TIMEOUT_S = 90.0
QUIET_UTIL = 0.1
QUIET_TIMEOUT_S = 8.0
LEVEL = 0.95


# -- statistics ----------------------------------------------------------------------------
def median_interval(values, level=LEVEL):
    """Median of ``values`` and a distribution-free interval for it from order statistics.

    The interval ``[x(j), x(n+1-j)]`` of the sorted values holds the population median with
    probability ``1 - 2 P(Binomial(n, 1/2) < j)``; ``j`` is the largest whose coverage is at
    least ``level``, or 1 (the full range) when none is.

    Returns
    -------
    dict
        ``median``, ``lo``, ``hi``, ``coverage`` (of that interval) and ``n``; None values
        if there are no values.

    Examples
    --------
    >>> r = median_interval([0.5, 0.7, 0.6, 0.9, 0.8])
    >>> r["median"], r["lo"], r["hi"], round(r["coverage"], 4)
    (0.7, 0.5, 0.9, 0.9375)
    """
    xs = sorted(values)
    n = len(xs)
    if not n:
        return {"median": None, "lo": None, "hi": None, "coverage": None, "n": 0}

    def coverage(j):
        return 1.0 - 2.0 * sum(math.comb(n, i) for i in range(j)) / 2 ** n

    j = 1
    while j + 1 <= (n + 1) // 2 and coverage(j + 1) >= level:
        j += 1
    return {"median": statistics.median(xs), "lo": xs[j - 1], "hi": xs[n - j],
            "coverage": coverage(j), "n": n}


def paired_ratios(rows, num, den):
    """Per-seed ratios of efficiency between two sets of runs of one workload (same seeds)."""
    by_seed = {r["seed"]: r["efficiency"] for r in den if r["efficiency"]}
    return [r["efficiency"] / by_seed[r["seed"]] for r in num
            if r["efficiency"] is not None and r["seed"] in by_seed]


# -- running -------------------------------------------------------------------------------
def make_spec(fabric, policy, workload, size):
    """A checked spec for one run (the runner reads policy, emulation, controller, workload);
    ``size`` scales the workload's bytes."""
    name, params = WORKLOADS[workload]
    params = {k: int(v * size) if k in SIZE_KEYS else v for k, v in params.items()}
    topo_name, topo_params = (("nonblocking", {"hosts": 16}) if fabric == BASELINE
                              else FABRICS[fabric])
    return specs.check({"name": f"bench-{fabric}-{policy}", "policy": policy,
                        "topology": {"name": topo_name, "params": topo_params},
                        "workload": {"name": name, "params": params},
                        "controller": CONTROLLER, "emulation": EMULATION,
                        "timeout_s": TIMEOUT_S})


def reset(net, policy):
    """Make the next run independent of the last one (see the module docstring); only
    policies that learn flows keep state that measured load can sway."""
    if not net.ctl.ours or not POLICY_CLASSES[policy].learns_flows:
        return
    net.ctl.request("POST", "/fabric/policy/reset")
    try:
        net.ctl.wait_status(lambda s: not s["pending"]
                            and s["utilization"]["max"] < QUIET_UTIL,
                            QUIET_TIMEOUT_S, "a quiet fabric")
    except ControllerError:
        pass  # still draining: the run records the controller's status at its end anyway


def run_network(fabric, g, policy, seeds, size, chosen, out_dir, log, progress):
    """Bring one network up and run the ``chosen`` workloads, every seed, on it; return
    result rows. Each run is a milestone of ``progress`` (:class:`fabric.progress.Progress`)."""
    rows = []
    net_dir = os.path.join(out_dir, "networks", f"{fabric}-{policy}")
    net_spec = make_spec(fabric, policy, chosen[0], size)
    with runner.network(g, net_spec, net_dir, log) as net:
        for workload in chosen:
            spec = make_spec(fabric, policy, workload, size)
            for seed in seeds:
                reset(net, policy)
                schedule = workloads.build(spec["workload"]["name"], g, seed,
                                           **spec["workload"]["params"])
                label = f"{fabric}-{policy}-{workload}-s{seed}"
                progress.status(label)
                t0 = time.monotonic()
                res = runner.run_on(net, schedule, spec, os.path.join(net_dir, label))
                row = {"fabric": fabric, "policy": policy, "workload": workload, "seed": seed,
                       "efficiency": res["efficiency"],
                       "completion_emulated_s": res["completion_time_emulated_s"],
                       "bound_emulated_s": res["lower_bound_emulated_s"],
                       "flows_completed": res["flows_completed"],
                       "flows_total": res["flows_total"], "timed_out": res["timed_out"],
                       "cpu_idle_min": res["cpu_idle_min"],
                       "cpu_saturated": res["cpu_saturated"],
                       "tcp_retrans": res["tcp"].get("TcpRetransSegs"),
                       "openflow_errors": res["controller"].get("openflow_errors"),
                       "run_s": round(time.monotonic() - t0, 2), "ready": net.ready}
                rows.append(row)
                eff = "-" if row["efficiency"] is None else f"{row['efficiency']:.3f}"
                progress.advance(f"{label}: efficiency {eff} "
                                 f"({row['flows_completed']}/{row['flows_total']} flows, "
                                 f"run {row['run_s']:.1f} s)")
    return rows


def run_matrix(seeds, size, fabrics, controllers, chosen, out_dir, log):
    """The ``controllers`` on the ``fabrics``, and the baseline once; all result rows. The
    runs done are shown as they finish (a bar on a terminal)."""
    graphs = {f: build(*FABRICS[f][:1], **FABRICS[f][1]) for f in fabrics}
    baseline = nonblocking_like(build(*FABRICS["fattree"][:1], **FABRICS["fattree"][1]))
    total = (1 + len(graphs) * len(controllers)) * len(chosen) * len(seeds)
    with Progress(total, "runs") as progress:
        log(f"{BASELINE} (ecmp, our controller)")
        rows = run_network(BASELINE, baseline, "ecmp", seeds, size, chosen, out_dir, log,
                           progress)
        for row in rows:
            row["policy"] = BASELINE
        for fabric, g in graphs.items():
            for policy in controllers:
                log(f"{fabric} / {policy}")
                rows += run_network(fabric, g, policy, seeds, size, chosen, out_dir, log,
                                    progress)
    return rows


# -- summarizing ---------------------------------------------------------------------------
def summarize(rows):
    """One entry per (fabric, workload, policy): efficiency, ratios to baseline and ecmp."""
    def pick(fabric, workload, policy):
        return [r for r in rows if r["fabric"] == fabric and r["workload"] == workload
                and r["policy"] == policy]

    table = []
    for fabric in FABRICS:
        for workload in WORKLOADS:
            base = pick(BASELINE, workload, BASELINE)
            ecmp = pick(fabric, workload, "ecmp")
            entries = [(BASELINE, base)] + [(p, pick(fabric, workload, p)) for p in CONTROLLERS]
            for policy, mine in entries:
                effs = [r["efficiency"] for r in mine if r["efficiency"] is not None]
                table.append({
                    "fabric": fabric, "workload": workload, "policy": policy,
                    "runs": len(mine), "completed": len(effs),
                    "efficiency": median_interval(effs),
                    "vs_nonblocking": median_interval(paired_ratios(rows, mine, base)),
                    "vs_ecmp": median_interval(paired_ratios(rows, mine, ecmp)),
                    "cpu_saturated_runs": sum(1 for r in mine if r["cpu_saturated"]),
                })
    return table


def _fmt(stat, digits=3):
    if stat["median"] is None:
        return "-"
    if stat["n"] == 1:
        return f"{stat['median']:.{digits}f}"
    return f"{stat['median']:.{digits}f} [{stat['lo']:.{digits}f}, {stat['hi']:.{digits}f}]"


TABLE_COLUMNS = ("fabric", "workload", "policy", "ok", "efficiency", "vs nonblocking",
                 "vs ecmp")


def table_lines(table):
    rows = [TABLE_COLUMNS]
    for e in table:
        if not e["runs"]:
            continue  # not run (--controllers / --workloads)
        rows.append((e["fabric"], e["workload"], e["policy"], f"{e['completed']}/{e['runs']}",
                     _fmt(e["efficiency"]), _fmt(e["vs_nonblocking"]),
                     _fmt(e["vs_ecmp"], 2) if e["policy"] != BASELINE else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    return [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows], widths


def interval_note(table):
    cov = {round(e["efficiency"]["coverage"], 4) for e in table
           if e["efficiency"]["n"] and e["efficiency"]["n"] > 1}
    ns = sorted({e["efficiency"]["n"] for e in table if e["efficiency"]["n"]})
    if not cov:
        return "one seed per cell: no interval"
    return (f"median [interval] over seeds (n = {', '.join(map(str, ns))}); the interval is "
            f"the distribution-free order-statistics interval for the median, nominal "
            f"{LEVEL:.0%}, actual coverage {', '.join(f'{c:.1%}' for c in sorted(cov))}; "
            f"ratios are paired by seed (same schedule)")


TARGETS = (
    # (what, fabric, workload, policy, column, threshold)
    ("collective >= 0.90 of nonblocking, uniform all-to-all", "fattree", "moe_uniform",
     "collective", "vs_nonblocking", 0.90),
    ("collective >= 0.90 of nonblocking, stride", "fattree", "stride", "collective",
     "vs_nonblocking", 0.90),
    *[(f"{p} >= ecmp, {w}", "fattree", w, p, "vs_ecmp", 1.0)
      for p in ("congestion", "hedera") for w in WORKLOADS],
    *[(f"{p} >= 1.3 x ecmp, stride", "fattree", "stride", p, "vs_ecmp", 1.3)
      for p in ("congestion", "hedera")],
)


def cell(table, fabric, workload, policy):
    """The one entry of :func:`summarize`'s table for a fabric, workload and policy."""
    (e,) = [x for x in table
            if (x["fabric"], x["workload"], x["policy"]) == (fabric, workload, policy)]
    return e


def check_targets(table):
    """Each target of the issue with its measured median ratio: ``met`` when the median
    reaches the threshold; ``verdict`` also says "tie" when it does not but the interval
    reaches it (the difference is within what the seeds scatter)."""
    out = []
    for what, fabric, workload, policy, column, threshold in TARGETS:
        stat = cell(table, fabric, workload, policy)[column]
        met = stat["median"] is not None and stat["median"] >= threshold
        tie = not met and stat["hi"] is not None and stat["hi"] >= threshold
        out.append({"target": what, "fabric": fabric, "value": stat["median"],
                    "lo": stat["lo"], "hi": stat["hi"], "threshold": threshold, "met": met,
                    "verdict": "met" if met else "tie" if tie else "NOT MET"})
    return out


def target_lines(targets):
    lines = ["targets (fat-tree k=4; tie: median below, interval reaching the threshold):"]
    for t in targets:
        value = "-" if t["value"] is None else f"{t['value']:.3f}"
        if t["value"] is not None and t["lo"] != t["hi"]:
            value += f" [{t['lo']:.3f}, {t['hi']:.3f}]"
        lines.append(f"  {t['verdict']:<7} {t['target']}: {value}")
    return lines


def plot(table, out_dir):
    """efficiency-<fabric>.png: median efficiency with its interval, per workload and policy."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    paths = []
    policies = (BASELINE,) + CONTROLLERS
    for fabric in FABRICS:
        fig, ax = plt.subplots(figsize=(10, 4.5))
        width = 0.8 / len(policies)
        for i, policy in enumerate(policies):
            xs, ys, lo, hi = [], [], [], []
            for j, workload in enumerate(WORKLOADS):
                s = cell(table, fabric, workload, policy)["efficiency"]
                if s["median"] is None:
                    continue
                xs.append(j + (i - (len(policies) - 1) / 2) * width)
                ys.append(s["median"])
                lo.append(s["median"] - s["lo"])
                hi.append(s["hi"] - s["median"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=policy)
        ax.set_xticks(range(len(WORKLOADS)), list(WORKLOADS))
        ax.set_ylabel("efficiency (lower bound / completion time)")
        ax.set_ylim(0, 1.1)
        ax.set_title(f"{fabric}: efficiency, median over seeds and order-statistics interval")
        ax.legend(ncol=len(policies), fontsize=8, loc="upper center",
                  bbox_to_anchor=(0.5, -0.08))
        fig.tight_layout()
        path = os.path.join(out_dir, f"efficiency-{fabric}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


# -- controller figures --------------------------------------------------------------------
def core_compute(repeats):
    """Routing core compute time of every route of fat-trees k=4, 8, 16 (median)."""
    out = []
    for k in (4, 8, 16):
        g = build("fattree", k=k)
        runs = [core_bench.from_scratch(g) for _ in range(repeats)]
        seconds = statistics.median(r[0] for r in runs)
        _, rules, groups = runs[0]
        out.append({"k": k, "switches": len(g) - k ** 3 // 4, "hosts": k ** 3 // 4,
                    "seconds": seconds, "rules": rules, "groups": groups,
                    "per_s": (rules + groups) / seconds})
    return out


def install_rate(out_dir, log):
    """Rules and groups a k=8 fat-tree bring-up installs per second, confirmed by barriers."""
    g = build("fattree", k=8)
    spec = make_spec("fattree", "ecmp", "stride", SIZES["quick"])
    with runner.network(g, spec, os.path.join(out_dir, "networks", "fattree-k8"), log) as net:
        status = net.ctl.get("/fabric/status")
    inst = status["install"]
    wall = inst["last_confirmed_s"] - inst["first_mod_s"]
    return {"switches": status["switches"], "rules": status["rules"],
            "groups": status["groups"], "mods": inst["mods"], "busy_s": inst["busy_s"],
            "per_busy_s": inst["per_busy_s"], "first_to_last_s": wall,
            "per_s_first_to_last": inst["mods"] / wall if wall > 0 else None,
            "largest_batch": inst["largest_batch"],
            "openflow_errors": status["openflow_errors"], "ready": net.ready}


def controller_lines(compute, install=None, gaps=None):
    lines = ["routing core, all routes of a fat-tree from scratch (ecmp, FAST_FAILOVER on; "
             "bench/core_bench.py):"]
    for r in compute:
        lines.append(f"  k={r['k']:<2} {r['switches']:>4} switches {r['hosts']:>5} hosts: "
                     f"{r['seconds'] * 1000:9.1f} ms, {r['rules']} rules + {r['groups']} groups "
                     f"({r['per_s']:,.0f} per s)")
    if install is None:
        return lines + ["(BENCH=quick: no installation-rate or failover runs; make bench has "
                        "them)"]
    lb = install["largest_batch"] or {}
    lines += [
        f"OpenFlow installation, k=8 fat-tree bring-up ({install['switches']} switches, ecmp): "
        f"{install['mods']} flow and group mods confirmed by barriers",
        f"  {install['per_busy_s']:,.0f} per s while installing "
        f"({install['busy_s']:.2f} s with changes unconfirmed); "
        f"{install['per_s_first_to_last'] or 0:,.0f} per s from first mod to last barrier "
        f"reply ({install['first_to_last_s']:.2f} s, includes discovery waits); "
        f"largest batch {lb.get('mods', 0)} mods in {lb.get('seconds', 0) * 1000:.0f} ms "
        f"({lb.get('per_s', 0):,.0f} per s); OpenFlow errors {install['openflow_errors']}",
        "traffic gap when a link on an active path goes down (k=4 fat-tree, ecmp, "
        "bench/failover.py):",
    ]
    lines += ["  " + line for line in failover.table(gaps).splitlines()]
    return lines


# -- output --------------------------------------------------------------------------------
def write_runs(out_dir, rows):
    """runs.csv: one line per run (the bring-up timings left out)."""
    with open(os.path.join(out_dir, "runs.csv"), "w", newline="") as f:
        cols = [k for k in rows[0] if k != "ready"]
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_outputs(out_dir, rows, table, targets, lines, extra):
    write_runs(out_dir, rows)
    with open(os.path.join(out_dir, "table.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["fabric", "workload", "policy", "runs", "completed", "stat", "median",
                    "lo", "hi", "coverage", "n"])
        for e in table:
            for stat in ("efficiency", "vs_nonblocking", "vs_ecmp"):
                s = e[stat]
                w.writerow([e["fabric"], e["workload"], e["policy"], e["runs"], e["completed"],
                            stat, s["median"], s["lo"], s["hi"], s["coverage"], s["n"]])
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        text, widths = table_lines(table)
        f.write(text[0] + "\n" + " | ".join("-" * w for w in widths) + "\n")
        f.write("\n".join(text[1:]) + "\n\n")
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump({"table": table, "targets": targets, "runs": rows, **extra}, f, indent=2,
                  sort_keys=True, default=str)


def log(message):
    print(message, flush=True)


def start(results, label):
    """A new results/<time>-<label>/ directory for an emulation benchmark, with SIGTERM
    unwinding like Ctrl-C; returns it and the log. What a crashed run left is removed by each
    emulation as it starts, under the machine lock (fabric/emulate.py)."""
    out_dir = os.path.join(results, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                           + f"-{label}")
    os.makedirs(out_dir, exist_ok=True)
    runner.terminate_on_sigterm()
    return out_dir, log


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="3 seeds, smaller transfers, the fat-tree only, no installation or "
                        "failover runs")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 5, quick 3)")
    p.add_argument("--results", default="results")
    p.add_argument("--fabrics", nargs="+", choices=list(FABRICS), default=None,
                   help="only these (default: both; the fat-tree alone with --quick, where "
                        "the targets are)")
    p.add_argument("--controllers", nargs="+", choices=CONTROLLERS, default=list(CONTROLLERS),
                   help="only these (the baseline always runs)")
    p.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    p.add_argument("--no-controller-figures", action="store_true",
                   help="skip core compute, installation rate and failover measurements")
    a = p.parse_args(argv)
    mode = "quick" if a.quick else "full"
    if a.fabrics is None:
        a.fabrics = ["fattree"] if a.quick else list(FABRICS)
    seeds = list(range(1, 1 + (a.seeds or SEEDS[mode])))
    if os.geteuid() != 0:
        print("error: emulation needs root", file=sys.stderr)
        return 2
    out_dir, log = start(a.results, f"bench-{mode}")
    t0 = time.monotonic()
    log(f"bench ({mode}): {len(a.fabrics)} fabrics x {len(a.controllers)} controllers + "
        f"{BASELINE}, {len(a.workloads)} workloads, seeds {seeds}; results in {out_dir}")
    try:
        rows = run_matrix(seeds, SIZES[mode], a.fabrics, a.controllers, a.workloads, out_dir,
                          log)
        figures = None
        if not a.no_controller_figures and a.quick:
            figures = (core_compute(repeats=1),)
        elif not a.no_controller_figures:
            figures = (core_compute(repeats=3), install_rate(out_dir, log),
                       failover.measure_all(os.path.join(out_dir, "failover"), log,
                                            repeats=FAILOVER_REPEATS["full"]))
    except KeyboardInterrupt:
        print("interrupted: network, controller and agents torn down", file=sys.stderr)
        return 130
    table = summarize(rows)
    targets = check_targets(table)
    text, _ = table_lines(table)
    lines = [interval_note(table)] + target_lines(targets)
    if figures is not None:
        lines += controller_lines(*figures)
    duration = time.monotonic() - t0
    lines.append(f"bench duration: {duration / 60:.1f} min; controller settings "
                 f"{json.dumps(CONTROLLER)}; emulation {json.dumps(EMULATION)} (else spec "
                 f"defaults); workload sizes x {SIZES[mode]}")
    write_outputs(out_dir, rows, table, targets, lines,
                  {"mode": mode, "seeds": seeds, "sizes": SIZES[mode],
                   "controller_settings": CONTROLLER, "emulation": EMULATION,
                   "duration_s": duration,
                   **dict(zip(("core_compute", "install", "failover"), figures or ()))})
    plots = plot(table, out_dir)
    print("\n".join(text))
    print("\n".join(lines))
    print(f"results: {out_dir} ({', '.join(os.path.basename(x) for x in plots)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
