"""Warm restart and reconciliation, on fake switches that keep their tables.

A controller (routing core and driver) installs a k=4 fat-tree's routes on fake switches
(tests/fakedp.py); a second controller, started afresh as after a restart, discovers the same
fabric in another order and reads the switches back. What it sends is compared with what the
switches lacked: nothing when they hold the right state, exactly the difference when a rule or
group is missing, extra or wrong; an OpenFlow error, mapped back to its message by xid, makes
the driver read that switch back and resend only what it refused. Pure: no Ryu, no Mininet.
"""

import itertools

import pytest

from controllers.core import RoutingCore, expected_fabric
from controllers.driver import READ_TIMEOUT_S, FabricDriver
from controllers import render
from controllers.render import GroupIds, group_id_of
from controllers.rules import (COOKIE, Bucket, ClearSwitch, FlowDumpRequest, FlowMod, FlowRule,
                               Group, GroupDumpRequest, GroupMod, MeterDumpRequest, MeterMod,
                               Output, match)
from fabric.model import host_switch, hosts, switches
from test_driver import Switches, arp
from topologies import build

STATS_S, LLDP_S = 1.0, 2.0


def controller(g, net, now, order=1, policy="ecmp", model=True, settle_s=None):
    """A controller that connects to the switches of ``net`` at ``now`` (in node order, or
    reversed for ``order=-1``) and discovers their links; returns (core, driver)."""
    core = RoutingCore(policy=policy, expected=expected_fabric(g) if model else None)
    driver = FabricDriver(core, stats_interval_s=STATS_S, lldp_interval_s=LLDP_S,
                          settle_s=settle_s)
    for sw in switches(g)[::order]:
        ports = [d["ports"][sw] for _, _, d in g.edges(sw, data=True)]
        net.deliver(driver.switch_enter(net.dpid(sw), ports, now))
    for u, v, d in list(g.edges(data=True))[::order]:
        if u in switches(g) and v in switches(g):
            for a, b in ((u, v), (v, u)):
                net.deliver(driver.link_seen(net.dpid(a), d["ports"][a], net.dpid(b),
                                             d["ports"][b], now))
    return core, driver


def reconcile(driver, net, now):
    """Let the driver read every switch back; returns the table changes it sent, and confirms
    them."""
    net.deliver(driver.tick(now)[0])
    assert net.reads, "the driver read no switch back"
    out = net.answer_reads(driver, now)
    out += net.deliver(driver.tick(now)[0])
    net.confirm(driver, now)
    return [m for m in out if isinstance(m, (FlowMod, GroupMod, ClearSwitch))]


def installed():
    """A k=4 fat-tree whose routes a first controller installed and confirmed."""
    g = build("fattree", k=4)
    net = Switches(g)
    core, driver = controller(g, net, 0.0)
    reconcile(driver, net, 0.0)
    assert not driver.status()["pending"]
    return g, net, core


def holds_what_core_wants(net, core):
    for dpid, sw in net.fab.by_dpid.items():
        assert dict(sw.flows) == core.installed[dpid]["flows"]
        assert dict(sw.groups) == core.installed[dpid]["groups"]


def all_pairs_delivered(g, net):
    for a, b in itertools.permutations(hosts(g), 2):
        assert net.fab.paths(a, b)


def test_a_first_controller_installs_every_route_without_wiping_switches():
    g, net, core = installed()
    holds_what_core_wants(net, core)
    all_pairs_delivered(g, net)
    assert core.status()["hosts"] == 16   # from the model: no host sent anything


@pytest.mark.parametrize("policy", ["ecmp", "shortest", "congestion"])
def test_a_restarted_controller_sends_no_mod_to_switches_that_kept_their_state(policy):
    g = build("fattree", k=4)
    net = Switches(g)
    _, first = controller(g, net, 0.0, policy=policy)
    assert reconcile(first, net, 0.0)
    # Restart: another process discovers the switches and links in the reverse order.
    core, driver = controller(g, net, 100.0, order=-1, policy=policy)
    assert reconcile(driver, net, 100.0) == []
    rec = driver.status()["reconcile"]
    assert rec["switches"] == rec["unchanged"] == 20
    assert rec["flow_mods"] == rec["group_mods"] == 0 and rec["wiped"] == 0
    assert not driver.status()["pending"]
    holds_what_core_wants(net, core)
    all_pairs_delivered(g, net)


