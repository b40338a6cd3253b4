"""A gray link under real traffic: Mininet, Open vSwitch, our controller (emulation).

A k=4 fat-tree under ``ecmp``; h1 sends 12 steady UDP streams of jumbo datagrams to h5, so
both of e1's uplinks carry some. The uplink that carries most is made gray two ways, and
each time the controller must find it from its statistics rounds, route around it (its
traffic moves to the other uplink), report the detection time, and route over it again once
it is healthy for ``restore_s`` (traffic returns):

- its htb shaping cut to 10% (``shape_link``): no counter shows it. The packets htb drops
  are refused to Open vSwitch's AF_PACKET send (ENOBUFS), which its userspace datapath does
  not count, and a veth's receive counters are its peer's transmit counters, so both ends
  agree on 2 Mbit/s sent and received, 0 dropped. What shows it: its LLDP probes wait behind
  the standing queue (1,000 jumbo frames at 2 Mbit/s: seconds) while it delivers a tenth of
  the capacity the model gives it;
- the far end's MTU lowered to 1,500 bytes (``gray_link``): the link stays up and answers
  LLDP (small frames), but the veth drops every jumbo frame, and counts it at both ends
  (tx_dropped, rx_dropped).

The pure logic and every policy are tested on the fake datapath in tests/test_health.py.
"""

import json
import subprocess
import time

import pytest

from fabric import runner, spec as specs
from fabric.emulate import link_mbps
from topologies import build
from procs import stop, wait

pytestmark = pytest.mark.emulation

RESTORE_S = 6.0
STREAMS = 12


def _spec():
    return specs.check({"name": "gray", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": "moe_alltoall", "policy": "ecmp",
                        "controller": {"health": {"restore_s": RESTORE_S}}, "timeout_s": 60})


def tx(ctl, dpid, port):
    """(tx_bytes, tx_dropped) of a switch port, read through the controller's REST API."""
    (row,) = ctl.get(f"/stats/port/{dpid}/{port}")[str(dpid)]
    return row["tx_bytes"], row["tx_dropped"]


def rates_mbps(ctl, ports, window_s=2.0):
    """Transmit rate (Mbit/s) and drops of each (dpid, port) over ``window_s``."""
    before = {p: tx(ctl, *p) for p in ports}
    time.sleep(window_s)
    out = {}
    for p in ports:
        b, d = tx(ctl, *p)
        out[p] = {"mbps": round((b - before[p][0]) * 8 / window_s / 1e6, 2),
                  "dropped": d - before[p][1]}
    return out


