"""Hosts relearned from their traffic, on fake switches that keep their tables.

A first controller (with the topology model) installs a k=4 fat-tree's routes; a second one
starts afresh without a model, as after a restart with ``--fabric-topology`` left out, and the
hosts have static ARP: they never ARP again. Once discovery settles, the switches are
reconciled: the routes of hosts nobody has heard from go, and every host port gets a rule
sending its IPv4 packets to the controller through the port's own meter. One packet of a host
is then enough to learn it (with the checks ARP learning has) and bring its routes back, and
the packet itself goes on through the switch's table. Pure: no Ryu, no Mininet.
"""

import itertools

from controllers import topology as topology_module
from controllers.meters import port_meter
from controllers.rules import (PORT_TABLE, PRIO_RELEARN, FlowKey, FlowMod, GroupMod, Meter,
                               PacketOut, ToController)
from controllers.tables import CONTROLLER
from fabric.model import host_switch, hosts
from test_driver import Switches, discovered
from test_reconcile import controller, reconcile
from topologies import build


def restarted_without_model():
    """A k=4 fat-tree installed by a controller with the model, then a controller without
    one, reconciled once discovery settled (no host has sent anything)."""
    g = build("fattree", k=4)
    net = Switches(g)
    _, first = controller(g, net, 0.0)
    reconcile(first, net, 0.0)
    core, driver = controller(g, net, 100.0, order=-1, model=False, settle_s=3.0)
    net.deliver(driver.tick(100.0)[0])
    net.answer_reads(driver, 100.0)
    net.deliver(driver.tick(103.0)[0])
    net.confirm(driver, 103.0)
    assert not driver.status()["pending"] and driver.status()["reconcile"]["switches"] == 20
    return g, net, core, driver


def relearn_rules(net):
    """``{(dpid, in_port): rule}`` of the relearn rules the fake switches hold."""
    return {(dpid, dict(r.match)["in_port"]): r for dpid, sw in net.fab.by_dpid.items()
            for r in sw.flows.values() if r.priority == PRIO_RELEARN}


def ipv4_packet_in(g, src, dst, sport=40000):
    """(dpid, in_port, 5-tuple, src MAC, dst MAC) of a TCP packet from host src to dst."""
    sw, port = host_switch(g, src)
    s, d = g.nodes[src], g.nodes[dst]
    return (g.nodes[sw]["dpid"], port, FlowKey(s["ip"], d["ip"], 6, sport, 5001),
            s["mac"], d["mac"])


def send(g, net, driver, src, dst, now, data=b"packet"):
    """A packet of src reaches the controller; returns what the driver sent (delivered and
    confirmed)."""
    out = net.deliver(driver.packet_in_flow(*ipv4_packet_in(g, src, dst), data, now))
    net.confirm(driver, now)
    return out


def to_controller(net, g, src, dst):
    """Does a packet of src to dst go to the controller at src's switch?"""
    sw, port = host_switch(g, src)
    pkt = dict(net.fab.packet(src, dst), in_port=port)
    return net.fab.switch(sw).forward(pkt) == {CONTROLLER}


def test_after_a_restart_without_a_model_every_host_port_sends_ipv4_to_the_controller():
    g, net, core, _ = restarted_without_model()
    assert core.status()["hosts"] == 0
    # Every route of an unknown host went; every host port, and only those, relearns.
    ports = {host_switch(g, h) for h in hosts(g)}
    assert set(relearn_rules(net)) == {(g.nodes[sw]["dpid"], p) for sw, p in ports}
    for a, b in itertools.permutations(hosts(g), 2):
        assert to_controller(net, g, a, b)


def test_one_ipv4_packet_relearns_a_host_and_brings_its_routes_back():
    g, net, core, driver = restarted_without_model()
    out = send(g, net, driver, "h1", "h2", 104.0, data=b"syn")
    assert set(core.hosts) == {g.nodes["h1"]["mac"]}
    name, port = host_switch(g, "h1")
    sw1 = net.dpid(name)
    assert core.hosts[g.nodes["h1"]["mac"]] == (g.nodes["h1"]["mac"], g.nodes["h1"]["ip"], sw1,
                                                port)
    assert core.status()["counters"]["hosts_learned_from_traffic"] == 1
    # The packet itself goes on, through the switch's table, after the rules.
    (resend,) = [i for i, m in enumerate(out) if isinstance(m, PacketOut)]
    assert out[resend] == PacketOut(sw1, (PORT_TABLE,), None) and out[resend].packet == b"syn"
    mods = [i for i, m in enumerate(out) if isinstance(m, (FlowMod, GroupMod))]
    assert mods and max(mods) < resend
    # h1's port relearns no more (its traffic stays in the switches); h2, still unknown, is
    # learned from its answer, and both directions are routed again.
    assert (sw1, port) not in relearn_rules(net)
    assert to_controller(net, g, "h2", "h1")
    send(g, net, driver, "h2", "h1", 104.1)
    assert net.fab.paths("h1", "h2") and net.fab.paths("h2", "h1")
    # Once every host has sent one packet, every pair is routed and nothing relearns.
    for i, h in enumerate(hosts(g)):
        send(g, net, driver, h, "h1" if h != "h1" else "h2", 105.0 + i * 0.01)
    assert core.status()["hosts"] == 16 and not relearn_rules(net)
    for a, b in itertools.permutations(hosts(g), 2):
        assert net.fab.paths(a, b)
    assert not driver.status()["pending"]