def test_a_switch_holding_our_rules_waits_for_discovery_to_settle_before_any_change():
    g, net, _ = installed()
    # A restart without a model: nothing says when discovery is complete but time, and
    # hosts are known again only once they speak (here a gratuitous ARP each).
    core, driver = controller(g, net, 100.0, model=False, settle_s=3.0)
    assert {r.dpid for r in net.reads} == set(net.fab.by_dpid)   # read back at once
    assert {type(r) for r in net.reads} == {FlowDumpRequest, GroupDumpRequest, MeterDumpRequest}
    out = net.answer_reads(driver, 100.0)
    for h in hosts(g):
        out += net.deliver(driver.packet_in_arp(*arp(g, h, h), b"garp", 101.0))
    out += net.deliver(driver.tick(102.9)[0])
    assert not [m for m in out if isinstance(m, (FlowMod, GroupMod, ClearSwitch))]
    status = driver.status()
    assert status["pending"] and status["reconcile"]["waiting"] == 20
    out = net.deliver(driver.tick(103.0)[0])
    assert not [m for m in out if isinstance(m, (FlowMod, GroupMod, ClearSwitch))]
    rec = driver.status()["reconcile"]
    assert rec["switches"] == rec["unchanged"] == 20 and not driver.status()["pending"]
    all_pairs_delivered(g, net)


def test_empty_switches_are_reconciled_at_once_without_waiting_to_settle():
    g = build("fattree", k=4)
    net = Switches(g)
    core, driver = controller(g, net, 0.0, model=False, settle_s=3.0)
    out = net.answer_reads(driver, 0.0)
    assert {m.dpid for m in out if isinstance(m, FlowMod)} == set(net.fab.by_dpid)
    assert not [m for m in out if isinstance(m, ClearSwitch)]


def damage(net, dpid, core):
    """Change switch ``dpid`` behind the controller's back: one rule missing, one extra, one
    group with wrong buckets, one group missing (with the rules using it), one extra group.
    Returns the messages that repair exactly that, as (command, kind, key) triples."""
    sw = net.fab.by_dpid[dpid]
    table = sw.table
    want = core.installed[dpid]
    groups = sorted(want["groups"].values())
    wrong, gone = groups[0], groups[-1]
    users = [r for r in want["flows"].values()
             if any(getattr(a, "group_id", None) == gone.group_id for a in r.actions)]
    lost = next(r for r in sorted(want["flows"].values(), key=lambda r: r.key)
                if r not in users and not any(getattr(a, "group_id", None) == wrong.group_id
                                              for a in r.actions) and r.priority == 100)
    extra = FlowRule(123, match(eth_dst="02:00:00:00:00:99"), (Output(1),), cookie=COOKIE)
    spare = Group(group_id_of(("spare", 1)), "select", (Bucket((Output(1),)),))
    for r in users + [lost]:
        table.delete_flow(r)
    table.delete_group(gone.group_id)
    table.set_group(wrong._replace(buckets=wrong.buckets[:1] + wrong.buckets[:1]))
    table.add_flow(extra)
    table.set_group(spare)
    repair = {("add", "f", r.key) for r in users + [lost]}
    repair |= {("delete", "f", extra.key), ("modify", "g", wrong.group_id),
               ("add", "g", gone.group_id), ("delete", "g", spare.group_id)}
    return repair


def test_a_switch_with_missing_extra_and_wrong_state_gets_exactly_the_difference():
    g, net, first = installed()
    dpid = net.dpid("a1")
    want = damage(net, dpid, first)
    core, driver = controller(g, net, 100.0, order=-1)
    msgs = reconcile(driver, net, 100.0)
    sent = {(m.command, "f" if isinstance(m, FlowMod) else "g",
             m.rule.key if isinstance(m, FlowMod) else m.group.group_id) for m in msgs}
    assert sent == want and len(msgs) == len(want)
    assert {m.dpid for m in msgs} == {dpid}
    rec = driver.status()["reconcile"]
    assert rec["unchanged"] == 19 and rec["switches"] == 20
    assert rec["flow_mods"] + rec["group_mods"] == len(want)
    holds_what_core_wants(net, core)
    all_pairs_delivered(g, net)


