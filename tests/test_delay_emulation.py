"""Integration: fiber delay emulated on a kernel without netem (the userspace forwarder of
fabric/delayline.py), or with netem where the kernel has it; real Mininet, Open vSwitch,
our controller, ping, UDP and iperf3 inside the hosts (needs root).

The fabric: a data center (h1, h2) and two edge sites, h3 at 0 km and h4 at 80 km of
fiber. At 50 Mbit/s per 10 Gbit/s NIC (scale 0.005) the 80 km link's 400 us are 80 ms in
the emulation, each way."""

import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import pytest
import yaml

from fabric.cleanup import STATE_DIR, leftovers
from fabric.controller import Controller
from fabric.emulate import DELAY_NODE, Emulation, has_netem, rate_scale, scaled_delay_ms
from fabric.model import hosts, switches
from fabric.runner import bring_up
from topologies import build

pytestmark = pytest.mark.emulation
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
HOST_LINK_MBPS = 50
FAR_KM = 80
EDGE = {"sites": 2, "hosts_per_site": 1, "dc_hosts": 2, "site_km": [0, FAR_KM],
        "wan_gbps": 10, "host_gbps": 10, "dc_gbps": 10}
DC, NEAR, FAR = "h1", "h3", "h4"


@contextlib.contextmanager
def edge_network(tmp_path):
    g = build("edge", **EDGE)
    with Controller(str(tmp_path / "controller.log")) as ctl:
        with Emulation(g, ctl.of_port, rate_scale(g, HOST_LINK_MBPS)) as em:
            bring_up(g, ctl, em)
            yield g, em


def _ping_rtts_ms(em, src, dst_ip, count):
    out = em.host(src).cmd(f"ping -n -c {count} -i 0.2 {dst_ip}")
    rtts = [float(w[5:]) for w in out.split() if w.startswith("time=")]
    assert len(rtts) == count, out
    return rtts


