"""What the routing core costs per event on fat-trees of every size (``make bench-core``).

Pure: builds fabric models and drives controllers/core.py directly, with no emulation, no
switch and no controller process; it must not start Mininet or Open vSwitch. Each k runs in a
fresh process, so ``peak_rss_mb`` is that size's own peak. Per fat-tree k it measures:

- ``routes_from_scratch_s``: ``load_fabric`` + ``flush`` under ``ecmp`` with FAST_FAILOVER
  protection (discovery of every switch, link and host as the app reports them, then every
  rule and group the switches need), with ``rules`` and ``groups``;
- ``link_event_ms``: one link down, then up again (port status or probes, recompute, diff,
  messages), the larger of the two, median over an edge-aggregation and an
  aggregation-core link;
- ``flow_setup_per_s`` under ``congestion`` and ``hedera``: new flows learned and placed per
  second (packet-in, placement, the flow's rules and the flush that sends them), timed over
  ``--flows`` new flows once ``--prefill`` flows are placed (or one per host pair where the
  fabric has fewer pairs), in wall and in CPU time (``flow_setup_cpu_per_s``), with the
  cyclic collector's CPU time among them (``gc_cpu_ms``, and ``gc_full`` full collections),
  and each k's congestion figure against k=4's printed after the table;
- ``intent_s`` under ``collective``: submitting a uniform all-to-all of every host (phases by
  pairwise-shift round), up to ``--intent-max-hosts`` hosts.

Each k up to 16 runs ``--repeats`` times (3), the sizes interleaved round by round; the table
gives medians (a flow set-up figure's median, the other figures of its median run), and each
k's congestion figure against k=4 is printed per round, the two measured minutes apart under
the same load. Prints a table and writes ``results/<run-id>/core.json`` (``rows``: the
medians; ``runs``: every run; ``ratios_to_k4``).
Run: ``python -m bench.core_bench [--k 4 8 16 32] [--repeats 3] [--results results]``.
"""

import argparse
import gc
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time

from controllers.core import RoutingCore
from fabric.model import host_switch, hosts, switches
from topologies import build

TARGETS = {"flow_setup_per_s": 5000, "link_event_ms_k16": 100, "routes_from_scratch_s_k16": 1,
           "routes_from_scratch_s_k32": 15, "peak_rss_mb_k32": 4096, "intent_s_1024": 10}


def _flow(g, a, b, sport):
    sw, port = host_switch(g, a)
    na, nb = g.nodes[a], g.nodes[b]
    return (g.nodes[sw]["dpid"], port, (na["ip"], nb["ip"], 6, sport, 5001), na["mac"],
            nb["mac"])


def flow_setup(g, policy, prefill, count, seed=1):
    """Flows per second learned and placed by ``policy`` once ``prefill`` flows are placed."""
    core = RoutingCore(policy=policy)
    core.load_fabric(g)
    core.flush(0.0)
    hs = hosts(g)
    rnd = random.Random(seed)
    pairs = len(hs) * (len(hs) - 1)
    prefill = min(prefill, pairs)
    chosen = set()
    while len(chosen) < prefill:
        chosen.add(tuple(rnd.sample(hs, 2)))
    now = 1.0
    for i, (a, b) in enumerate(sorted(chosen)):
        core.packet_in_flow(*_flow(g, a, b, 10000 + i % 50000), b"", now)
    new = [_flow(g, a, b, 60000 + i % 5000)
           for i, (a, b) in enumerate(rnd.sample(hs, 2) for _ in range(count))]
    collector = _CollectorClock()
    gc.callbacks.append(collector)
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for i, args in enumerate(new):
            core.packet_in_flow(*args, b"", now + 1e-5 * i)
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    finally:
        gc.callbacks.remove(collector)
    # CPU time as well as wall: on a shared machine the wall figure also counts the time
    # other processes held the CPU. The collector's share is given apart: a full collection
    # comes every few thousand flows at k=16 (it scans every tracked object, some 5 per
    # learned flow), so whether one falls in the timed flows moves the figure by a fifth.
    return {"placed_before": prefill, "timed": count, "per_s": count / seconds,
            "cpu_per_s": count / cpu_s, "flows": len(core.flows),
            "gc_cpu_ms": collector.cpu_s * 1e3, "gc_full": collector.full}