def test_an_openflow_error_is_mapped_to_its_message_and_the_switch_resynchronised():
    g, net, core = installed()
    driver = FabricDriver(core, stats_interval_s=STATS_S, lldp_interval_s=LLDP_S)
    # A live controller: a link goes down, the switch refuses one of the changes.
    e1, a1 = net.dpid("e1"), net.dpid("a1")
    port = g.edges["e1", "a1"]["ports"]["e1"]
    msgs = driver.port_status(e1, port, False, 200.0)
    mods = [m for m in msgs if isinstance(m, (FlowMod, GroupMod)) and m.dpid == e1]
    assert mods
    refused = mods[-1]   # the last change, so refusing it invalidates none after it
    xids = {}
    for i, m in enumerate(msgs):
        if isinstance(m, (FlowMod, GroupMod)):
            xids[m] = 1000 + i
            driver.sent(m.dpid, 1000 + i, m)
    net.deliver([m for m in msgs if m != refused])
    net.confirm(driver, 200.0)
    out = net.deliver(driver.openflow_error(e1, xids[refused], 4, 1, 200.1))
    assert {(type(m), m.dpid) for m in out} == {(FlowDumpRequest, e1), (GroupDumpRequest, e1),
                                                (MeterDumpRequest, e1)}
    (error,) = driver.status()["errors"]["recent"]
    assert error["xid"] == xids[refused] and error["message"] == repr(refused)
    resent = [m for m in net.answer_reads(driver, 200.2) if isinstance(m, (FlowMod, GroupMod))]
    assert resent == [refused]
    net.confirm(driver, 200.3)
    assert driver.status()["reconcile"]["resyncs"] == 1 and not driver.status()["pending"]
    holds_what_core_wants(net, core)
    # An error naming no change of ours (a reply to a request) reads nothing back.
    assert driver.openflow_error(a1, 99, 1, 1, 201.0) == []
    assert driver.status()["errors"]["unmatched"] == 1


def test_a_switch_that_never_answers_the_reading_is_wiped_and_rebuilt():
    g = build("fattree", k=4)
    net = Switches(g)
    core, driver = controller(g, net, 0.0)
    net.deliver(driver.tick(0.0)[0])
    silent = net.dpid("c1")
    net.reads = [r for r in net.reads if r.dpid != silent]
    net.answer_reads(driver, 0.0)
    early = net.deliver(driver.tick(READ_TIMEOUT_S - 0.1)[0])
    assert not [m for m in early if isinstance(m, (ClearSwitch, FlowMod, GroupMod))
                and m.dpid == silent]
    out = net.deliver(driver.tick(READ_TIMEOUT_S + 0.1)[0])
    assert out[0] == ClearSwitch(silent)
    assert {m.dpid for m in out if isinstance(m, (FlowMod, GroupMod))} >= {silent}
    net.confirm(driver, READ_TIMEOUT_S + 0.2)
    assert driver.status()["reconcile"]["wiped"] == 1
    holds_what_core_wants(net, core)
    all_pairs_delivered(g, net)


def test_group_ids_follow_their_key_not_the_order_of_first_use():
    keys = [("select", d) for d in range(1, 50)] + [("ff", (1, p)) for p in range(2, 30)]
    a, b = GroupIds(), GroupIds()
    ids_a = {k: a(k) for k in keys}
    ids_b = {k: b(k) for k in reversed(keys)}
    assert ids_a == ids_b and len(set(ids_a.values())) == len(keys)
    assert all(1 <= gid < 0xFFFFFF00 for gid in ids_a.values())


def test_colliding_group_ids_are_told_apart(monkeypatch):
    real = render.group_id_of
    monkeypatch.setattr(render, "group_id_of", lambda key, salt=0: 7 if not salt
                        else real(key, salt))
    ids = GroupIds()
    first, second = ids(("select", 1)), ids(("select", 2))
    assert first == 7 and second != 7 and ids.collisions == 1
    assert ids(("select", 2)) == second


def test_model_hosts_are_known_when_their_port_comes_up_and_complete_discovery():
    g = build("fattree", k=4)
    core = RoutingCore(expected=expected_fabric(g))
    assert RoutingCore().discovery_complete() is None   # no model: the driver waits instead
    core.load_fabric(g)
    assert core.discovery_complete() and len(core.hosts) == 16
    sw, port = host_switch(g, "h1")
    dpid, mac = g.nodes[sw]["dpid"], g.nodes["h1"]["mac"]
    core.port_status(dpid, port, False, 1.0)
    assert mac not in core.hosts and not core.discovery_complete()
    core.port_status(dpid, port, True, 2.0)
    assert core.hosts[mac] == (mac, g.nodes["h1"]["ip"], dpid, port)
    assert core.discovery_complete()