def test_a_spoofed_source_at_a_port_with_16_hosts_is_refused_and_no_host_is_hijacked():
    g, net, core, driver = restarted_without_model()
    sw, port = host_switch(g, "h1")
    dpid = net.dpid(sw)
    cap = topology_module.HOSTS_PER_PORT_MAX
    for i in range(cap + 5):
        key = FlowKey("10.9.0.%d" % i, g.nodes["h2"]["ip"], 17, 1000, 9)
        net.deliver(driver.packet_in_flow(dpid, port, key, "06:00:00:00:00:%02x" % i,
                                          g.nodes["h2"]["mac"], b"", 104.0))
    net.confirm(driver, 104.0)
    assert len(core.topo.hosts_at(dpid)) == cap
    counters = core.status()["counters"]
    assert counters["hosts_refused_port_full"] == 5
    assert counters["hosts_learned_from_traffic"] == cap
    # h2 learned at its own port; a packet with its MAC at h3's port does not move it.
    send(g, net, driver, "h2", "h1", 104.1)
    before = core.hosts[g.nodes["h2"]["mac"]]
    sw3, port3 = host_switch(g, "h3")
    key = FlowKey(g.nodes["h2"]["ip"], g.nodes["h1"]["ip"], 6, 1, 2)
    out = driver.packet_in_flow(net.dpid(sw3), port3, key, g.nodes["h2"]["mac"],
                                g.nodes["h1"]["mac"], b"", 104.2)
    assert not [m for m in out if isinstance(m, (FlowMod, GroupMod))]
    assert core.hosts[g.nodes["h2"]["mac"]] == before
    assert core.status()["discovery"]["host_moves_refused"] == 1
    # Multicast sources and packets from switch ports teach nothing.
    spine_port = next(p for (d, p) in core.links if d == dpid)
    for where, mac in (((dpid, spine_port), "06:00:00:00:01:01"),
                       ((net.dpid(sw3), port3), "01:00:5e:00:00:01")):
        driver.packet_in_flow(*where, FlowKey("10.9.1.1", "10.0.0.1", 17, 1, 2), mac,
                              g.nodes["h1"]["mac"], b"", 104.3)
        assert mac not in core.hosts
    assert core.status()["counters"]["hosts_refused_from_traffic"] == 5 + 1 + 2


def test_every_relearn_rule_goes_through_its_own_ports_meter():
    # A leaf-spine fabric with no host known yet: every host port relearns.
    g, core, driver, net = discovered()
    rules = relearn_rules(net)
    assert len(rules) == 6
    for (dpid, port), rule in rules.items():
        assert rule.actions == (Meter(port_meter(port)), ToController())
        assert port_meter(port) in net.fab.by_dpid[dpid].meters
        assert not core.topo.is_link_port(dpid, port)
    # A port that comes up later relearns, once its meter is there; one that goes down not.
    leaf = net.dpid("l1")
    net.deliver(driver.port_status(leaf, 9, True, 1.0))
    assert relearn_rules(net)[(leaf, 9)].actions[0] == Meter(port_meter(9))
    net.deliver(driver.port_status(leaf, 9, False, 1.1))
    assert (leaf, 9) not in relearn_rules(net)


def test_a_port_whose_link_expired_does_not_relearn_until_it_goes_down():
    # Its probes late, the link is forgotten, but packets of remote hosts may still cross it:
    # none of them may be learned at that switch port.
    g, core, driver, net = discovered()
    leaf, up = net.dpid("l1"), g.edges["l1", "s1"]["ports"]["l1"]
    net.deliver(driver.tick(61.0)[0])
    net.confirm(driver, 61.0)
    assert core.status()["links"] == 0
    assert (leaf, up) not in relearn_rules(net) and len(relearn_rules(net)) == 6
    h3 = g.nodes["h3"]
    driver.packet_in_flow(leaf, up, FlowKey(h3["ip"], "10.0.0.1", 6, 1, 2), h3["mac"],
                          g.nodes["h1"]["mac"], b"", 61.1)
    assert h3["mac"] not in core.hosts
    # Unplugged and plugged again, it may face a host now.
    net.deliver(driver.port_status(leaf, up, False, 62.0))
    net.deliver(driver.port_status(leaf, up, True, 62.1))
    assert relearn_rules(net)[(leaf, up)].actions[0] == Meter(port_meter(up))
