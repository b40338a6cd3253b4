"""Tests of authenticated discovery: LLDP probes with an HMAC, host ports, host moves.

A leaf-spine fabric is discovered the way the controller does it, from the core's own
probes delivered to the port at the other end of each link (``RoutingCore.probe_in``), and
hosts from their ARP. Then the attacks: forged probes (another Ethernet source, a wrong or
missing HMAC, another controller's key, a probe altered in transit), replayed ones (stale
against the newest probe of the receiving switch, older than links live, from the future,
a valid probe sent back in from a host port) and a host claiming another's MAC at a new
port while the old one is up: none changes a link or a route, each is counted and shown in
status. A host that really moves (its old port down first) is followed. The frames
themselves go through the app's LLDP builder and parser. Pure but for that last test.
"""

import dataclasses

import pytest

from controllers.core import PolicyError, RoutingCore
from controllers.rules import LLDP_SRC_MAC, ArpPacket, FlowMod, GroupMod, LldpProbe, PacketOut
from fabric.model import host_switch, hosts, switches
from fakedp import FakeFabric
from topologies import build

ARP_REQUEST = 1
SECRET = b"test secret"


def probes(msgs):
    return [m.packet for m in msgs if isinstance(m, PacketOut) and
            isinstance(m.packet, LldpProbe)]


def discovered(secret=SECRET):
    """A leaf-spine fabric discovered from probes and ARP at times 0 and 1."""
    g = build("leafspine", leaves=3, spines=2, hosts_per_leaf=2)
    core = RoutingCore(lldp_secret=secret)
    fab = FakeFabric(g)
    sent = []
    for sw in switches(g):
        ports = [d["ports"][sw] for _, _, d in g.edges(sw, data=True)]
        msgs = core.switch_enter(g.nodes[sw]["dpid"], ports, 0.0)
        fab.apply(msgs)
        sent += probes(msgs)
    deliver(core, fab, sent, 0.5)
    for h in hosts(g):
        sw, port = host_switch(g, h)
        node = g.nodes[h]
        core.packet_in_arp(g.nodes[sw]["dpid"], port, ArpPacket(
            ARP_REQUEST, node["mac"], node["ip"], "00:00:00:00:00:00", node["ip"]), b"", 1.0)
    fab.apply(core.flush(1.0))
    return g, core, fab


def deliver(core, fab, sent, now, eth_src=LLDP_SRC_MAC):
    """Each probe to the port at the other end of its link (probes out of host ports are
    lost, as hosts do not answer them)."""
    for p in sent:
        peer = fab.peers.get((p.dpid, p.port))
        if peer is not None:
            fab.apply(core.probe_in(*peer, p, eth_src, now))


def snapshot(core):
    return (dict(core.links), {d: (dict(t["flows"]), dict(t["groups"]))
                               for d, t in core.installed.items()}, dict(core.hosts))


def unchanged(core, fab, before, now):
    """Nothing the attack did reaches a link, a host or a rule."""
    msgs = core.flush(now)
    assert not [m for m in msgs if isinstance(m, (FlowMod, GroupMod))]
    assert snapshot(core) == before


def all_pairs_reach(g, fab):
    hs = hosts(g)
    for a in hs:
        for b in hs:
            if a != b:
                assert fab.paths(a, b)


def test_links_are_learned_from_our_own_probes():
    g, core, fab = discovered()
    assert core.status()["links"] == 6 and core.status()["hosts"] == 6
    all_pairs_reach(g, fab)
    d = core.status()["discovery"]
    assert d["lldp_accepted"] == 12 and d["lldp_forged"] == d["lldp_stale"] == 0


def fresh_probe(core, g, node, peer_node):
    """A valid probe out of ``node``'s port towards ``peer_node``, sent now."""
    port = g.edges[node, peer_node]["ports"][node]
    (probe,) = probes(core.port_status(g.nodes[node]["dpid"], port, True, 2.0))
    return probe, port


def into_host_port(g, host):
    sw, port = host_switch(g, host)
    return g.nodes[sw]["dpid"], port


@pytest.mark.parametrize("attack", ["wrong_mac", "wrong_hmac", "no_hmac", "other_key",
                                    "altered_port", "altered_time", "not_a_probe"])