def test_a_switch_read_back_while_a_rebuild_is_pending_gets_no_mod_either():
    g, net, _ = installed()
    core, driver = controller(g, net, 100.0, order=-1)
    # A policy change rebuilds every route before the switches' state is in: the whole-table
    # diff after a rebuild must start from what they hold too.
    core.set_policy("ecmp", 100.0)
    assert core.render._before is not None
    out = net.answer_reads(driver, 100.0) + net.deliver(driver.tick(100.0)[0])
    assert not [m for m in out if isinstance(m, (FlowMod, GroupMod, ClearSwitch))]
    net.confirm(driver, 100.0)
    assert driver.status()["reconcile"]["unchanged"] == 20
    holds_what_core_wants(net, core)


def _meter_mods(net, driver, now):
    net.deliver(driver.tick(now)[0])
    out = net.answer_reads(driver, now)
    out += net.deliver(driver.tick(now)[0])
    net.confirm(driver, now)
    return [m for m in out if isinstance(m, MeterMod)]


def test_meters_are_reconciled_like_rules_missing_added_wrong_set_again_right_untouched():
    g, net, _ = installed()
    sw = net.fab.by_dpid[net.dpid("a1")]
    assert len(sw.meters) >= 3   # ARP, LLDP and one per port, added when it first connected
    gone, wrong = sorted(sw.meters)[:2]
    del sw.meters[gone]
    sw.meters[wrong] = sw.meters[wrong]._replace(rate_pps=1)
    core, driver = controller(g, net, 100.0, order=-1)
    mods = _meter_mods(net, driver, 100.0)
    assert {(m.dpid, m.meter_id, m.command) for m in mods} == {
        (sw.dpid, gone, "add"), (sw.dpid, wrong, "modify")}
    assert driver.status()["reconcile"]["meter_mods"] == 2
    assert sw.meters[wrong].rate_pps != 1 and gone in sw.meters


def test_a_refused_meter_mod_is_sent_once_with_the_other_command():
    g, net, core = installed()
    driver = FabricDriver(core, stats_interval_s=STATS_S, lldp_interval_s=LLDP_S)
    e1 = net.dpid("e1")
    add = MeterMod(e1, 7, 50, 300)
    driver.sent(e1, 500, add)
    (again,) = [m for m in driver.openflow_error(e1, 500, 12, 2, 1.0)
                if isinstance(m, MeterMod)]   # OFPET_METER_MOD_FAILED, METER_EXISTS
    assert again == add._replace(command="modify")
    driver.sent(e1, 501, again)
    assert not [m for m in driver.openflow_error(e1, 501, 12, 7, 1.1)
                if isinstance(m, MeterMod)]   # once only


def test_rules_put_and_dropped_while_a_switch_was_read_are_not_deleted_from_it():
    """A restarted controller flushes before it has found the links: every port without a
    host then wants a relearn rule, which the switches being read are not sent (their
    changes are held back). The links found next drop those rules again at once, before the
    next flush; the switches, answering then, never held them, so nothing may be deleted."""
    g, net, _ = installed()
    core = RoutingCore(policy="ecmp", expected=expected_fabric(g))
    driver = FabricDriver(core, stats_interval_s=STATS_S, lldp_interval_s=LLDP_S)
    for sw in switches(g):
        ports = [d["ports"][sw] for _, _, d in g.edges(sw, data=True)]
        net.deliver(driver.switch_enter(net.dpid(sw), ports, 100.0))
    mods = core.render.flow_mods
    out = net.deliver(driver.tick(100.0)[0])
    assert driver.status()["reconcile"]["reading"] == 20
    assert core.render.flow_mods > mods, "no relearn rule was wanted before the links"
    for u, v, d in g.edges(data=True):
        if u in switches(g) and v in switches(g):
            for a, b in ((u, v), (v, u)):
                out += net.deliver(driver.link_seen(net.dpid(a), d["ports"][a], net.dpid(b),
                                                    d["ports"][b], 100.1))
    out += net.answer_reads(driver, 100.2)
    out += net.deliver(driver.tick(100.3)[0])
    net.confirm(driver, 100.3)
    assert not [m for m in out if isinstance(m, (FlowMod, GroupMod, ClearSwitch))]
    rec = driver.status()["reconcile"]
    assert rec["switches"] == rec["unchanged"] == 20 and not driver.status()["pending"]
    holds_what_core_wants(net, core)
    all_pairs_delivered(g, net)