class _CollectorClock:
    """A ``gc.callbacks`` entry adding up the CPU time of the cyclic collector's runs."""

    def __init__(self):
        self.cpu_s, self.full, self._at = 0.0, 0, None

    def __call__(self, phase, info):
        if phase == "start":
            self._at = time.process_time()
        elif self._at is not None:
            self.cpu_s += time.process_time() - self._at
            self.full += info["generation"] == 2


def link_events(g, repeats=3):
    """Milliseconds for one link down then up (recompute and diff), per link kind."""
    core = RoutingCore(policy="ecmp")
    core.load_fabric(g)
    core.flush(0.0)
    names = {n: g.nodes[n] for n in switches(g)}
    links = []
    for kind in (("edge", "aggregation"), ("aggregation", "core")):
        links.append(next((u, v) for u, v in sorted(g.edges())
                          if {names.get(u, {}).get("role"), names.get(v, {}).get("role")}
                          == set(kind)))
    out = {}
    now = 1.0
    for u, v in links:
        du, dv = names[u]["dpid"], names[v]["dpid"]
        pu, pv = g.edges[u, v]["ports"][u], g.edges[u, v]["ports"][v]
        downs, ups, mods = [], [], []
        for _ in range(repeats):
            now += 1.0
            start = time.perf_counter()
            core.port_status(du, pu, False, now)
            core.port_status(dv, pv, False, now)
            sent = core.flush(now)
            downs.append((time.perf_counter() - start) * 1e3)
            mods.append(len(sent))
            now += 1.0
            start = time.perf_counter()
            core.port_status(du, pu, True, now)
            core.port_status(dv, pv, True, now)
            core.link_seen(du, pu, dv, pv, now)
            core.link_seen(dv, pv, du, pu, now)
            core.flush(now)
            ups.append((time.perf_counter() - start) * 1e3)
        out[f"{names[u]['role']}-{names[v]['role']}"] = {
            "down_ms": statistics.median(downs), "up_ms": statistics.median(ups),
            "mods": statistics.median(mods)}
    worst = statistics.median(max(x["down_ms"], x["up_ms"]) for x in out.values())
    return worst, out


def from_scratch(g):
    start = time.perf_counter()
    core = RoutingCore(policy="ecmp", fast_failover=True)
    core.load_fabric(g)
    core.flush(0.0)
    seconds = time.perf_counter() - start
    status = core.status()
    return seconds, status["rules"], status["groups"]


