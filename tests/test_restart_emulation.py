"""Warm restart under traffic: real Mininet, Open vSwitch, controller and agents.

A k=4 fat-tree carries an all-to-all; once the controller sees it under way the controller is
killed (SIGKILL) and another started on the same ports. The switches keep forwarding on their
tables while it is down; when they reconnect they are read back and reconciled, not wiped.
The transfer must complete, every host pair must reach every other afterwards (hosts have
static ARP: they are known again from the model, not from ARP), and no switch may be wiped
or refuse a message. The reconcile figures are printed (target: within 5 s of reconnecting);
a switch that kept its tables gets no flow or group mod, which is asserted too under ecmp
(under congestion, the flows the killed controller had learned are learned again).

Without a model (the restarted controller is given no ``--fabric-topology``), nothing tells the
controller where the hosts are, and with static ARP they never ARP again: once discovery has
settled the reconciliation removes their routes and leaves every host port sending its IPv4
packets to the controller (through the port's meter), and each host is relearned from the
first packet it sends. Every host pair must reach every other again.
"""

import threading
import time

import pytest

from fabric import runner, spec as specs
from fabric.reach import all_pairs
from topologies import build
from traffic import workloads

pytestmark = pytest.mark.emulation

# About 40 s of traffic at the spec's 20 Mbit/s per host: longer than a restart and the
# switches' reconnection back-off (Open vSwitch retries after 1, 2, 4, 8 s).
LONG_ALLTOALL = {"name": "moe_alltoall",
                 "params": {"tokens_per_host": 6144, "schedule": "shift", "channels": 3}}


@pytest.mark.parametrize("policy", ["ecmp", "congestion"])
def test_a_transfer_runs_through_a_controller_kill_and_restart(policy, tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "restart", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": LONG_ALLTOALL, "policy": policy, "timeout_s": 120})
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl = net.ctl
        schedule = workloads.build(spec["workload"]["name"], g, 1,
                                   **spec["workload"]["params"])
        outcome = {}

        def transfer():
            try:
                outcome["result"] = runner.run_on(net, schedule, spec, str(tmp_path / "run"))
            except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
                outcome["error"] = e

        # The restart runs in this thread, the transfer in another: the controller dies with
        # the thread that started it (PR_SET_PDEATHSIG follows the thread, not the process).
        mover = threading.Thread(target=transfer)
        mover.start()
        times = {}
        try:
            ctl.wait_status(lambda s: s["utilization"]["max"] > 0.2, 60, "traffic")
            times["kill"] = time.monotonic()
            ctl.crash()
            ctl.start()
            times["listening"] = time.monotonic()
            times["status"] = ctl.wait_status(
                lambda s: s["switches"] == 20 and s["reconcile"]["switches"] >= 20
                and not s["pending"], 60, "every switch reconciled")
            times["reconciled"] = time.monotonic()
        finally:
            mover.join()
        if "error" in outcome:
            raise outcome["error"]
        result = outcome["result"]
        reach = all_pairs(g, net.em, rounds=2)
        status = ctl.get("/fabric/status")
    rec = times["status"]["reconcile"]
    print(f"\nrestart ({policy}): killed at +0.0 s, listening again at "
          f"+{times['listening'] - times['kill']:.1f} s, every switch reconciled at "
          f"+{times['reconciled'] - times['kill']:.1f} s; first reconnect to last switch "
          f"reconciled {rec['span_s']:.2f} s, per switch at most {rec['max_s']:.2f} s "
          f"(target 5 s); {rec['flow_mods']} flow mods, {rec['group_mods']} group mods, "
          f"{rec['unchanged']} of {rec['switches']} switches unchanged; transfer "
          f"{result['flows_completed']}/{result['flows_total']} flows, "
          f"completion {result.get('completion_time_s')} s")
    assert result["flows_completed"] == result["flows_total"] == 240
    assert reach["unreachable"] == []
    assert status["hosts"] == 16 and status["links"] == 32
    assert status["openflow_errors"] == 0 and rec["wiped"] == 0
    if policy == "congestion":
        # The new controller does not know the flows the old one learned: their rules go, and
        # the flows are learned again from their next packets.
        assert status["counters"]["flows_learned"] > 0
        return
    assert rec["unchanged"] == rec["switches"] == 20
    assert rec["flow_mods"] == rec["group_mods"] == 0


def without_model(args):
    """A controller's options with ``--fabric-topology PATH`` left out."""
    args = list(args)
    i = args.index("--fabric-topology")
    return args[:i] + args[i + 2:]


def test_hosts_with_static_arp_are_relearned_from_traffic_after_a_restart_without_a_model(
        tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "restart-no-model",
                        "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": {"name": "permutation", "params": {}}, "policy": "ecmp",
                        "timeout_s": 60})
    assert spec["emulation"]["static_arp"]
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl = net.ctl
        ctl.crash()
        ctl.extra_args = without_model(ctl.extra_args)
        t0 = time.monotonic()
        ctl.start()
        status = ctl.wait_status(
            lambda s: s["switches"] == 20 and s["links"] == 32
            and s["reconcile"]["switches"] >= 20 and not s["pending"], 60,
            "every switch reconciled")
        reconciled_s = time.monotonic() - t0
        known_s = status["hosts"]   # hosts that spoke before the reconciliation (none, usually)
        t1 = time.monotonic()
        reach = all_pairs(g, net.em, rounds=3)
        reach_s = time.monotonic() - t1
        status = ctl.get("/fabric/status")
    rec = status["reconcile"]
    print(f"\nrestart without a model: every switch reconciled {reconciled_s:.1f} s after "
          f"the restart ({rec['flow_mods']} flow mods, {rec['group_mods']} group mods, "
          f"{known_s} hosts known then); "
          f"all pairs pinged in {reach_s:.1f} s, {reach['rounds']} rounds, "
          f"{reach['first_round_lost']} of {reach['pairs']} pairs lost in the first; "
          f"{status['counters'].get('hosts_learned_from_traffic', 0)} hosts learned from "
          f"traffic")
    assert reach["unreachable"] == []
    assert status["hosts"] == 16 and status["links"] == 32
    assert status["counters"]["hosts_learned_from_traffic"] == 16
    assert status["openflow_errors"] == 0 and rec["wiped"] == 0
