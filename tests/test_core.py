"""Tests of the routing core's destination routes, discovery, ARP and diffs, on a fake datapath.

Behaviour is asserted by walking packets through fake switches that applied the core's
messages (tests/fakedp.py), never by comparing messages byte for byte. Pure: no Ryu, no
Mininet, time passed in.
"""

import itertools
import json

import networkx as nx
import pytest

from controllers.core import POLICIES, PolicyError, RoutingCore, base_rules, next_hops
from controllers.rules import (
    PORT_TABLE, ArpPacket, ClearSwitch, FlowMod, GroupMod, Output, PacketOut)
from fabric.model import host_switch, hosts, switches
from fakedp import FakeFabric
from topologies import build

K = 4


def fabric(name="fattree", policy="ecmp", **params):
    """A topology, a core that discovered it, and a fake fabric holding its rules."""
    g = build(name, **params) if params else build(name, k=K)
    core = RoutingCore(policy=policy)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    return g, core, fab


def leaf_spine():
    return fabric("leafspine", leaves=3, spines=2, hosts_per_leaf=2)


def switch_graph(g):
    return g.subgraph(switches(g))


def expected_paths(g, a, b):
    sa, sb = host_switch(g, a)[0], host_switch(g, b)[0]
    return sorted(tuple(p) for p in nx.all_shortest_paths(switch_graph(g), sa, sb))


def outputs(rule_or_group):
    """Ports a rule or group names in an Output action (nested buckets included)."""
    actions = rule_or_group.actions if hasattr(rule_or_group, "actions") else [
        a for b in rule_or_group.buckets for a in b.actions]
    return {a.port for a in actions if isinstance(a, Output)}


def same_tables(core, fab):
    for dpid, sw in fab.by_dpid.items():
        assert sw.flows == core.installed[dpid]["flows"]
        assert sw.groups == core.installed[dpid]["groups"]


@pytest.mark.parametrize("make", [fabric, leaf_spine], ids=["fattree", "leafspine"])
def test_every_pair_takes_every_equal_cost_path_under_ecmp(make):
    g, core, fab = make()
    for a, b in itertools.permutations(hosts(g), 2):
        assert sorted(set(fab.paths(a, b))) == expected_paths(g, a, b)
        names = {g.nodes[n]["dpid"]: n for n in switches(g)}
        assert [tuple(names[d] for d in p) for p in core.paths(
            g.nodes[a]["mac"], g.nodes[b]["mac"])] == expected_paths(g, a, b)
    same_tables(core, fab)