def measure(k, prefill, count, intent_max_hosts):
    """Every figure for one fat-tree k (in this process)."""
    g = build("fattree", k=k)
    row = {"k": k, "switches": len(switches(g)), "hosts": len(hosts(g))}
    row["routes_from_scratch_s"], row["rules"], row["groups"] = from_scratch(g)
    row["link_event_ms"], row["link_events"] = link_events(g)
    row["flow_setup"] = {p: flow_setup(g, p, prefill, count) for p in ("congestion", "hedera")}
    row["flow_setup_per_s"] = {p: r["per_s"] for p, r in row["flow_setup"].items()}
    row["flow_setup_cpu_per_s"] = {p: r["cpu_per_s"] for p, r in row["flow_setup"].items()}
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row["intent_s"] = None
    if row["hosts"] <= intent_max_hosts:
        from bench.intent_bench import intent_seconds
        row["intent"] = intent_seconds(k)    # its own peak_rss_mb includes the above
        row["intent_s"] = row["intent"]["intent_s"]
    return row


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def _child(k, args):
    """One k's figures, measured in a fresh process; a dict with ``error`` if it failed."""
    cmd = [sys.executable, "-m", "bench.core_bench", "--one", str(k), "--prefill",
           str(args.prefill), "--flows", str(args.flows), "--intent-max-hosts",
           str(args.intent_max_hosts)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"k={k} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return {"k": k, "error": done.stderr.strip()[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _median_row(runs):
    """One row from a k's repeated runs: every figure of the run whose congestion flow set-up
    is the median one, with each flow set-up figure's median and range over the runs."""
    runs = sorted(runs, key=lambda r: r["flow_setup_cpu_per_s"]["congestion"])
    row = dict(runs[len(runs) // 2])
    for f in ("flow_setup_per_s", "flow_setup_cpu_per_s"):
        row[f] = {p: statistics.median(r[f][p] for r in runs) for p in row[f]}
        row[f + "_range"] = {p: [min(r[f][p] for r in runs), max(r[f][p] for r in runs)]
                             for p in row[f]}
    row["repeats"] = len(runs)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32],
                        help="fat-tree radixes (even)")
    parser.add_argument("--prefill", type=int, default=10_000,
                        help="flows placed before timing flow setup")
    parser.add_argument("--flows", type=int, default=2_000, help="new flows timed")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each k up to 16 (k=32 runs once), interleaved; medians")
    parser.add_argument("--intent-max-hosts", type=int, default=1024,
                        help="largest all-to-all intent timed (hosts)")
    parser.add_argument("--results", default="results", help="results folder")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.one is not None:
        print(json.dumps(measure(args.one, args.prefill, args.flows, args.intent_max_hosts)))
        return 0
    print(f"routing core on fat-trees (pure, no emulation); each k in its own process, "
          f"{args.repeats} interleaved runs of each k <= 16 (medians)")
    # Rounds of every k, one after the other, so a repeat's k=4 and k=16 figures are taken
    # minutes apart at most, under the same load: their ratio is one side-by-side sample.
    runs = {k: [] for k in args.k}
    for r in range(args.repeats):
        for k in args.k:
            if r and k > 16:
                continue
            runs[k].append(_child(k, args))
            print(f"  run {r + 1}/{args.repeats} k={k} done", flush=True)
    head = (f"{'k':>3} {'hosts':>6} {'switches':>8} {'scratch s':>9} {'rules':>9} "
            f"{'groups':>8} {'link ms':>8} {'cong fl/s':>9} {'hed fl/s':>9} {'intent s':>8} "
            f"{'RSS MB':>7}")
    print(head)
    rows = []
    for k in args.k:
        good = [r for r in runs[k] if "error" not in r]
        if not good:
            rows.append(runs[k][0])
            continue
        r = _median_row(good)
        rows.append(r)
        fs = r["flow_setup_per_s"]
        print(f"{k:>3} {r['hosts']:>6} {r['switches']:>8} {r['routes_from_scratch_s']:>9.3f} "
              f"{r['rules']:>9} {r['groups']:>8} {r['link_event_ms']:>8.1f} "
              f"{fs['congestion']:>9,.0f} {fs['hedera']:>9,.0f} "
              f"{_fmt(r['intent_s'], '8.2f')} {r['peak_rss_mb']:>7.0f}", flush=True)
    by_k = {r["k"]: r for r in rows if "error" not in r}
    ratios = {}
    if 4 in by_k:
        base = [r for r in runs[4] if "error" not in r]
        for k in sorted(set(by_k) - {4}):
            pairs = [(a, b) for a, b in zip(runs[k], runs[4])
                     if "error" not in a and "error" not in b]
            cpu = [a["flow_setup_cpu_per_s"]["congestion"] / b["flow_setup_cpu_per_s"]["congestion"]
                   for a, b in pairs]
            wall = [a["flow_setup_per_s"]["congestion"] / b["flow_setup_per_s"]["congestion"]
                    for a, b in pairs]
            ratios[k] = {"cpu": cpu, "wall": wall}
            gcs = [x["flow_setup"]["congestion"] for x in (by_k[k], by_k[4])]
            print(f"congestion flow setup k={k} / k=4, per run: CPU "
                  f"{', '.join(f'{x:.2f}' for x in cpu)} (median {statistics.median(cpu):.2f}), "
                  f"wall {', '.join(f'{x:.2f}' for x in wall)}; medians "
                  f"{by_k[k]['flow_setup_cpu_per_s']['congestion']:,.0f} flows per CPU "
                  f"second against {by_k[4]['flow_setup_cpu_per_s']['congestion']:,.0f} "
                  f"over {len(base)} runs; collector {gcs[0]['gc_cpu_ms']:.0f} ms, "
                  f"{gcs[0]['gc_full']} full, against {gcs[1]['gc_cpu_ms']:.0f} ms, "
                  f"{gcs[1]['gc_full']} full (median runs)")
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores shared: wall "
          f"figures are noisy)")
    run_dir = os.path.join(args.results, time.strftime("%Y%m%d-%H%M%S") + "-core")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "core.json"), "w") as f:
        json.dump({"rows": rows, "runs": runs, "ratios_to_k4": ratios, "targets": TARGETS,
                   "prefill": args.prefill, "flows_timed": args.flows,
                   "repeats": args.repeats, "load_average": load}, f, indent=2)
    print(f"written {os.path.join(run_dir, 'core.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
