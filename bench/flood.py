"""What a new-flow flood costs legitimate flow setup, in paired rounds, beside what would
remain if the flood were cut at its port (emulation).

On a k=4 fat-tree under ``congestion``, h9 opens ``connections`` TCP connections to h13 one
after another (each is two new flows the controller learns) in rounds, while h1 does one of:

- ``quiet``: nothing;
- ``flood``: UDP datagrams to ever new ports of h5 at ``pps`` (each a new flow: metered to
  the controller at h1's port, controllers/meters.py);
- ``drop_below_flows``: the same flood, with a rule dropping h1's IPv4 packets on its switch
  just above the learn rules (placed flows still forwarded): a quarantine of its port;
- ``drop_all``: the same flood dropped by a rule above every other at h1's port: the least
  any rule at the port could leave;
- ``one_flow``: the same packet rate as one flow, which the switches forward alone.

The drop rules are added with ``ovs-ofctl`` beside the controller's (it leaves rules it did
not make alone between reconnections): a control, not a feature. One repeat is one of each
round, back to back, so each round is compared with the quiet round of its own repeat: on a
shared machine the quiet setup time itself moves several-fold within minutes. For each
round: the setup time, its ratio to the repeat's quiet round, the datapath's packets and
upcalls (``ovs-appctl dpif-netdev/pmd-stats-show``), the CPU share of ovs-vswitchd and the
controller, and the load average.

Run: ``python -m bench.flood [--repeats N] [--results DIR]``.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

from controllers.rules import PRIO_CONTROL, PRIO_FLOW, PRIO_LEARN
from fabric import runner, spec as specs
from fabric.emulate import run_tool
from fabric.model import host_switch
from topologies import build
from traffic.flood import connect_round, cpu_s, end_flood, ovs_pid, start_flood, start_server

MODES = ("quiet", "flood", "drop_below_flows", "drop_all", "one_flow")
# Priorities of the control rules: between the learn rules and the placed flows' rules, or
# above every rule of ours.
DROP_PRIORITY = {"drop_below_flows": (PRIO_LEARN + PRIO_FLOW) // 2,
                 "drop_all": PRIO_CONTROL + 1}
COOKIE = "0xf100d"


def _datapath_counts():
    """(packets received, upcalls) of the userspace datapath so far, every thread."""
    out = subprocess.run(["ovs-appctl", "dpif-netdev/pmd-stats-show"], capture_output=True,
                         text=True).stdout
    packets = upcalls = 0
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "packets received":
            packets += int(value)
        elif key == "miss with success upcall":
            upcalls += int(value)
    return packets, upcalls


def _ofctl(*args):
    return run_tool(["ovs-ofctl", "-O", "OpenFlow13", *args])


def _round(net, mode, connections, pps, port_switch):
    """One round of ``mode``: its figures."""
    g, em, ctl = net.g, net.em, net.ctl
    flooder = None
    sw, port = port_switch
    try:
        if mode != "quiet":
            flooder = start_flood(em.host("h1"), g.nodes["h5"]["ip"], pps,
                                  one_flow=mode == "one_flow")
            time.sleep(1.0)
        if mode in DROP_PRIORITY:
            _ofctl("add-flow", sw, f"cookie={COOKIE},priority={DROP_PRIORITY[mode]},"
                                   f"in_port={port},ip,actions=drop")
            time.sleep(1.0)
        dp0 = _datapath_counts()
        cpu0 = cpu_s(ovs_pid()), cpu_s(ctl.proc.pid), time.monotonic()
        setup = connect_round(em.host("h9"), g.nodes["h13"]["ip"], connections)
        cpu1 = cpu_s(ovs_pid()), cpu_s(ctl.proc.pid), time.monotonic()
        dp1 = _datapath_counts()
    finally:
        if mode in DROP_PRIORITY:
            _ofctl("del-flows", sw, f"cookie={COOKIE}/-1")
        flood = end_flood(flooder) if flooder is not None else None
    wall = cpu1[2] - cpu0[2]
    return {"mode": mode, "setup_s": round(setup["seconds"], 3),
            "completed": setup["completed"], "tried": setup["tried"],
            "datapath_packets": dp1[0] - dp0[0], "upcalls": dp1[1] - dp0[1],
            "ovs_cpu": round((cpu1[0] - cpu0[0]) / wall, 2),
            "controller_cpu": round((cpu1[1] - cpu0[1]) / wall, 2),
            "load_average": float(open("/proc/loadavg").read().split()[0]),
            "flood_pps": None if flood is None else round(flood["pps"])}


def measure(results_dir, repeats=4, connections=200, pps=12_000, log=print):
    """Every mode in turn, ``repeats`` times, on one k=4 fat-tree; the rounds and, per mode,
    the median and range of the setup time's ratio to its repeat's quiet round."""
    g = build("fattree", k=4)
    spec = specs.check({"name": "flood", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": "moe_alltoall", "policy": "congestion", "timeout_s": 60})
    rounds = []
    with runner.network(g, spec, os.path.join(results_dir, "net"), log) as net:
        server = start_server(net.em.host("h13"))
        try:
            time.sleep(0.5)
            for rep in range(repeats):
                for mode in MODES:
                    r = dict(_round(net, mode, connections, pps, host_switch(g, "h1")),
                             repeat=rep)
                    log(f"flood: {json.dumps(r)}")
                    rounds.append(r)
                    time.sleep(1.0)
        finally:
            server.terminate()
            server.wait(timeout=10)
    quiet = {r["repeat"]: r["setup_s"] for r in rounds if r["mode"] == "quiet"}
    summary = {}
    for mode in MODES:
        mine = [r for r in rounds if r["mode"] == mode]
        ratios = [r["setup_s"] / quiet[r["repeat"]] for r in mine]
        summary[mode] = {
            "slowdown_median": round(statistics.median(ratios), 2),
            "slowdown_range": [round(min(ratios), 2), round(max(ratios), 2)],
            "setup_s": [r["setup_s"] for r in mine],
            "upcalls_per_s": round(statistics.median(r["upcalls"] / r["setup_s"]
                                                     for r in mine)),
            "ovs_cpu": statistics.median(r["ovs_cpu"] for r in mine),
            "controller_cpu": statistics.median(r["controller_cpu"] for r in mine),
            "all_completed": all(r["completed"] == r["tried"] for r in mine)}
    result = {"repeats": repeats, "connections": connections, "pps": pps,
              "summary": summary, "rounds": rounds}
    os.makedirs(results_dir, exist_ok=True)
    with open(os.path.join(results_dir, "flood.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def table(result):
    """Lines of the per-mode medians of :func:`measure`."""
    lines = [f"{'round':<17} {'slowdown':>8} {'range':>11} {'upcalls/s':>9} {'ovs cpu':>7} "
             f"{'ctl cpu':>7}  all done"]
    for mode, s in result["summary"].items():
        lo, hi = s["slowdown_range"]
        lines.append(f"{mode:<17} {s['slowdown_median']:>7.2f}x {lo:>5.2f}-{hi:<5.2f} "
                     f"{s['upcalls_per_s']:>9} {s['ovs_cpu']:>7.2f} {s['controller_cpu']:>7.2f}"
                     f"  {s['all_completed']}")
    lines.append(f"(slowdown: setup time of {result['connections']} connections over that of "
                 f"the quiet round of the same repeat, median over {result['repeats']} "
                 f"repeats; floods at {result['pps']} packets/s; CPU in cores)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--repeats", type=int, default=4, help="rounds of each mode")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be at least 1, got {a.repeats}")
    run_dir = os.path.join(a.results,
                           datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-flood")
    result = measure(run_dir, repeats=a.repeats, log=lambda m: print(m, flush=True))
    print(table(result))
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
