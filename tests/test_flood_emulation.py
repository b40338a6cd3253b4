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
tested on the fake datapath in tests/test_meters.py.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from controllers.core import FLOWS_PER_HOST_MAX
from fabric import runner, spec as specs
from topologies import build
from procs import stop

pytestmark = pytest.mark.emulation

CONNECTIONS = 200
FLOOD_PPS = 12_000
PORT = 6001

SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d))
s.listen(1024)
while True:
    c, _ = s.accept()
    c.close()
""" % PORT

CLIENT = """
import json, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, lat, t0 = 0, [], time.monotonic()
for _ in range(n):
    t = time.monotonic()
    try:
        socket.create_connection((ip, port), timeout=10).close()
        ok += 1
    except OSError:
        pass
    lat.append(time.monotonic() - t)
lat.sort()
print(json.dumps({"completed": ok, "tried": n, "seconds": time.monotonic() - t0,
                  "p50_s": lat[n // 2], "max_s": lat[-1]}))
"""

FLOODER = """
import json, signal, socket, sys, time
ip, pps, secs, one_flow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = refused = 0
port = 1024
t0 = time.monotonic()
while True:
    elapsed = time.monotonic() - t0
    if elapsed >= secs or stopped:
        break
    while sent + refused < elapsed * pps:
        if not one_flow:
            port = port + 1 if port < 65535 else 1024
        try:
            s.sendto(b"flood", (ip, port))
            sent += 1
        except OSError:
            refused += 1
    time.sleep(0.001)
print(json.dumps({"sent": sent, "refused": refused, "seconds": elapsed,
                  "pps": sent / elapsed}))
"""


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_s(pid):
    """User and system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ovs_pid():
    with open("/var/run/openvswitch/ovs-vswitchd.pid") as f:
        return int(f.read().strip())


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


def start_flood(host, ip, one_flow):
    return host.popen([sys.executable, "-c", FLOODER, ip, str(FLOOD_PPS), "120",
                       "1" if one_flow else "0"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def end_flood(flooder):
    flooder.terminate()   # it stops and says what it sent
    stdout, stderr = flooder.communicate(timeout=30)
    assert flooder.returncode == 0, stderr
    return json.loads(stdout)


def connect_round(client_host, ip):
    out = client_host.popen([sys.executable, "-c", CLIENT, ip, str(PORT), str(CONNECTIONS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = out.communicate(timeout=300)
    assert out.returncode == 0, stderr
    return json.loads(stdout)


def test_a_flooding_host_does_not_stop_flow_setup_or_rest_and_is_remembered_within_bounds(
        tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "flood", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": "moe_alltoall", "policy": "congestion", "timeout_s": 60})
    figures = {}
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl, em = net.ctl, net.em
        server = em.host("h13").popen([sys.executable, "-c", SERVER],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        flooder = None
        watch = RestWatch(ctl)
        try:
            time.sleep(0.5)
            ip13, ip5 = g.nodes["h13"]["ip"], g.nodes["h5"]["ip"]
            figures["quiet"] = connect_round(em.host("h9"), ip13)
            before = ctl.get("/fabric/status")
            rss_before = rss_mb(ctl.proc.pid)
            watch.start()
            flooder = start_flood(em.host("h1"), ip5, one_flow=False)
            time.sleep(2.0)
            # Where the flood's cost lands: our controller, or the switches' one process.
            cpu0 = cpu_s(ctl.proc.pid), cpu_s(ovs_pid()), time.monotonic()
            figures["flooded"] = connect_round(em.host("h9"), ip13)
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
            flooder = start_flood(em.host("h1"), ip5, one_flow=True)
            time.sleep(2.0)
            figures["one_flow"] = connect_round(em.host("h9"), ip13)
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
