"""The controller under hostile switches while a real emulated fabric carries traffic.

A k=4 fat-tree (Mininet, Open vSwitch) under our controller runs a small all-to-all while
two hostile fake switches (tests/fakeswitch.py) send 10,000 valid, mutated and malformed
OpenFlow messages to the same controller: the all-to-all completes with no flow lost, every
host pair still reaches every other afterwards, no OpenFlow error is reported by the real
switches, all 20 of them stay connected, the REST API answers throughout and the hostile
connections are closed. Needs root; run alone (it builds an emulation).
"""

import threading
import time

import pytest

from fabric import runner, spec as specs
from fabric.reach import all_pairs
from fakeswitch import HostileSwitch
from test_hostile import Watch, rss_mb
from topologies import build
from traffic import workloads

pytestmark = pytest.mark.emulation

ALLTOALL = {"name": "moe_alltoall",
            "params": {"tokens_per_host": 32, "schedule": "shift", "channels": 3}}


def test_hostile_switches_while_a_fat_tree_carries_an_alltoall(tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "hostile", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": ALLTOALL, "policy": "ecmp", "controller": {},
                        "timeout_s": 120})
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl = net.ctl
        rss_before = rss_mb(ctl.proc.pid)
        watch = Watch(ctl, period_s=0.5)
        hostiles = [HostileSwitch(ctl.of_port, seed=11, total=6000, handshake=True,
                                  dpid_base=0xBAD0000),
                    HostileSwitch(ctl.of_port, seed=12, total=4000, handshake=False,
                                  dpid_base=0)]
        schedule = workloads.build(spec["workload"]["name"], g, 1, **spec["workload"]["params"])
        result = {}
        run = threading.Thread(target=lambda: result.update(
            runner.run_on(net, schedule, spec, str(tmp_path / "run"))))
        watch.start()
        run.start()
        time.sleep(1.0)
        for h in hostiles:
            h.start()
        for h in hostiles:
            h.join(timeout=300)
        run.join(timeout=300)
        watch.stop.set()
        watch.join(timeout=5)
        reach = all_pairs(g, net.em, rounds=2)
        status = ctl.get("/fabric/status")
        rss_after = rss_mb(ctl.proc.pid)
    sent = sum(h.sent for h in hostiles)
    malformed = sum(h.malformed for h in hostiles)
    print("hostile emulation figures:", {
        "sent": sent, "malformed": malformed, "closed": sum(h.closed for h in hostiles),
        "rss_mb": (rss_before, rss_after), "rest_latency_max_s": max(watch.latencies),
        "flows": (result.get("flows_completed"), result.get("flows_total"))})
    assert sent >= 10_000 and sum(h.closed for h in hostiles) == malformed
    assert sum(h.not_closed for h in hostiles) == 0
    assert result["flows_completed"] == result["flows_total"] == 240
    assert reach["unreachable"] == []
    # The hostile switches send ERROR messages among their mutants; the real ones send none.
    real = {str(g.nodes[n]["dpid"]) for n in g if g.nodes[n]["role"] != "host"}
    assert not real & set(status["openflow_errors_by_switch"]), status["openflow_errors_by_switch"]
    assert status["switches"] == 20
    assert not watch.failures and max(watch.latencies) < 2.0
    assert rss_after < rss_before + 256
