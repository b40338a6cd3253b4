"""How long the ``collective`` policy takes to assign the paths of a large all-to-all intent.

Pure: builds a fat-tree model and drives controllers/core.py directly, with no emulation, no
switch and no controller process; it must not start Mininet or Open vSwitch. For each k it
discovers the fabric (``load_fabric`` + ``flush``, not timed), then times
``submit_intent`` of a uniform all-to-all of every host (1 MiB per flow), either with each
flow in its round of a pairwise-shift schedule (round r: host i sends to host i + r) or with
every flow in one phase, and prints the seconds, the peak link load against a lower bound,
whether the core proved it optimal, and the process's peak RSS.

The lower bound of a phase is the larger of one flow alone on a link and, for every switch,
the bytes its hosts send off it (or receive) over the capacity of its links to other
switches; the bound of the intent is that of its worst phase.

Run: ``python -m bench.intent_bench [--k 8 16] [--phases both|rounds|single]``.
"""

import argparse
import gc
import resource
import time

import numpy as np

from controllers.core import RoutingCore
from fabric.model import host_switch, hosts, is_host
from topologies import build

FLOW_BYTES = 1 << 20
GBPS = 1e9


def all_to_all(g, phases=True, flow_bytes=FLOW_BYTES):
    """The intent's flows: ``{"src", "dst", "bytes", "phase"}`` dicts, hosts by IP.

    With ``phases``, a flow's phase is its round r (1 .. n-1) of the pairwise shift; without,
    every flow is in phase 0.
    """
    ips = [g.nodes[h]["ip"] for h in hosts(g)]
    n = len(ips)
    return [{"src": ips[i], "dst": ips[(i + r) % n], "bytes": flow_bytes,
             "phase": r if phases else 0}
            for r in range(1, n) for i in range(n)]


def lower_bound_s(g, phases=True, flow_bytes=FLOW_BYTES):
    """Smallest possible peak link load (s) of any phase of :func:`all_to_all`."""
    hs = hosts(g)
    n = len(hs)
    sw = [host_switch(g, h)[0] for h in hs]
    names = sorted(set(sw))
    index = {s: i for i, s in enumerate(names)}
    sw_of = np.array([index[s] for s in sw])
    out_bps = np.zeros(len(names))
    in_bps = np.zeros(len(names))
    fastest_bps = np.zeros(len(names))
    for s in names:
        for t in g.neighbors(s):
            if not is_host(g, t):
                bps = g.edges[s, t]["capacity_gbps"] * GBPS
                out_bps[index[s]] += bps  # links are symmetric: in and out alike
                in_bps[index[s]] += bps
                fastest_bps[index[s]] = max(fastest_bps[index[s]], bps)
    src = np.tile(np.arange(n), n - 1)
    dst = (src + np.repeat(np.arange(1, n), n)) % n
    phase = np.repeat(np.arange(n - 1), n) if phases else np.zeros(len(src), dtype=int)
    off = sw_of[src] != sw_of[dst]
    bits = flow_bytes * 8.0
    n_phases = int(phase.max()) + 1
    sent = np.zeros((n_phases, len(names)))
    got = np.zeros((n_phases, len(names)))
    np.add.at(sent, (phase[off], sw_of[src][off]), bits)
    np.add.at(got, (phase[off], sw_of[dst][off]), bits)
    alone = (bits / fastest_bps[sw_of[src][off]]).max(initial=0.0)
    return float(max(alone, (sent / out_bps).max(), (got / in_bps).max()))


def intent_seconds(k, phases=True):
    """Time one ``submit_intent`` of the uniform all-to-all on a k-ary fat-tree.

    Returns
    -------
    dict
        ``k``, ``hosts``, ``switches``, ``flows``, ``phases`` (True: one per shift round),
        ``intent_s`` (seconds in ``submit_intent``), ``peak_s`` (the core's peak link load of
        any phase), ``lower_bound_s``, ``peak_over_bound``, ``optimal`` (as the core says),
        ``unplaced`` and ``peak_rss_mb`` (of this process so far).
    """
    g = build("fattree", k=k)
    core = RoutingCore(policy="collective")
    core.load_fabric(g)
    core.flush(0.0)
    flows = all_to_all(g, phases)
    gc.collect()
    start = time.perf_counter()
    core.submit_intent("a2a", flows, 1.0)
    seconds = time.perf_counter() - start
    status = core.intent_status("a2a")
    bound = lower_bound_s(g, phases)
    peak = status["max_phase_link_load_s"]
    return {"k": k, "hosts": len(hosts(g)), "switches": g.number_of_nodes() - len(hosts(g)),
            "flows": len(flows), "phases": phases, "intent_s": seconds, "peak_s": peak,
            "lower_bound_s": bound, "peak_over_bound": peak / bound,
            "optimal": status["optimal"], "unplaced": status["unplaced"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[8, 16],
                        help="fat-tree radixes (even)")
    parser.add_argument("--phases", choices=("both", "rounds", "single"), default="both",
                        help="phase per shift round, all flows in one phase, or both")
    args = parser.parse_args(argv)
    modes = {"both": (True, False), "rounds": (True,), "single": (False,)}[args.phases]
    print(f"collective intent, uniform all-to-all of {FLOW_BYTES} B per flow, fat-tree "
          "(submit_intent only; fabric discovered before the clock)")
    print(f"{'k':>3} {'hosts':>6} {'flows':>9} {'phases':>7} {'intent s':>9} "
          f"{'peak ms':>9} {'bound ms':>9} {'peak/bound':>10} {'optimal':>7} "
          f"{'peak RSS MB':>11}")
    for k in args.k:
        for phases in modes:
            r = intent_seconds(k, phases)
            print(f"{r['k']:>3} {r['hosts']:>6} {r['flows']:>9} "
                  f"{'rounds' if phases else 'one':>7} {r['intent_s']:>9.2f} "
                  f"{r['peak_s'] * 1e3:>9.3f} {r['lower_bound_s'] * 1e3:>9.3f} "
                  f"{r['peak_over_bound']:>10.3f} {str(r['optimal']):>7} "
                  f"{r['peak_rss_mb']:>11.0f}")


if __name__ == "__main__":
    main()