def test_a_gray_link_is_routed_around_and_traffic_returns_once_it_heals(tmp_path,
                                                                        clean_machine):
    g = build("fattree", k=4)
    spec = _spec()
    figures = {}
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl, em = net.ctl, net.em
        h1, h5 = em.host("h1"), em.host("h5")
        server = h5.popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        client = None
        try:
            time.sleep(0.5)
            client = h1.popen(["iperf3", "-c", g.nodes["h5"]["ip"], "-u", "-b", "1.4M",
                               "-l", "8000", "-P", str(STREAMS), "-t", "90"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            e1 = g.nodes["e1"]["dpid"]
            uplinks = {a: (e1, g.edges["e1", a]["ports"]["e1"]) for a in ("a1", "a2")}
            time.sleep(3.0)
            before = rates_mbps(ctl, uplinks.values())
            gray = max(uplinks, key=lambda a: before[uplinks[a]]["mbps"])
            other = next(a for a in uplinks if a != gray)
            near, far_port = uplinks[gray], g.edges["e1", gray]["ports"][gray]
            link = sorted([[e1, near[1]], [g.nodes[gray]["dpid"], far_port]])
            figures["before_mbps"] = {a: before[uplinks[a]]["mbps"] for a in uplinks}
            assert before[near]["mbps"] > 1.0, figures

            def excluded():
                return [x for x in ctl.get("/fabric/status")["health"]["excluded"]
                        if x["link"] == link]

            # 1. htb cut to 10%: nothing counted as dropped, yet found, and routed around.
            full = link_mbps(g.edges["e1", gray], net.scale)
            t0 = time.monotonic()
            em.shape_link("e1", gray, 0.1)
            (out,) = wait("the rate-cut link detected", excluded, 20)
            figures["rate_cut"] = cut = {
                "link_mbps": round(full, 2), "detected_after_s": round(time.monotonic() - t0, 2),
                "detection_s": out["detection_s"], "why": out["why"]}
            assert out["degraded"] and out["detection_s"] > 0
            assert out["why"]["rate_share"] < 0.5 and out["why"]["probe_lag_s"] >= 3.0, figures
            time.sleep(1.0)
            moved = rates_mbps(ctl, uplinks.values())
            cut["rerouted_mbps"] = {a: moved[uplinks[a]]["mbps"] for a in uplinks}
            cut["tx_dropped"] = moved[near]["dropped"]
            # Its counters never saw a drop; new traffic all takes the other uplink. What the
            # cut one still sends is its queue draining at the cut rate (its transmit counter
            # is the veth's, counted as htb lets packets out), up to the window's noise.
            assert moved[near]["dropped"] == 0, figures
            assert moved[near]["mbps"] <= 0.1 * full * 1.25, figures
            total = sum(x["mbps"] for x in before.values())
            assert moved[uplinks[other]]["mbps"] > 0.8 * total, figures
            em.shape_link("e1", gray, 1.0)
            t1 = time.monotonic()
            wait("the link back after its rate is", lambda: not excluded(), RESTORE_S + 15)
            cut["restored_after_s"] = round(time.monotonic() - t1, 2)
            time.sleep(1.0)
            back = rates_mbps(ctl, uplinks.values())
            cut["restored_mbps"] = {a: back[uplinks[a]]["mbps"] for a in uplinks}
            assert back[near]["mbps"] > 1.0, figures
            time.sleep(2.0)

            # 2. Jumbo frames black-holed at the far end: a gray link the counters see.
            t0 = time.monotonic()
            em.gray_link("e1", gray, on=True)
            (out,) = wait("the gray link detected", excluded, 20)
            figures["detected_after_s"] = round(time.monotonic() - t0, 2)
            figures["detection_s"] = out["detection_s"]
            figures["why"] = out["why"]
            assert out["degraded"] and out["detection_s"] > 0
            # Also by the names a run gives its switches.
            named = ctl.get("/fabric/status")["degraded_links"]
            assert [sorted(x) for x in named] == [sorted(["e1", gray])], named
            time.sleep(1.0)   # the reroute is flushed with the round that found it
            moved = rates_mbps(ctl, uplinks.values())
            figures["rerouted_mbps"] = {a: moved[uplinks[a]]["mbps"] for a in uplinks}
            # Traffic moved off it: the other uplink carries what both did.
            assert moved[near]["mbps"] < 0.2, figures
            total = sum(x["mbps"] for x in before.values())
            assert moved[uplinks[other]]["mbps"] > 0.8 * total, figures

            # 3. Healed: it returns after restore_s without a bad round, and traffic with it.
            em.gray_link("e1", gray, on=False)
            t1 = time.monotonic()
            wait("the healed link restored", lambda: not excluded(), RESTORE_S + 15)
            figures["restored_after_s"] = round(time.monotonic() - t1, 2)
            time.sleep(1.0)
            back = rates_mbps(ctl, uplinks.values())
            figures["restored_mbps"] = {a: back[uplinks[a]]["mbps"] for a in uplinks}
            assert back[near]["mbps"] > 1.0 and back[near]["dropped"] == 0, figures
            status = ctl.get("/fabric/status")
            figures["events"] = [e["event"] for e in status["health"]["events"]]
            assert status["openflow_errors"] == 0
        finally:
            for proc in (client, server):
                stop(proc)
    print("gray link figures:", json.dumps(figures))
    assert figures["events"][-4:] == ["degraded", "restored"] * 2