def _forwarder_pids():
    out = subprocess.run(["pgrep", "-f", "--", r"-m fabric\.delayline"], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _net_ns(pid):
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _processes_in(ns, wait_s=10.0):
    """Command lines of the processes in network namespace ``ns``, once none is left or
    after ``wait_s`` (a killed shell takes a moment to go)."""
    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in os.listdir("/proc"):
            if p.isdigit() and _net_ns(p) == ns:
                try:
                    with open(f"/proc/{p}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    left.append(f"{p}: {cmd}")
                except OSError:
                    pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def test_rtt_order_and_throughput_across_the_far_site(tmp_path, clean_machine):
    with edge_network(tmp_path) as (g, em):
        assert em.info["delay_emulated"] is True
        assert em.info["delay_method"] in ("netem", "forwarder")
        one_way_ms = scaled_delay_ms(g.edges["g2", "d1"], em.scale)
        assert one_way_ms == pytest.approx(80.0)
        dc_ip = g.nodes[DC]["ip"]

        # RTT: the near site's pair crosses as many hops without fiber: its RTT is the base.
        base = statistics.median(_ping_rtts_ms(em, NEAR, dc_ip, 10)[1:])
        far = statistics.median(_ping_rtts_ms(em, FAR, dc_ip, 10)[1:])
        expected = 2 * one_way_ms + base
        print(f"RTT ms: base {base:.3f}, far {far:.3f}, expected {expected:.3f}")
        assert abs(far - expected) <= 0.05 * expected, (far, expected, base)

        # Order: a burst of numbered datagrams, more than one round trip of bytes at the
        # link's rate, arrives whole and in order.
        n = 400
        rx = em.host(DC).popen(
            [PY, "-c", "import socket, json\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)\n"
             "s.bind(('0.0.0.0', 9911)); s.settimeout(3.0); got = []\n"
             "try:\n"
             f"    while len(got) < {n}: got.append(int.from_bytes(s.recv(2048)[:4], 'big'))\n"
             "except socket.timeout:\n    pass\n"
             "print(json.dumps(got))\n"],
            stdout=subprocess.PIPE, text=True)
        time.sleep(0.5)
        before = em.forwarder_stats()
        em.host(FAR).cmd(
            f"{PY} -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for i in range({n}): s.sendto(i.to_bytes(4, 'big') + bytes(1396), "
            f"('{dc_ip}', 9911))\"")
        got = json.loads(rx.communicate(timeout=30)[0])
        assert got == list(range(n))
        if em.info["delay_method"] == "forwarder":
            time.sleep(0.6)  # its counters are written every 0.5 s
            after = em.forwarder_stats()
            assert after["frames_dropped"] == before["frames_dropped"] == 0
            assert after["frames_forwarded"] - before["frames_forwarded"] >= n

        # Throughput: a TCP transfer over the far link reaches its shaped rate when the
        # window covers the bandwidth-delay product (50 Mbit/s x 160 ms = 1 MB), and is
        # window-bound when it does not (64-128 KB per round trip: 3.3-6.6 Mbit/s).
        em.host(DC).cmd("iperf3 -s -D -p 5301")
        time.sleep(0.5)
        rates = {}
        for window, secs in (("4M", 8), ("64K", 3)):
            out = em.host(FAR).cmd(f"iperf3 -c {dc_ip} -p 5301 -C cubic -w {window} "
                                   f"-t {secs} -O 2 -J")
            rates[window] = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6
        em.host(DC).cmd("pkill -f 'iperf3 -s -D -p 5301'")
        print(f"TCP Mbit/s over {2 * one_way_ms:.0f} ms RTT: {rates}")
        assert rates["4M"] >= 0.9 * HOST_LINK_MBPS, rates
        # (the kernel doubles the buffer asked for: the window may reach 128 KB)
        assert rates["64K"] <= 2 * 65536 * 8 / (2 * one_way_ms / 1000) / 1e6, rates


# Only root may probe for netem (and run these tests at all).
no_forwarder = pytest.mark.skipif(os.geteuid() == 0 and has_netem(),
                                  reason="the kernel has netem: no forwarder runs")


@no_forwarder
def test_forwarder_and_its_namespace_go_with_the_emulation(tmp_path, clean_machine):
    with edge_network(tmp_path) as (g, em):
        assert em.info["delay_method"] == "forwarder"
        (pid,) = _forwarder_pids()
        ns = _net_ns(pid)
        assert ns != _net_ns(os.getpid())
    assert _forwarder_pids() == []
    assert _processes_in(ns) == []


@no_forwarder
def test_a_killed_run_leaves_no_forwarder_after_cleanup(tmp_path, clean_machine):
    spec = {
        "name": "delaykill", "seed": 1, "repeats": 1,
        "topology": {"name": "edge", "params": EDGE},
        "workload": {"name": "permutation", "params": {"bytes_per_flow": 100_000_000}},
        "emulation": {"host_link_mbps": HOST_LINK_MBPS},
        "timeout_s": 120,
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    p = subprocess.Popen([PY, "-u", "-m", "fabric.runner", str(path), "--results",
                          str(tmp_path / "res")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        if "ready in" in line:
            break
    pids = _forwarder_pids()
    ns = _net_ns(pids[0]) if pids else None
    p.kill()
    p.wait()
    assert len(pids) == 1 and ns is not None, "".join(out)
    # The forwarder dies with the process that started it (PR_SET_PDEATHSIG) ...
    deadline = time.monotonic() + 5
    while _forwarder_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _forwarder_pids() == []
    # ... and the clean-up of the dead run takes the namespace's shell with it.
    r = subprocess.run([PY, "-m", "fabric.cleanup"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "cleanup:" in r.stdout, r.stdout + r.stderr
    g = build("edge", **EDGE)
    assert leftovers(names=hosts(g) + switches(g) + [DELAY_NODE]) == {}
    assert _processes_in(ns) == []
    assert not os.path.exists(os.path.join(STATE_DIR, f"delayline-{p.pid}.json"))
