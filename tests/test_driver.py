"""Tests of the driver between the routing core and the switches: barriers, held ARP answers,
statistics rounds, LLDP rounds and link expiry, with time mocked.

The driver's messages go to fake switches (tests/fakedp.py) that apply rule and group changes
at once and leave barriers and statistics requests for the test to answer, in any order and
at any time, as a slow or silent switch would. Pure: no Ryu, no Mininet.
"""

import pytest

from controllers.core import RoutingCore
from controllers.driver import HOLD_MAX_S, FabricDriver
from controllers.rules import (COOKIE_FLOW, ArpPacket, Barrier, FlowDumpRequest, FlowMod,
                               FlowStatsRequest, GroupDumpRequest, LldpProbe, MeterDumpRequest,
                               PacketOut, PortStatsRequest)
from fabric.model import host_switch, hosts, switches
from fakedp import FakeFabric
from topologies import build

ARP_REQUEST, ARP_REPLY = 1, 2
STATS_S, LLDP_S = 1.0, 2.0


class Switches:
    """The fake fabric behind a driver, answering only when the test says so."""

    def __init__(self, g):
        self.g = g
        self.fab = FakeFabric(g)
        self.barriers = []   # unanswered, in the order sent
        self.requests = []   # statistics requests unanswered
        self.packets = []    # every PacketOut sent
        self.reads = []      # requests to read a switch's flows and groups, unanswered

    def deliver(self, msgs):
        for m in msgs:
            if isinstance(m, Barrier):
                self.barriers.append(m)
            elif isinstance(m, (FlowDumpRequest, GroupDumpRequest, MeterDumpRequest)):
                self.reads.append(m)
            elif isinstance(m, (PortStatsRequest, FlowStatsRequest)):
                self.requests.append(m)
            elif isinstance(m, PacketOut):
                self.packets.append(m)
            else:
                self.fab.apply([m])
        return msgs

    def confirm(self, driver, now, silent=()):
        """Answer every barrier except those of the switches in ``silent``; returns what the
        driver sent in reply (delivered too)."""
        out = []
        for b in [b for b in self.barriers if b.dpid not in silent]:
            self.barriers.remove(b)
            out += self.deliver(driver.barrier_reply(b.dpid, b.xid, now))
        return out

    def answer_reads(self, driver, now):
        """Answer every read of a switch's state with what the fake switch holds; returns
        what the driver sent in reply (delivered too)."""
        out = []
        reads, self.reads = self.reads, []
        for r in reads:
            sw = self.fab.by_dpid[r.dpid]
            if isinstance(r, FlowDumpRequest):
                out += self.deliver(driver.state_reply(r.dpid, r.xid, now,
                                                       flows=list(sw.flows.values())))
            elif isinstance(r, GroupDumpRequest):
                out += self.deliver(driver.state_reply(r.dpid, r.xid, now,
                                                       groups=list(sw.groups.values())))
            else:
                out += self.deliver(driver.state_reply(r.dpid, r.xid, now,
                                                       meters=list(sw.meters.values())))
        return out

    def dpid(self, node):
        return self.g.nodes[node]["dpid"]


def arp_answers(msgs):
    return [m for m in msgs if isinstance(m, PacketOut) and isinstance(m.packet, ArpPacket)
            and m.packet.op == ARP_REPLY]


def discovered(policy="ecmp", stats_interval_s=STATS_S, **core_options):
    """A leaf-spine fabric whose switches and links the driver saw at time 0 (no host yet),
    everything read back, reconciled and confirmed (discovery settles at once: the whole
    fabric is seen at time 0)."""
    g = build("leafspine", leaves=3, spines=2, hosts_per_leaf=2)
    core = RoutingCore(policy=policy, **core_options)
    driver = FabricDriver(core, stats_interval_s=stats_interval_s, lldp_interval_s=LLDP_S,
                          settle_s=0.0)
    net = Switches(g)
    for sw in switches(g):
        ports = [d["ports"][sw] for _, _, d in g.edges(sw, data=True)]
        net.deliver(driver.switch_enter(net.dpid(sw), ports, 0.0))
    for u, v, d in g.edges(data=True):
        if u in switches(g) and v in switches(g):
            for a, b in ((u, v), (v, u)):
                net.deliver(driver.link_seen(net.dpid(a), d["ports"][a], net.dpid(b),
                                             d["ports"][b], 0.0))
    net.deliver(driver.tick(0.0)[0])
    net.answer_reads(driver, 0.0)
    net.deliver(driver.tick(0.0)[0])
    net.confirm(driver, 0.0)
    return g, core, driver, net


