"""How fast the routing core computes every route of a fat-tree from scratch.

Pure: builds fabric models and drives controllers/core.py directly, with no emulation, no
switch and no controller process; it must not start Mininet or Open vSwitch. For each k it
times ``load_fabric`` + ``flush`` (discovery of every switch, link and host as the Ryu app
would report them, then every rule and group the switches need), and prints the median over
repeats, the rules and groups produced, and how many of them the core generates per second.

Run: ``python -m bench.core_bench [--k 4 8 16] [--repeats 5] [--policy ecmp]``.
"""

import argparse
import gc
import statistics
import time

from controllers.core import POLICIES, RoutingCore
from fabric.model import hosts, switches
from topologies import build


def measure(k, policy, fast_failover, repeats):
    """Median seconds to compute a k-ary fat-tree from scratch, and what it produced.

    Returns
    -------
    dict
        ``k``, ``switches``, ``hosts``, ``fast_failover``, ``seconds`` (median), ``rules``,
        ``groups`` and ``per_s`` (rules and groups per second at the median).
    """
    g = build("fattree", k=k)
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        core = RoutingCore(policy=policy, fast_failover=fast_failover)
        msgs = core.load_fabric(g)
        msgs += core.flush(0.0)
        times.append(time.perf_counter() - start)
        status = core.status()
        del core, msgs
    seconds = statistics.median(times)
    made = status["rules"] + status["groups"]
    return {"k": k, "switches": len(switches(g)), "hosts": len(hosts(g)),
            "fast_failover": fast_failover, "seconds": seconds, "rules": status["rules"],
            "groups": status["groups"], "per_s": made / seconds}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16],
                        help="fat-tree radixes (even)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median kept)")
    parser.add_argument("--policy", default="ecmp", choices=POLICIES)
    args = parser.parse_args(argv)
    print(f"routing core, fat-tree, policy {args.policy}, median of {args.repeats} runs "
          "(load_fabric + flush, from scratch)")
    print(f"{'k':>3} {'switches':>8} {'hosts':>6} {'FF':>3} {'time s':>8} {'rules':>8} "
          f"{'groups':>7} {'rules+groups/s':>15}")
    for k in args.k:
        for ff in (True, False):
            r = measure(k, args.policy, ff, args.repeats)
            print(f"{r['k']:>3} {r['switches']:>8} {r['hosts']:>6} {'on' if ff else 'off':>3} "
                  f"{r['seconds']:>8.3f} {r['rules']:>8} {r['groups']:>7} {r['per_s']:>15,.0f}")


if __name__ == "__main__":
    main()
