"""A host flooding new flows while others set up connections: Mininet, Open vSwitch and our
controller under ``congestion`` (emulation).

On a k=4 fat-tree, h9 opens 200 TCP connections to h13 one after the other (each is two new
flows the controller learns: the SYN at h9's switch, the SYN-ACK at h13's), once on a quiet
fabric and once while h1 sends UDP datagrams to ever new ports of h5 at 12,000 per second
(each a new flow) until that second round is done. Both setup rates are printed; the test
asserts what must hold whatever the machine's load: every connection completes, the REST
API answers within a second throughout, the flood reaches the controller only through h1's
port meter (a small share of what h1 sent), and what the controller remembers of it is
bounded (learned flows, no host invented, memory). A third round runs while h1 sends the
same packet rate as one flow (forwarded by the switches alone): what that costs legitimate
setup is the emulator's own (one userspace switch process), printed beside. Metering is
tested on the fake datapath in tests/test_meters.py; the flood's cost in repeated paired
rounds, beside drop rules at the flooding port, is measured by bench/flood.py.
"""

import json
import threading
import time

import pytest

from controllers.core import FLOWS_PER_HOST_MAX
from fabric import runner, spec as specs
from topologies import build
from procs import stop
from traffic.flood import connect_round, cpu_s, end_flood, ovs_pid, rss_mb, start_flood, \
    start_server

pytestmark = pytest.mark.emulation

CONNECTIONS = 200
FLOOD_PPS = 12_000


class RestWatch(threading.Thread):
    """Polls /fabric/status; records latencies and failures."""

    def __init__(self, ctl):
        super().__init__(daemon=True)
        self.ctl, self.latencies, self.failures = ctl, [], []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.ctl.get("/fabric/status", timeout=5.0)
                self.latencies.append(time.monotonic() - t0)
            except Exception as e:  # noqa: BLE001 - recorded, asserted empty
                self.failures.append(repr(e))
            self.stop.wait(0.2)


def test_a_flooding_host_does_not_stop_flow_setup_or_rest_and_is_remembered_within_bounds(
        tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "flood", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": "moe_alltoall", "policy": "congestion", "timeout_s": 60})
    figures = {}
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl, em = net.ctl, net.em
        server = start_server(em.host("h13"))
        flooder = None
        watch = RestWatch(ctl)
        try:
            time.sleep(0.5)
            ip13, ip5 = g.nodes["h13"]["ip"], g.nodes["h5"]["ip"]
            figures["quiet"] = connect_round(em.host("h9"), ip13, CONNECTIONS)
            before = ctl.get("/fabric/status")
            rss_before = rss_mb(ctl.proc.pid)
            watch.start()
            flooder = start_flood(em.host("h1"), ip5, FLOOD_PPS, one_flow=False)
            time.sleep(2.0)
            # Where the flood's cost lands: our controller, or the switches' one process.
            cpu0 = cpu_s(ctl.proc.pid), cpu_s(ovs_pid()), time.monotonic()
            figures["flooded"] = connect_round(em.host("h9"), ip13, CONNECTIONS)
            cpu1 = cpu_s(ctl.proc.pid), cpu_s(ovs_pid()), time.monotonic()
            figures["cpu_share_during_flooded_round"] = {
                "controller": round((cpu1[0] - cpu0[0]) / (cpu1[2] - cpu0[2]), 2),
                "ovs_vswitchd": round((cpu1[1] - cpu0[1]) / (cpu1[2] - cpu0[2]), 2)}
            figures["flood"] = end_flood(flooder)
            time.sleep(1.0)
            watch.stop.set()
            watch.join(timeout=10)
            after = ctl.get("/fabric/status")
            figures["rss_mb"] = [round(rss_before, 1), round(rss_mb(ctl.proc.pid), 1)]
            # The control: the same packet rate as one flow, which the switches forward
            # without the controller. What it costs legitimate setup is the emulator's own.
            flooder = start_flood(em.host("h1"), ip5, FLOOD_PPS, one_flow=True)
            time.sleep(2.0)
            figures["one_flow"] = connect_round(em.host("h9"), ip13, CONNECTIONS)
            figures["one_flow_flood"] = end_flood(flooder)
        finally:
            watch.stop.set()
            for proc in (flooder, server):
                stop(proc)
    c0, c1 = before["counters"], after["counters"]
    quiet, flooded, flood = figures["quiet"], figures["flooded"], figures["flood"]
    figures["setup_per_s"] = {"quiet": round(quiet["completed"] / quiet["seconds"], 1),
                              "flooded": round(flooded["completed"] / flooded["seconds"], 1)}
    figures["slowdown"] = round(flooded["seconds"] / quiet["seconds"], 2)
    figures["slowdown_one_flow"] = round(figures["one_flow"]["seconds"] / quiet["seconds"], 2)
    figures["flow_packet_ins_during"] = c1["flow_packet_ins"] - c0["flow_packet_ins"]
    figures["flows_learned_during"] = c1["flows_learned"] - c0["flows_learned"]
    figures["rest_latency_max_s"] = round(max(watch.latencies), 3)
    figures["rest_samples"] = len(watch.latencies)
    figures["flows_now"] = c1["flows"]
    print("flood figures:", json.dumps(figures))
    # The flood was a flood, and it reached the controller only through h1's port meter.
    assert flood["pps"] >= 10_000, figures
    assert figures["flow_packet_ins_during"] < 0.2 * flood["sent"], figures
    # Legitimate setup completed, REST answered throughout.
    assert quiet["completed"] == flooded["completed"] == CONNECTIONS, figures
    assert figures["one_flow"]["completed"] == CONNECTIONS, figures
    assert not watch.failures, watch.failures[:3]
    assert max(watch.latencies) < 1.0 and len(watch.latencies) >= 20, figures
    # What the controller remembers of it is bounded: no invented host, h1's learned flows
    # capped, memory.
    assert after["hosts"] == 16 and after["openflow_errors"] == 0
    assert c1["flows"] <= FLOWS_PER_HOST_MAX + 2 * CONNECTIONS * 2
    assert figures["rss_mb"][1] < figures["rss_mb"][0] + 64, figures