def test_forged_probes_change_no_link_and_no_route(attack):
    g, core, fab = discovered()
    before = snapshot(core)
    probe, _ = fresh_probe(core, g, "l1", "s1")
    # Presented at a free port of l3 (as if l1 were wired there): a link that does not exist.
    l3 = g.nodes["l3"]["dpid"]
    # The free port's own changes (its meter, and its relearn rule: no host is known there)
    # go first.
    fab.apply(core.port_status(l3, 9, True, 2.0) + core.flush(2.0))
    before = snapshot(core)
    valid, eth_src = probe, LLDP_SRC_MAC
    if attack == "wrong_mac":
        eth_src = "02:00:00:00:00:66"
    elif attack == "wrong_hmac":
        probe = dataclasses.replace(probe, auth="00" * 16)
    elif attack == "no_hmac":
        probe = dataclasses.replace(probe, auth=None)
    elif attack == "other_key":
        other = RoutingCore(lldp_secret=b"another controller")
        other.switch_enter(probe.dpid, [probe.port], 2.0)
        (probe,) = probes(other.lldp_probes(2.0))
    elif attack == "altered_port":
        probe = dataclasses.replace(probe, port=probe.port + 1)
    elif attack == "altered_time":
        probe = dataclasses.replace(probe, sent_at=probe.sent_at + 0.5)
    else:
        probe = None
    assert core.probe_in(l3, 9, probe, eth_src, 2.1) == []
    unchanged(core, fab, before, 2.1)
    all_pairs_reach(g, fab)
    assert core.status()["discovery"]["lldp_forged"] == 1
    # The probe itself, unaltered from our address, would have made that link.
    core.probe_in(l3, 9, valid, LLDP_SRC_MAC, 2.2)
    assert core.links[(valid.dpid, valid.port)][:2] == (l3, 9)


def test_replayed_probes_change_no_link_and_no_route():
    g, core, fab = discovered()
    old, port = fresh_probe(core, g, "l1", "s1")   # sent at 2.0
    s1, l1 = g.nodes["s1"]["dpid"], g.nodes["l1"]["dpid"]
    peer_port = g.edges["l1", "s1"]["ports"]["s1"]
    # Later rounds confirm the links; s1 last reported a probe sent at 30.
    for now in (10.0, 20.0, 30.0):
        deliver(core, fab, probes(core.lldp_probes(now)), now + 0.1)
    # The link l1 -> s1 goes down; the old probe, replayed at s1, must not bring it back.
    core.port_status(s1, peer_port, False, 31.0)
    core.port_status(s1, peer_port, True, 31.0)
    fab.apply(core.flush(31.0))
    before = snapshot(core)
    assert (l1, port) not in core.links
    core.probe_in(s1, peer_port, old, LLDP_SRC_MAC, 31.5)          # 28 s older than newest
    future = dataclasses.replace(old, sent_at=40.0, auth=core._auth(l1, port, 40.0))
    core.probe_in(s1, peer_port, future, LLDP_SRC_MAC, 31.5)       # from the future
    unchanged(core, fab, before, 31.5)
    assert core.status()["discovery"]["lldp_stale"] == 2
    # Older than links live (4 timeouts), even at a switch that reported nothing newer.
    fresh = RoutingCore(lldp_secret=SECRET)
    fresh.switch_enter(l1, [port], 2.0)
    fresh.switch_enter(s1, [peer_port], 2.0)
    fresh.probe_in(s1, peer_port, old, LLDP_SRC_MAC, 2.0 + 4 * 15.0 + 1)
    assert not fresh.links and fresh.status()["discovery"]["lldp_stale"] == 1
    # The same probe in time is a link.
    fresh.probe_in(s1, peer_port, old, LLDP_SRC_MAC, 3.0)
    assert (l1, port) in fresh.links


def test_a_valid_probe_sent_back_in_from_a_host_port_is_flagged_and_links_nothing():
    g, core, fab = discovered()
    probe, _ = fresh_probe(core, g, "l2", "s2")
    before = snapshot(core)
    dpid, port = into_host_port(g, "h1")        # h1's own port: a host relaying our probe
    core.probe_in(dpid, port, probe, LLDP_SRC_MAC, 2.1)
    core.probe_in(dpid, port, probe, LLDP_SRC_MAC, 2.2)
    unchanged(core, fab, before, 2.2)
    all_pairs_reach(g, fab)
    d = core.status()["discovery"]
    assert d["lldp_from_host_port"] == 2
    assert d["flagged_host_ports"] == [{"dpid": dpid, "port": port, "probes": 2}]
    assert core.hosts[g.nodes["h1"]["mac"]].port == port   # still a host port


