"""Meters on what switches send to the controller, so a flooding host cannot drown it.

One job: which OpenFlow 1.3 meters every switch holds and which meter each rule that sends
packets to the controller goes through. Every packet-in costs the controller (Ryu parses it
in Python) far more than the switch; a host sending thousands of new flows, ARP requests or
LLDP frames per second must be cut at the switch, in its datapath, before an upcall:

- new-flow packets (the learn rules of the learning policies, one pair per host port) go
  through a meter of their own port: a flooding host uses up its own port's budget and no
  other host's, on its switch or any other;
- ARP requests and LLDP frames go through one meter each per switch (their rules match no
  port): a flood there delays only its own switch's ARP or probes.

Meter ids are derived from what they meter (a port number, a kind), never from the order of
discovery, so the same switch gets the same meters from any controller. Pure: no Ryu, no
clock.
"""

import dataclasses

from controllers.rules import Meter, MeterMod

# Meter ids: one per kind per switch, then one per port.
METER_ARP = 1
METER_LLDP = 2
METER_PORT_BASE = 0x100


def port_meter(port):
    """Id of the meter of new-flow packets from ``port``.

    Examples
    --------
    >>> port_meter(3)
    259
    """
    return METER_PORT_BASE + port


@dataclasses.dataclass(frozen=True)
class MeterConfig:
    """Packet-in budgets, in packets per second (and packets of burst).

    Attributes
    ----------
    learn_pps, learn_burst : int
        New-flow packets to the controller per host port. A host opening connections to
        every other at once (an all-to-all) sends about one per peer: the burst covers that.
    arp_pps, arp_burst : int
        ARP packets to the controller per switch.
    lldp_pps, lldp_burst : int
        LLDP frames to the controller per switch (our probes: one per port and probe round).
    """

    learn_pps: int = 50
    learn_burst: int = 300
    arp_pps: int = 500
    arp_burst: int = 1000
    lldp_pps: int = 500
    lldp_burst: int = 1000

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"meter option {f.name} must be an integer >= 1, "
                                 f"got {value!r}")


class ControlMeters:
    """The meters every switch holds, and which ports have one.

    Parameters
    ----------
    config : MeterConfig, optional
        The budgets; the defaults if omitted.
    """

    def __init__(self, config=None):
        self.config = config or MeterConfig()
        self._ports = {}   # dpid -> ports with a meter

    def switch_enter(self, dpid, ports):
        """The meters of a switch just wiped (send after its ClearSwitch, before its rules):
        ARP, LLDP, and one for each of ``ports``."""
        c = self.config
        self._ports[dpid] = set()
        return [MeterMod(dpid, METER_ARP, c.arp_pps, c.arp_burst),
                MeterMod(dpid, METER_LLDP, c.lldp_pps, c.lldp_burst)] + \
            self.port_up(dpid, sorted(ports))

    def port_up(self, dpid, ports):
        """Meters for ports of a known switch that have none yet (a port added later)."""
        have = self._ports.get(dpid)
        if have is None:
            return []
        new = [p for p in ports if p not in have]
        have.update(new)
        return [MeterMod(dpid, port_meter(p), self.config.learn_pps, self.config.learn_burst)
                for p in new]

    def switch_leave(self, dpid):
        self._ports.pop(dpid, None)

    @staticmethod
    def learn_actions(port, to_controller):
        """Actions of a learn rule on ``port``: its port's meter, then the controller."""
        return (Meter(port_meter(port)), to_controller)

    @staticmethod
    def control_meter(eth_type_name):
        """The meter action of the switch-wide rule for ``"arp"`` or ``"lldp"``."""
        return Meter({"arp": METER_ARP, "lldp": METER_LLDP}[eth_type_name])