def arp(g, src, dst, op=ARP_REQUEST):
    """(dpid, in_port, ArpPacket) of an ARP request from host src for host dst (itself:
    gratuitous)."""
    sw, port = host_switch(g, src)
    s, d = g.nodes[src], g.nodes[dst]
    pkt = ArpPacket(op, s["mac"], s["ip"], "00:00:00:00:00:00", d["ip"], eth_src=s["mac"],
                    eth_dst="ff:ff:ff:ff:ff:ff")
    return g.nodes[sw]["dpid"], port, pkt


def learn_hosts(g, driver, net, names, now):
    """Hosts announce themselves (gratuitous ARP); their routes go out and are confirmed."""
    for h in names:
        net.deliver(driver.packet_in_arp(*arp(g, h, h), b"garp", now))
    net.deliver(driver.tick(now)[0])
    net.confirm(driver, now)


def test_every_changed_switch_gets_a_barrier_and_stays_unconfirmed_until_it_answers():
    g, core, driver, net = discovered()
    assert driver.status()["unconfirmed_switches"] == 0 and not driver.status()["pending"]
    net.deliver(driver.packet_in_arp(*arp(g, "h1", "h1"), b"garp", 1.0))
    msgs = net.deliver(driver.tick(1.0)[0])
    changed = {m.dpid for m in msgs if isinstance(m, FlowMod)}
    assert changed and {b.dpid for b in net.barriers} == changed
    # each switch's barrier comes after every change it confirms
    for dpid in changed:
        last_change = max(i for i, m in enumerate(msgs) if isinstance(m, FlowMod)
                          and m.dpid == dpid)
        assert msgs.index(next(b for b in net.barriers if b.dpid == dpid)) > last_change
    assert driver.status()["unconfirmed_switches"] == len(changed)
    assert driver.status()["pending"]
    net.confirm(driver, 1.25)
    status = driver.status()
    assert status["unconfirmed_switches"] == 0 and not status["pending"]
    assert status["install"]["largest_batch"]["seconds"] == pytest.approx(0.25)
    assert status["install"]["mods"] >= status["install"]["largest_batch"]["mods"] > 0


def test_arp_answer_for_a_new_host_waits_for_every_switch_to_confirm_its_routes():
    g, core, driver, net = discovered()
    learn_hosts(g, driver, net, ["h5"], 1.0)
    # h1 is new: the core answers for h5 at once, the driver holds that answer
    assert driver.packet_in_arp(*arp(g, "h1", "h5"), b"who-has", 2.0) == []
    msgs = net.deliver(driver.tick(2.0)[0])
    assert arp_answers(msgs) == []
    silent = net.barriers[-1].dpid
    assert net.confirm(driver, 2.1, silent={silent}) == []
    assert arp_answers(net.packets) == []
    (answer,) = arp_answers(net.confirm(driver, 2.2))
    assert answer.packet.src_mac == g.nodes["h5"]["mac"]
    assert answer.packet.dst_mac == g.nodes["h1"]["mac"]
    assert answer.ports == (host_switch(g, "h1")[1],)
    # the routes the answer announces are on every switch by now: h1's first packet arrives
    assert net.fab.paths("h1", "h5") and net.fab.paths("h5", "h1")


def test_arp_answer_is_released_after_hold_max_when_a_switch_never_answers():
    g, core, driver, net = discovered(stats_interval_s=10.0)   # no round before 10 s
    learn_hosts(g, driver, net, ["h5"], 1.0)
    driver.packet_in_arp(*arp(g, "h1", "h5"), b"who-has", 2.0)
    msgs, deadline = driver.tick(2.0)
    net.deliver(msgs)
    assert deadline == pytest.approx(2.0 + HOLD_MAX_S)
    silent = net.barriers[0].dpid
    net.confirm(driver, 2.1, silent={silent})
    msgs, deadline = driver.tick(2.0 + HOLD_MAX_S / 2)
    assert arp_answers(msgs) == []
    assert deadline == pytest.approx(2.0 + HOLD_MAX_S)
    msgs, _ = driver.tick(2.0 + HOLD_MAX_S)
    assert len(arp_answers(msgs)) == 1
    assert driver.status()["unconfirmed_switches"] == 1


def test_arp_answer_for_a_known_host_is_not_held():
    g, core, driver, net = discovered()
    learn_hosts(g, driver, net, ["h1", "h5"], 1.0)
    (answer,) = arp_answers(driver.packet_in_arp(*arp(g, "h1", "h5"), b"who-has", 2.0))
    assert answer.packet.src_ip == g.nodes["h5"]["ip"]


def test_held_answers_go_when_the_silent_switch_leaves():
    g, core, driver, net = discovered()
    learn_hosts(g, driver, net, ["h5"], 1.0)
    driver.packet_in_arp(*arp(g, "h1", "h5"), b"who-has", 2.0)
    net.deliver(driver.tick(2.0)[0])
    silent = net.dpid("s2")
    assert silent in {b.dpid for b in net.barriers}
    net.confirm(driver, 2.1, silent={silent})
    assert len(arp_answers(driver.switch_gone(silent, 2.2))) == 1
    assert driver.status()["unconfirmed_switches"] == 0