def test_inter_pod_pairs_have_k2_squared_paths_under_ecmp_and_one_under_shortest():
    for policy, count in (("ecmp", (K // 2) ** 2), ("shortest", 1)):
        g, core, fab = fabric(policy=policy)
        for a, b in itertools.permutations(hosts(g), 2):
            paths = fab.paths(a, b)
            assert len(paths) == len(set(paths))
            if g.nodes[a]["pod"] != g.nodes[b]["pod"]:
                assert len(paths) == count
            if policy == "shortest":
                assert len(paths) == 1
                assert paths[0] in expected_paths(g, a, b)


def test_shortest_is_deterministic():
    first = [fabric(policy="shortest")[2] for _ in range(2)]
    g = first[0].g
    for a, b in itertools.permutations(hosts(g)[:6], 2):
        assert first[0].paths(a, b) == first[1].paths(a, b)


def test_select_groups_cover_all_equal_cost_next_hops():
    g, core, fab = fabric()
    name = {g.nodes[n]["dpid"]: n for n in switches(g)}
    sg = nx.relabel_nodes(switch_graph(g), {n: g.nodes[n]["dpid"] for n in switches(g)})
    for dst in {g.nodes[host_switch(g, h)[0]]["dpid"] for h in hosts(g)}:
        for sw, hops in next_hops(sg, dst).items():
            group = fab.by_dpid[sw].groups[core.select_gid(dst)]
            assert group.type == "select"
            ports = {port for _, port in fab.by_dpid[sw].bucket_ports(group.group_id)}
            assert ports == {g.edges[name[sw], name[n]]["ports"][name[sw]] for n in hops}


def test_group_ids_are_unique_per_switch_across_kinds():
    g, core, fab = fabric()
    kinds = {}
    for sw in fab.by_dpid.values():
        for gid, group in sw.groups.items():
            assert group.group_id == gid
            kinds.setdefault(gid, set()).add((group.type, group.buckets))
    for gid, contents in kinds.items():
        # one id means one group (shared by the switches that hold it), never two kinds
        assert len({kind for kind, _ in contents}) == 1


def test_flush_twice_sends_nothing_the_second_time():
    g, core, fab = fabric()
    assert core.flush(1.0) == []
    assert not core.status()["pending"]


def test_switch_enter_clears_the_switch_and_installs_base_rules():
    core = RoutingCore()
    msgs = core.switch_enter(7, [1, 2], 0.0)
    assert isinstance(msgs[0], ClearSwitch)
    rules = [m.rule for m in msgs if isinstance(m, FlowMod)]
    assert rules == base_rules()
    probes = [m for m in msgs if isinstance(m, PacketOut)]
    assert sorted(m.ports for m in probes) == [(1,), (2,)]


def test_unknown_policy_and_option_are_rejected_naming_them():
    with pytest.raises(PolicyError, match="bogus"):
        RoutingCore(policy="bogus")
    with pytest.raises(PolicyError, match="hot_utl"):
        RoutingCore(hot_utl=0.5)
    with pytest.raises(PolicyError, match="hot_util"):
        RoutingCore(hot_util=2.0)
    assert set(POLICIES) == {"ecmp", "shortest", "congestion", "hedera", "collective"}


def arp_request(g, asker, target_ip):
    node = g.nodes[asker]
    return ArpPacket(1, node["mac"], node["ip"], "00:00:00:00:00:00", target_ip,
                     eth_src=node["mac"], eth_dst="ff:ff:ff:ff:ff:ff")


def test_arp_for_a_known_host_is_answered_by_the_core():
    g, core, fab = fabric()
    sw, port = host_switch(g, "h1")
    (reply,) = core.packet_in_arp(g.nodes[sw]["dpid"], port,
                                  arp_request(g, "h1", g.nodes["h9"]["ip"]), b"req", 1.0)
    assert reply.dpid == g.nodes[sw]["dpid"] and reply.ports == (port,)
    assert reply.packet.op == 2
    assert (reply.packet.src_mac, reply.packet.src_ip) == (g.nodes["h9"]["mac"],
                                                           g.nodes["h9"]["ip"])
    assert reply.packet.dst_mac == g.nodes["h1"]["mac"]


def test_arp_for_an_unknown_target_goes_only_to_host_ports():
    g, core, fab = fabric()
    link_ends = {(g.nodes[a]["dpid"], d["ports"][a]) for u, v, d in g.edges(data=True)
                 for a in (u, v) if g.nodes[u]["role"] != "host" and g.nodes[v]["role"] != "host"}
    sw, port = host_switch(g, "h1")
    dpid = g.nodes[sw]["dpid"]
    msgs = core.packet_in_arp(dpid, port, arp_request(g, "h1", "10.99.0.1"), b"req", 1.0)
    sent = {(m.dpid, p) for m in msgs for p in m.ports}
    assert sent and all(m.packet == b"req" for m in msgs)
    assert not sent & link_ends
    assert (dpid, port) not in sent
    host_ends = {(g.nodes[host_switch(g, h)[0]]["dpid"], host_switch(g, h)[1]) for h in hosts(g)}
    assert sent == host_ends - {(dpid, port)}
    # The same request echoing back in on another host port (a link not yet discovered) is
    # not forwarded again.
    assert core.packet_in_arp(dpid, port + 1, arp_request(g, "h1", "10.99.0.1"), b"req",
                              1.5) == []


def test_arp_on_an_inter_switch_port_is_ignored():
    g, core, fab = fabric()
    e1, a1 = g.nodes["e1"]["dpid"], g.edges["e1", "a1"]["ports"]["e1"]
    assert core.packet_in_arp(e1, a1, arp_request(g, "h1", g.nodes["h9"]["ip"]), b"", 1) == []


@pytest.mark.parametrize("make", [fabric, leaf_spine], ids=["fattree", "leafspine"])
def test_after_a_link_goes_down_nothing_outputs_to_it_and_all_pairs_deliver(make):
    g, core, fab = make()
    u, v = ("a1", "c1") if "a1" in g else ("l1", "s1")
    for step, (a, b) in enumerate(((u, v), ("e1", "a1") if "e1" in g else ("l2", "s2"))):
        fab.set_link(a, b, False)
        for n in (a, b):
            core.port_status(g.nodes[n]["dpid"], g.edges[a, b]["ports"][n], False, 2.0 + step)
        msgs = core.flush(2.0 + step)
        assert msgs and all(isinstance(m, (FlowMod, GroupMod)) for m in msgs)
        fab.apply(msgs)
        same_tables(core, fab)
        for n in (a, b):
            sw, port = fab.switch(n), g.edges[a, b]["ports"][n]
            for rule in sw.flows.values():
                assert port not in outputs(rule)
            for group in sw.groups.values():
                assert port not in outputs(group)
                assert port not in {bk.watch_port for bk in group.buckets}
        down = switch_graph(g).copy()
        down.remove_edges_from([(u, v)] + ([(a, b)] if step else []))
        for x, y in itertools.permutations(hosts(g), 2):
            sx, sy = host_switch(g, x)[0], host_switch(g, y)[0]
            assert sorted(set(fab.paths(x, y))) == sorted(
                tuple(p) for p in nx.all_shortest_paths(down, sx, sy))


def test_port_up_again_restores_the_paths_after_discovery():
    g, core, fab = fabric()
    e1, a1 = g.nodes["e1"]["dpid"], g.nodes["a1"]["dpid"]
    pe, pa = g.edges["e1", "a1"]["ports"]["e1"], g.edges["e1", "a1"]["ports"]["a1"]
    core.port_status(e1, pe, False, 1.0)
    fab.apply(core.flush(1.0))
    assert len(fab.paths("h1", "h16")) == 2
    probes = core.port_status(e1, pe, True, 2.0)
    assert [m.ports for m in probes] == [(pe,)]
    core.link_seen(e1, pe, a1, pa, 2.1)
    fab.apply(core.flush(2.1))
    assert len(fab.paths("h1", "h16")) == 4


def test_links_expire_without_probes():
    g, core, fab = fabric()
    assert core.status()["links"] == 32
    core.expire_links(100.0)
    assert core.status()["links"] == 0
    fab.apply(core.flush(100.0))
    assert fab.paths("h1", "h2")  # one edge switch still delivers locally
    with pytest.raises(AssertionError, match="dropped"):
        fab.paths("h1", "h16")


def test_packet_in_of_a_flow_under_ecmp_only_resends_the_packet():
    g, core, fab = fabric()
    sw, port = host_switch(g, "h1")
    key = (g.nodes["h1"]["ip"], g.nodes["h16"]["ip"], 6, 40000, 5001)
    msgs = core.packet_in_flow(g.nodes[sw]["dpid"], port, key, g.nodes["h1"]["mac"],
                               g.nodes["h16"]["mac"], b"syn", 1.0)
    assert msgs == [PacketOut(g.nodes[sw]["dpid"], (PORT_TABLE,), b"syn")]
    assert core.flows == {}


def test_status_and_link_loads_are_json():
    g, core, fab = fabric()
    e1 = g.nodes["e1"]["dpid"]
    up = g.edges["e1", "a1"]["ports"]["e1"]
    core.port_stats(e1, {up: 0}, 0.0)
    core.port_stats(e1, {up: 25 * 10 ** 9}, 1.0)  # 200 Gbit/s on a 400 Gbit/s link
    status = json.loads(json.dumps(core.status()))
    assert status["policy"] == "ecmp" and status["switches"] == 20 and status["hosts"] == 16
    assert status["rules"] > 0 and status["groups"] > 0
    assert status["counters"]["flow_mods"] > 0 and status["counters"]["group_mods"] > 0
    assert status["utilization"]["max"] == pytest.approx(0.5)
    loads = json.loads(json.dumps(core.link_loads()))
    assert len(loads) == 64
    (hot,) = [x for x in loads if x["utilization"] > 0]
    assert (hot["src"], hot["src_port"], hot["dst"]) == (e1, up, g.nodes["a1"]["dpid"])
    assert hot["rate_bps"] == pytest.approx(200e9)


def test_counter_reset_does_not_give_negative_rates():
    g, core, fab = fabric()
    e1, up = g.nodes["e1"]["dpid"], g.edges["e1", "a1"]["ports"]["e1"]
    core.port_stats(e1, {up: 10 ** 9}, 0.0)
    core.port_stats(e1, {up: 10}, 1.0)
    core.port_stats(e1, {up: 10}, 2.0)
    assert min(x["rate_bps"] for x in core.link_loads()) == 0.0


def test_paths_of_unknown_hosts_are_empty():
    g, core, fab = fabric()
    assert core.paths("02:00:00:00:99:99", g.nodes["h1"]["mac"]) == []
