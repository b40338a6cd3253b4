"""The traffic gap when a link on an active path fails, with and without FAST_FAILOVER groups.

On a k=4 fat-tree under our controller (``ecmp``), a 1 kHz stream of small UDP probes
(traffic/probe.py) runs from the first host of pod 1 to the last host of the last pod. Half-way
through, the switch-side interface of one link the probes cross is set down (``ip link set
... down``: Open vSwitch sees the carrier go and reports the port down, as a cut fiber would);
the receiver reports every arrival; the *gap* is the longest interval without probes from the
last arrival before the failure to :data:`WINDOW_S` after it (a gap elsewhere is the sender's
scheduling, not the failure), and the loss counts probes that never arrived.
Two links are failed, each in its own network:

- ``edge-uplink``: the sender's edge switch to the aggregation switch the probes use. The edge
  switch has another equal-cost next hop, so protection switches locally to it;
- ``core-downlink``: the core switch down into the receiver's pod. It is the core's only
  shortest next hop, so protection must detour (routes.py: U-turn through another
  aggregation switch).

The active link is found by watching which candidate interface's transmit counter grows with
the probes. With FAST_FAILOVER the gap is the switch's own reaction; without it, the
controller's (port status, recompute, install). Uses fabric/runner.py's ``network``; decides
no routes itself.

Run: ``python -m bench.failover [--repeats N] [--results DIR]``.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

from fabric import cleanup, model, runner, spec as specs
from fabric.emulate import interface_stats
from topologies import build
from traffic.probe import analyze

SCENARIOS = ("edge-uplink", "core-downlink")
PROBE_RATE_HZ = 1000.0
STREAM_S = 3.0
FAIL_AT_S = 1.5
SAMPLE_S = 0.4
WINDOW_S = 1.0


def _spec(fast_failover):
    # A spec needs a workload; the probe stream replaces it here.
    return specs.check({"name": "failover", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": {"name": "permutation", "params": {"bytes_per_flow": 1}},
                        "policy": "ecmp", "controller": {"fast_failover": fast_failover}})


def _candidates(g, scenario, src, dst):
    """Switch-side interfaces (``<switch>-eth<port>``) of links the probes may use."""
    if scenario == "edge-uplink":
        edge = model.host_switch(g, src)[0]
        links = [(edge, n) for n in g.neighbors(edge) if not model.is_host(g, n)]
    else:
        pod = g.nodes[model.host_switch(g, dst)[0]]["pod"]
        links = [(c, a) for c, r in g.nodes(data="role") if r == "core"
                 for a in g.neighbors(c) if g.nodes[a].get("pod") == pod]
    return [f"{u}-eth{model.port_to(g, u, v)}" for u, v in links]


def _tx_packets(intfs):
    return {i: stats["tx"]["packets"] for i, stats in interface_stats(intfs).items()}


def measure(scenario, fast_failover, run_dir, log=print):
    """Fail one link the probes cross; return the probe receiver's report plus where and when.

    Returns
    -------
    dict
        ``scenario``, ``fast_failover``, ``failed_intf``, ``gap_ms`` (longest interval
        without probes around the failure, see the module docstring), ``lost``, ``sent``,
        ``longest_loss_run`` (consecutive probes lost, i.e. ms of outage at 1 kHz),
        ``stream_gap_ms`` (longest interval anywhere in the stream) and
        ``openflow_errors``.
    """
    g = build("fattree", k=4)
    hs = model.hosts(g)
    src, dst = hs[0], hs[-1]
    os.makedirs(run_dir, exist_ok=True)
    out_path = os.path.join(run_dir, "probe.json")
    procs = []
    with runner.network(g, _spec(fast_failover), run_dir, log) as net:
        try:
            recv = net.em.host(dst).popen(
                [sys.executable, "-m", "traffic.probe", "recv", "--out", out_path,
                 "--timeout", str(STREAM_S + 10)], cwd=runner.ROOT)
            procs.append(recv)
            time.sleep(0.3)  # the receiver binds before the first probe
            send = net.em.host(src).popen(
                [sys.executable, "-m", "traffic.probe", "send", "--dst", g.nodes[dst]["ip"],
                 "--rate", str(PROBE_RATE_HZ), "--duration", str(STREAM_S)], cwd=runner.ROOT)
            procs.append(send)
            cleanup.record(pids=[p.pid for p in procs])
            candidates = _candidates(g, scenario, src, dst)
            time.sleep(FAIL_AT_S - SAMPLE_S)
            before = _tx_packets(candidates)
            time.sleep(SAMPLE_S)
            after = _tx_packets(candidates)
            intf = max(candidates, key=lambda i: after.get(i, 0) - before.get(i, 0))
            fail_at = time.monotonic()
            subprocess.run(["ip", "link", "set", intf, "down"], check=True)
            send.wait(timeout=STREAM_S + 10)
            recv.wait(timeout=STREAM_S + 15)
            with open(out_path) as f:
                stream = json.load(f)
            status = net.ctl.get("/fabric/status")
        finally:
            cleanup.kill_pids([p.pid for p in procs], grace_s=1.0)
            cleanup.forget(pids=[p.pid for p in procs])
    arrivals = [tuple(a) for a in stream["arrivals"]]
    last_before = max((t for _, t in arrivals if t <= fail_at), default=fail_at)
    around = analyze([a for a in arrivals if last_before <= a[1] <= fail_at + WINDOW_S], None)
    result = {"scenario": scenario, "fast_failover": fast_failover, "failed_intf": intf,
              "probes_on_link": after.get(intf, 0) - before.get(intf, 0),
              "gap_ms": around["gap_ms"], "sent": stream["sent"], "lost": stream["lost"],
              "longest_loss_run": stream["longest_loss_run"],
              "stream_gap_ms": stream["gap_ms"], "openflow_errors": status["openflow_errors"]}
    with open(os.path.join(run_dir, "failover.json"), "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    return result


def measure_all(results_dir, log=print, repeats=1):
    """Every scenario with and without FAST_FAILOVER, ``repeats`` networks each.

    Returns
    -------
    list of dict
        Per scenario and setting: ``scenario``, ``fast_failover``, the medians over repeats
        of ``gap_ms``, ``lost`` and ``longest_loss_run``, and ``runs`` (every
        :func:`measure` result).
    """
    out = []
    for scenario in SCENARIOS:
        for ff in (True, False):
            label = f"{scenario}-{'ff' if ff else 'noff'}"
            runs = []
            for rep in range(repeats):
                log(f"failover: {label} ({rep + 1}/{repeats})")
                runs.append(measure(scenario, ff, os.path.join(results_dir, f"{label}-{rep + 1}"),
                                    log))
            out.append({"scenario": scenario, "fast_failover": ff, "runs": runs,
                        **{k: _median([r[k] for r in runs])
                           for k in ("gap_ms", "lost", "longest_loss_run")}})
    return out


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(results):
    """Lines of the medians of :func:`measure_all`."""
    lines = [f"{'link failed':<14} {'FAST_FAILOVER':>13} {'gap ms':>7} {'lost':>6} "
             f"{'loss run':>8} {'runs':>4}  interfaces"]
    for r in results:
        intfs = sorted({run["failed_intf"] for run in r["runs"]})
        lines.append(f"{r['scenario']:<14} {'on' if r['fast_failover'] else 'off':>13} "
                     f"{r['gap_ms']:>7.1f} {_or_dash(r['lost']):>6} "
                     f"{r['longest_loss_run']:>8} {len(r['runs']):>4}  {', '.join(intfs)}")
    lines.append(f"(medians over runs; probes at {PROBE_RATE_HZ:.0f} Hz, so the loss run, the "
                 f"most consecutive probes lost, is the outage in ms; gap: longest interval "
                 f"without probes around the failure, which also catches sender jitter)")
    return "\n".join(lines)


def _or_dash(v):
    return "-" if v is None else v


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="results")
    p.add_argument("--repeats", type=int, default=3, help="networks per scenario and setting")
    a = p.parse_args(argv)
    run_dir = os.path.join(a.results,
                           datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + "-failover")
    results = measure_all(run_dir, log=lambda m: print(m, flush=True), repeats=a.repeats)
    print(table(results))
    print(f"results: {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