def port_rows(g, node, tx_bytes):
    return [(d["ports"][node], tx_bytes) for _, _, d in g.edges(node, data=True)]


def answer_round(g, driver, net, now, tx_bytes=0, skip=()):
    """Reply to every statistics request but those of switches in ``skip``; returns the
    messages the driver sent on the last reply."""
    names = {net.dpid(s): s for s in switches(g)}
    out = []
    for req in [r for r in net.requests if r.dpid not in skip]:
        net.requests.remove(req)
        rows = port_rows(g, names[req.dpid], tx_bytes) if isinstance(
            req, PortStatsRequest) else []
        out = net.deliver(driver.stats_reply(req.dpid, req.xid, rows, now))
    return out


@pytest.mark.parametrize("policy,flow_stats", [("ecmp", False), ("congestion", True)])
def test_a_round_asks_every_switch_for_port_stats_and_flow_stats_only_when_learning(
        policy, flow_stats):
    g, core, driver, net = discovered(policy)
    net.deliver(driver.tick(0.5)[0])
    assert net.requests == []
    net.deliver(driver.tick(STATS_S)[0])
    every = {net.dpid(s) for s in switches(g)}
    assert {r.dpid for r in net.requests if isinstance(r, PortStatsRequest)} == every
    flows = [r for r in net.requests if isinstance(r, FlowStatsRequest)]
    assert {r.dpid for r in flows} == (every if flow_stats else set())
    assert all(r.cookie == COOKIE_FLOW for r in flows)
    assert len({(r.dpid, r.xid) for r in net.requests}) == len(net.requests)


def test_the_last_reply_feeds_port_stats_and_ends_the_round():
    g, core, driver, net = discovered()
    l1, up = net.dpid("l1"), g.edges["l1", "s1"]["ports"]["l1"]
    net.deliver(driver.tick(1.0)[0])
    answer_round(g, driver, net, 1.1, tx_bytes=0)
    assert driver.status()["stats_rounds"] == 1
    net.deliver(driver.tick(2.0)[0])
    answer_round(g, driver, net, 2.1, tx_bytes=10 ** 9, skip={l1})
    assert driver.status()["stats_rounds"] == 1   # l1 has not answered
    answer_round(g, driver, net, 2.1, tx_bytes=10 ** 9)
    assert driver.status()["stats_rounds"] == 2
    (link,) = [x for x in core.link_loads() if (x["src"], x["src_port"]) == (l1, up)]
    assert link["rate_bps"] == pytest.approx(8e9)


def test_a_multipart_reply_counts_once_all_its_parts_arrived():
    g, core, driver, net = discovered()
    l1 = net.dpid("l1")
    net.deliver(driver.tick(1.0)[0])
    answer_round(g, driver, net, 1.1, skip={l1})
    (req,) = net.requests
    first, *rest = port_rows(g, "l1", 0)
    assert driver.stats_reply(l1, req.xid, [first], 1.1, more=True) == []
    assert driver.status()["stats_rounds"] == 0
    driver.stats_reply(l1, req.xid, rest, 1.1)
    assert driver.status()["stats_rounds"] == 1


def test_the_end_of_a_round_adapts_and_flushes():
    # adapt forgets flows idle for flow_idle_s; the flush that follows removes their rules
    g, core, driver, net = discovered("congestion", flow_idle_s=1.5)
    learn_hosts(g, driver, net, hosts(g), 0.5)
    sw, port = host_switch(g, "h1")
    key = (g.nodes["h1"]["ip"], g.nodes["h5"]["ip"], 6, 40000, 5001)
    net.deliver(driver.packet_in_flow(net.dpid(sw), port, key, g.nodes["h1"]["mac"],
                                      g.nodes["h5"]["mac"], b"syn", 0.6))
    net.confirm(driver, 0.6)
    flow_rules = [r for r in net.fab.switch(sw).flows.values() if r.cookie == COOKIE_FLOW]
    assert flow_rules and core.status()["counters"]["flows"] == 1
    net.deliver(driver.tick(1.0)[0])
    answer_round(g, driver, net, 1.1)   # 0.5 s idle: kept
    assert core.status()["counters"]["flows"] == 1
    net.deliver(driver.tick(2.0)[0])
    msgs = answer_round(g, driver, net, 2.2)   # 1.6 s idle: forgotten, its rule goes
    assert core.status()["counters"]["flows_expired"] == 1
    assert [r for r in net.fab.switch(sw).flows.values() if r.cookie == COOKIE_FLOW] == []
    assert Barrier in {type(m) for m in msgs}
    assert driver.status()["unconfirmed_switches"] > 0