def arp_from(g, host, dpid, port, now, core):
    node = g.nodes[host]
    return core.packet_in_arp(dpid, port, ArpPacket(ARP_REQUEST, node["mac"], node["ip"],
                                                    "00:00:00:00:00:00", node["ip"]), b"", now)


def test_a_host_claiming_anothers_mac_at_a_new_port_is_refused():
    g, core, fab = discovered()
    before = snapshot(core)
    # An attacker behind h4's port (another leaf) announces h1's MAC and address.
    dpid, port = into_host_port(g, "h4")
    arp_from(g, "h1", dpid, port, 2.0, core)
    unchanged(core, fab, before, 2.0)
    all_pairs_reach(g, fab)
    d = core.status()["discovery"]
    assert d["host_moves_refused"] == 1
    home = into_host_port(g, "h1")
    assert d["refused_moves"] == [{"mac": g.nodes["h1"]["mac"], "ip": g.nodes["h1"]["ip"],
                                   "at": list(home), "claimed": [dpid, port]}]


def test_a_host_that_moves_after_its_old_port_went_down_is_followed():
    g, core, fab = discovered()
    home_dpid, home_port = into_host_port(g, "h1")
    l3 = g.nodes["l3"]["dpid"]
    fab.apply(core.port_status(l3, 9, True, 2.0))
    fab.apply(core.port_status(home_dpid, home_port, False, 3.0))
    fab.apply(core.flush(3.0))
    arp_from(g, "h1", l3, 9, 4.0, core)
    fab.apply(core.flush(4.0))
    host = core.hosts[g.nodes["h1"]["mac"]]
    assert (host.dpid, host.port) == (l3, 9)
    assert core.status()["discovery"]["host_moves_refused"] == 0
    # Traffic to h1 now ends at l3's port 9.
    rule_ports = set()
    for rule in core.installed[l3]["flows"].values():
        if dict(rule.match).get("eth_dst") == g.nodes["h1"]["mac"]:
            rule_ports |= {a.port for a in rule.actions if hasattr(a, "port")}
    assert rule_ports == {9}


def test_the_secret_must_be_bytes():
    with pytest.raises(PolicyError, match="lldp_secret"):
        RoutingCore(lldp_secret="text")
    a, b = RoutingCore(), RoutingCore()
    a.switch_enter(1, [1], 0.0)
    b.switch_enter(1, [1], 0.0)
    assert probes(a.lldp_probes(0.0))[0].auth != probes(b.lldp_probes(0.0))[0].auth


def test_probe_frames_built_by_the_app_parse_back_and_a_foreign_source_is_refused():
    from controllers.launcher import apply_shim
    apply_shim()
    from controllers.app import build_lldp, parse_frame, parse_lldp
    core = RoutingCore(lldp_secret=SECRET)
    core.switch_enter(1, [1], 0.0)
    core.switch_enter(2, [1], 0.0)
    (probe,) = probes(core.lldp_probes(0.5))[:1]
    data = build_lldp(probe)
    eth, frame, arp, flow = parse_frame(data)
    assert parse_lldp(frame) == probe and arp is None and flow is None
    spoofed = data[:6] + bytes.fromhex("020000000066") + data[12:]
    eth2, frame2, _, _ = parse_frame(spoofed)
    core.probe_in(2, 1, parse_lldp(frame2), eth2.src, 0.6)
    assert not core.links and core.status()["discovery"]["lldp_forged"] == 1
    core.probe_in(2, 1, parse_lldp(frame), eth.src, 0.6)
    assert (1, 1) in core.links


def test_packet_ins_are_parsed_without_tcp_options():
    """A TCP option of length zero makes Ryu's whole-stack parser loop forever; the app
    reads only the 5-tuple."""
    from controllers.launcher import apply_shim
    apply_shim()
    import struct
    from controllers.app import parse_frame
    tcp = struct.pack("!HHIIBBHHH", 40000, 5001, 0, 0, 6 << 4, 2, 1000, 0, 0) + \
        bytes([99, 0, 0, 0])
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    frame = bytes.fromhex("020000000002" "020000000001" "0800") + ip + tcp
    assert parse_frame(frame)[3] == ("10.0.0.1", "10.0.0.2", 6, 40000, 5001)
    with pytest.raises(ValueError, match="unparseable"):
        parse_frame(frame[:20])
