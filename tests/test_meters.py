"""Packet-in flooding, on the fake datapath: every rule that sends packets to the controller
goes through a meter the switch holds (new-flow packets through their own port's), and what
hosts can make the controller remember (hosts, learned flows, forwarded ARP requests) is
bounded whatever they send. The emulation variant (a host flooding new flows at 10,000 per
second while others set up connections) is in tests/test_flood_emulation.py.
"""

import pytest

from controllers import core as core_module
from controllers import topology as topology_module
from controllers.core import FLOODED_MAX, POLICIES, PolicyError, RoutingCore
from controllers.meters import METER_ARP, METER_LLDP, ControlMeters, MeterConfig, port_meter
from controllers.rules import (ETH_TYPE_ARP, ETH_TYPE_LLDP, PRIO_LEARN, ArpPacket, FlowKey,
                               Meter, MeterMod, ToController)
from fabric.model import host_switch, switches
from fakedp import FakeFabric
from topologies import build


def discovered(policy):
    g = build("fattree", k=4, link_gbps=1.0)
    core = RoutingCore(policy=policy)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    return g, core, fab


@pytest.mark.parametrize("policy", POLICIES)
def test_every_rule_to_the_controller_goes_through_a_meter_the_switch_holds(policy):
    g, core, fab = discovered(policy)
    learn_rules = 0
    for sw in switches(g):
        switch = fab.switch(sw)
        ports = {d["ports"][sw] for _, _, d in g.edges(sw, data=True)}
        assert set(switch.meters) == {METER_ARP, METER_LLDP} | {port_meter(p) for p in ports}
        for rule in switch.flows.values():
            if not any(isinstance(a, ToController) for a in rule.actions):
                continue
            meter = rule.actions[0]
            assert isinstance(meter, Meter), rule
            fields = dict(rule.match)
            if rule.priority == PRIO_LEARN:
                learn_rules += 1
                assert meter.meter_id == port_meter(fields["in_port"])
            else:
                assert meter.meter_id == {ETH_TYPE_ARP: METER_ARP,
                                          ETH_TYPE_LLDP: METER_LLDP}[fields["eth_type"]]
    # Learning policies meter each host port's new flows on its own; the others learn none.
    assert learn_rules == (2 * 16 if core.learns_flows else 0)


def test_a_port_that_appears_later_gets_its_meter_once():
    g, core, fab = discovered("congestion")
    e1 = g.nodes["e1"]["dpid"]
    msgs = core.port_status(e1, 9, True, 1.0)
    c = core.meters.config
    assert [m for m in msgs if isinstance(m, MeterMod)] == [
        MeterMod(e1, port_meter(9), c.learn_pps, c.learn_burst)]
    fab.apply(msgs)
    again = core.port_status(e1, 9, True, 2.0)
    assert not [m for m in again if isinstance(m, MeterMod)]


def test_a_reconnecting_switch_is_wiped_and_gets_its_meters_again():
    g, core, fab = discovered("ecmp")
    e1 = g.nodes["e1"]["dpid"]
    ports = [d["ports"]["e1"] for _, _, d in g.edges("e1", data=True)]
    fab.apply(core.switch_enter(e1, ports, 1.0))    # the fake refuses a meter added twice
    fab.apply(core.flush(1.0))
    assert len(fab.switch("e1").meters) == 2 + len(ports)


def test_meter_budgets_are_checked():
    assert ControlMeters(MeterConfig(learn_pps=50)).config.learn_pps == 50
    with pytest.raises(PolicyError, match="learn_pps"):
        RoutingCore(meters={"learn_pps": 0})
    with pytest.raises(PolicyError, match="arp_burst"):
        RoutingCore(meters={"arp_burst": 1.5})


def test_a_host_inventing_flows_is_learned_up_to_its_cap(monkeypatch):
    monkeypatch.setattr(core_module, "FLOWS_PER_HOST_MAX", 100)
    g, core, fab = discovered("congestion")
    h1, h5 = g.nodes["h1"], g.nodes["h5"]
    sw, port = host_switch(g, "h1")
    for sport in range(10000, 10300):
        key = FlowKey(h1["ip"], h5["ip"], 17, sport, 9)
        fab.apply(core.packet_in_flow(g.nodes[sw]["dpid"], port, key, h1["mac"], h5["mac"],
                                      b"", 1.0))
    counters = core.status()["counters"]
    assert counters["flows"] == 100 and counters["flows_refused_host_full"] == 200
    # Another host still learns its flows.
    h2 = g.nodes["h2"]
    sw2, port2 = host_switch(g, "h2")
    key = FlowKey(h2["ip"], h5["ip"], 6, 40000, 5001)
    fab.apply(core.packet_in_flow(g.nodes[sw2]["dpid"], port2, key, h2["mac"], h5["mac"], b"",
                                  1.0))
    assert key in core.flows


def test_a_host_announcing_invented_macs_fills_only_its_port(monkeypatch):
    g, core, fab = discovered("ecmp")
    sw, port = host_switch(g, "h1")
    dpid = g.nodes[sw]["dpid"]
    for i in range(1000):
        mac = "06:00:00:00:%02x:%02x" % divmod(i, 256)
        arp = ArpPacket(1, mac, "10.9.%d.%d" % divmod(i, 256), "00:00:00:00:00:00", "10.0.0.5")
        fab.apply(core.packet_in_arp(dpid, port, arp, b"", 1.0))
    cap = topology_module.HOSTS_PER_PORT_MAX
    # h1 itself and cap - 1 invented ones; the switch's other host port is untouched.
    assert len(core.topo.hosts_at(dpid)) == cap + 1
    assert core.status()["counters"]["hosts_refused_port_full"] == 1000 - (cap - 1)
    assert core.status()["hosts"] == 16 + cap - 1


def test_arp_requests_for_unknown_addresses_are_remembered_within_bounds():
    g, core, fab = discovered("ecmp")
    sw, port = host_switch(g, "h1")
    h1 = g.nodes["h1"]
    for i in range(3 * FLOODED_MAX):
        arp = ArpPacket(1, h1["mac"], h1["ip"], "00:00:00:00:00:00",
                        "10.200.%d.%d" % divmod(i % 65536, 256))
        core.packet_in_arp(g.nodes[sw]["dpid"], port, arp, b"", 1.0 + i * 1e-4)
    assert len(core._flooded) <= FLOODED_MAX