def test_a_round_still_open_when_the_next_is_due_is_waited_for_then_closed_as_late():
    g, core, driver, net = discovered()
    l1 = net.dpid("l1")
    net.deliver(driver.tick(1.0)[0])
    answer_round(g, driver, net, 1.1, skip={l1})
    (stale,) = net.requests
    net.requests.clear()
    net.deliver(driver.tick(2.0)[0])              # a slow switch: no second round piles up
    assert not net.requests and driver.counters["stats_rounds_waited"] == 1
    for t in (3.0, 4.0):
        net.deliver(driver.tick(t)[0])
    assert not net.requests and not driver.counters["stats_rounds_late"]
    net.deliver(driver.tick(5.0)[0])              # 4 intervals unanswered: closed as late
    assert driver.counters["stats_rounds_late"] == 1
    assert driver.status()["stats_rounds"] == 1
    assert len(net.requests) == len(switches(g))   # the next round started
    # the late reply belongs to no round: it neither counts nor ends the new one
    assert driver.stats_reply(l1, stale.xid, port_rows(g, "l1", 0), 5.1) == []
    assert driver.status()["stats_rounds"] == 1
    answer_round(g, driver, net, 5.2)
    assert driver.status()["stats_rounds"] == 2 and driver.counters["stats_rounds_late"] == 1


def test_lldp_probes_go_out_every_lldp_interval_from_every_live_port():
    g, core, driver, net = discovered()
    every_port = {(net.dpid(sw), d["ports"][sw]) for sw in switches(g)
                  for _, _, d in g.edges(sw, data=True)}

    def probes(msgs):
        return {(m.dpid, m.ports[0]) for m in msgs if isinstance(m, PacketOut)
                and isinstance(m.packet, LldpProbe)}

    assert probes(net.packets) == every_port   # the first tick probes at once
    for now in (0.5, 1.0, 1.5):
        assert probes(driver.tick(now)[0]) == set()
    assert probes(driver.tick(LLDP_S)[0]) == every_port
    assert probes(driver.tick(LLDP_S + 0.5)[0]) == set()


def test_links_not_seen_expire_at_the_lldp_round_after_their_timeout():
    g, core, driver, net = discovered(link_timeout_s=3.0)
    learn_hosts(g, driver, net, hosts(g), 0.5)
    links = core.status()["links"]
    assert links == 6
    driver.tick(LLDP_S)                         # 2 s since seen
    driver.tick(3.5)                            # past the timeout, but no LLDP round
    assert core.status()["links"] == links
    l1, s1 = net.dpid("l1"), net.dpid("s1")
    p_l1, p_s1 = g.edges["l1", "s1"]["ports"]["l1"], g.edges["l1", "s1"]["ports"]["s1"]
    driver.link_seen(l1, p_l1, s1, p_s1, 3.5)   # the probe of this link came back
    driver.link_seen(s1, p_s1, l1, p_l1, 3.5)
    driver.tick(2 * LLDP_S)
    # Links that l1 and s1 (which report probes again) no longer see are gone; those only
    # switches that report nothing at all could confirm wait (the controller may be behind).
    assert 1 < core.status()["links"] < links
    assert s1 in core.topo.adj[l1]
    msgs, _ = driver.tick(7 * LLDP_S)           # silent for over 4 timeouts: gone too
    assert core.status()["links"] == 1
    # routes around the links gone go out in the same tick, confirmed by barriers
    net.deliver(msgs)
    assert net.barriers
    assert net.fab.paths("h1", "h2") == [("l1",)]
    with pytest.raises(AssertionError, match="dropped"):
        net.fab.paths("h1", "h5")


def test_tick_says_when_the_next_duty_is_due():
    g, core, driver, net = discovered()
    # after the tick at 0: a statistics round at 1, an LLDP round at 2
    assert driver.tick(0.2)[1] == pytest.approx(STATS_S)
    assert driver.tick(STATS_S)[1] == pytest.approx(LLDP_S)
    assert driver.tick(LLDP_S)[1] == pytest.approx(LLDP_S + STATS_S)
    slow = FabricDriver(RoutingCore(), stats_interval_s=5.0, lldp_interval_s=LLDP_S)
    assert slow.tick(10.0)[1] == pytest.approx(10.0 + LLDP_S)


def test_a_port_down_reroutes_at_once_not_at_the_next_tick():
    g, core, driver, net = discovered()
    learn_hosts(g, driver, net, hosts(g), 0.5)
    assert {p[1] for p in net.fab.paths("h1", "h5")} == {"s1", "s2"}
    port = g.edges["l1", "s1"]["ports"]["l1"]
    net.fab.set_link("l1", "s1", up=False)
    net.deliver(driver.port_status(net.dpid("l1"), port, False, 0.6))
    assert {p[1] for p in net.fab.paths("h1", "h5")} == {"s2"}
    assert net.barriers and driver.status()["pending"]
