"""Plain rule and message objects the routing core and its driver return and the Ryu app
serializes.

Nothing here knows about Ryu, sockets or OpenFlow wire formats: a ``FlowMod`` is a value with
a switch id, a match and actions, built with no datapath and bound to one only when the app
sends it (the way Faucet builds its messages with ``datapath=None``). Tests apply them to a
fake flow table (tests/fakedp.py); the flow-level simulator will do the same.
"""

import collections
from dataclasses import dataclass, field
from typing import NamedTuple

# Every rule the core installs carries this cookie, so a switch's own rules and ours never mix.
COOKIE = 0xA1F0_0000_0000_0000
# Per-flow rules at a flow's first switch carry this one: the app polls their byte counters
# (flow stats filtered on it, mask all ones) and feeds them back with RoutingCore.flow_stats.
COOKIE_FLOW = COOKIE | 1

# Priorities, low to high. Every rule above PRIO_HOST_ROUTE refines the per-destination routes:
# a flow's own rule (learned or pinned) beats its destination's rule, an announced collective
# beats a learned flow, and the detour rules of local protection beat every pin: while the link
# they protect is up they send packets where any pin would, and once it fails they must win
# (see controllers/render.py). PRIO_RELEARN sends IPv4 packets from a host port where no host
# is known to the controller (through the port's meter), above the routes: a host the controller
# does not know (after a restart without a topology model, with static ARP) is learned from its
# first packet even when that packet's destination has a route. Only ports with no host known
# hold one, so no known host's traffic meets it, and per-flow rules only exist for known hosts.
PRIO_TABLE_MISS = 0
PRIO_HOST_ROUTE = 100
PRIO_RELEARN = 120
PRIO_LEARN = 150
PRIO_FLOW = 200
PRIO_INTENT_PAIR = 300
PRIO_INTENT_FLOW = 310
PRIO_DETOUR = 400
PRIO_CONTROL = 1000

ETH_TYPE_IPV4 = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_LLDP = 0x88CC
ETH_TYPE_IPV6 = 0x86DD

IP_PROTO_TCP = 6
IP_PROTO_UDP = 17

# OpenFlow reserved ports: send back out of the port the packet came in on (a plain output
# to the in-port is dropped by the switch), and, in a PacketOut, run the packet through table 0.
PORT_IN_PORT = 0xFFFFFFF8
PORT_TABLE = 0xFFFFFFF9


@dataclass(frozen=True)
class Output:
    port: int


@dataclass(frozen=True)
class ToGroup:
    group_id: int


@dataclass(frozen=True)
class ToController:
    max_len: int = 0xFFFF


@dataclass(frozen=True)
class Meter:
    """Pass the packet through meter ``meter_id`` first (an OpenFlow 1.3 meter instruction,
    kept among a rule's actions: it must come first; see controllers/meters.py)."""
    meter_id: int


# Buckets, groups and rules are named tuples (frozen values, made and hashed by the hundred
# thousand in a fabric's first flush); actions stay dataclasses, so that an Output and a
# ToGroup of the same number never compare equal.
class Bucket(NamedTuple):
    """A group bucket. ``weight`` counts in SELECT groups (1..100); ``watch_port`` is the port
    whose liveness a FAST_FAILOVER bucket depends on."""
    actions: tuple
    weight: int = 1
    watch_port: int = None


class Group(NamedTuple):
    """An OpenFlow group: ``type`` is "select", "fast_failover", "all" or "indirect"."""
    group_id: int
    type: str
    buckets: tuple


class FlowRule(NamedTuple):
    """One flow entry. ``match`` is a sorted tuple of (OXM field name, value) pairs."""
    priority: int
    match: tuple
    actions: tuple
    table_id: int = 0
    cookie: int = COOKIE

    @property
    def key(self):
        return (self.table_id, self.priority, self.match)

    def match_dict(self):
        return dict(self.match)


def match(**fields):
    """Build a FlowRule match from OXM field names (``eth_dst=...``, ``eth_type=...``)."""
    return tuple(sorted(fields.items()))


class FlowKey(collections.namedtuple("FlowKey", "ipv4_src ipv4_dst ip_proto tp_src tp_dst")):
    """An IPv4 5-tuple. ``tp_src``/``tp_dst`` are TCP or UDP ports, 0 for other protocols."""
    __slots__ = ()

    @classmethod
    def of(cls, value):
        """A FlowKey from any 5-item sequence; raises ValueError naming what is wrong."""
        return cls._make(cls.plain(value))

    @staticmethod
    def plain(value):
        """The 5-tuple :meth:`of` makes, as a plain tuple (what a learned flow keeps, see
        controllers/loads.py ``Flow.key``), without making a FlowKey on the way: learning
        a million connections at once makes a million keys."""
        try:
            src, dst, proto, sport, dport = value
            proto, sport, dport = int(proto), int(sport), int(dport)
        except (TypeError, ValueError):
            raise ValueError(f"a flow is (ipv4_src, ipv4_dst, ip_proto, tp_src, tp_dst), "
                             f"got {value!r}") from None
        if not (0 <= proto <= 255 and 0 <= sport <= 65535 and 0 <= dport <= 65535):
            raise ValueError(f"flow {value!r}: protocol or port out of range")
        return (str(src), str(dst), proto, sport, dport)

    def reverse(self):
        """The 5-tuple of the other direction (a TCP connection's ACKs). Works on a plain
        5-tuple too (``FlowKey.reverse(t)``), as :meth:`match` does."""
        src, dst, proto, sport, dport = self
        return FlowKey._make((dst, src, proto, dport, sport))

    def match(self):
        """The exact OpenFlow match of this flow (L4 ports only for TCP and UDP).

        Built in :func:`match`'s sorted field order directly (it is made at every flow
        setup); tests check it against :func:`match`."""
        src, dst, proto, sport, dport = self
        head = (("eth_type", ETH_TYPE_IPV4), ("ip_proto", proto), ("ipv4_dst", dst),
                ("ipv4_src", src))
        if proto == IP_PROTO_TCP:
            return head + (("tcp_dst", dport), ("tcp_src", sport))
        if proto == IP_PROTO_UDP:
            return head + (("udp_dst", dport), ("udp_src", sport))
        return head

    @classmethod
    def from_match(cls, fields):
        """The FlowKey of a match built by :meth:`match` (a dict of OXM fields), or None."""
        try:
            proto = int(fields["ip_proto"])
            prefix = {IP_PROTO_TCP: "tcp", IP_PROTO_UDP: "udp"}.get(proto)
            sport = int(fields[prefix + "_src"]) if prefix else 0
            dport = int(fields[prefix + "_dst"]) if prefix else 0
            return cls(str(fields["ipv4_src"]), str(fields["ipv4_dst"]), proto, sport, dport)
        except (KeyError, TypeError, ValueError):
            return None


def host_pair_match(src_ip, dst_ip):
    """Match every IPv4 packet from one host to another."""
    return match(eth_type=ETH_TYPE_IPV4, ipv4_src=src_ip, ipv4_dst=dst_ip)


class FlowMod(NamedTuple):
    """Add (or replace) or strictly delete one rule on a switch. A named tuple, not a
    dataclass: a fabric's first flush makes hundreds of thousands of them."""
    dpid: int
    command: str  # "add" or "delete" (strict)
    rule: FlowRule


class GroupMod(NamedTuple):
    dpid: int
    command: str  # "add", "modify" or "delete"
    group: Group


@dataclass(frozen=True)
class ClearSwitch:
    """Delete every flow, group and meter on a switch (sent when it connects)."""
    dpid: int


class MeterMod(NamedTuple):
    """Add (or, ``command="modify"``, set again) a packet-rate meter on a switch: packets
    above ``rate_pps`` (after a burst of ``burst_packets``) are dropped."""
    dpid: int
    meter_id: int
    rate_pps: int
    burst_packets: int
    command: str = "add"


@dataclass(frozen=True)
class ArpPacket:
    """The fields of an ARP packet the core reads or asks to send."""
    op: int  # 1 request, 2 reply
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str
    eth_src: str = None
    eth_dst: str = None


# The Ethernet source of our LLDP probes: a probe from any other address is not ours.
LLDP_SRC_MAC = "02:ff:00:00:00:01"


@dataclass(frozen=True)
class LldpProbe:
    """A link-discovery frame to send out of (dpid, port); ``sent_at`` (the core's ``now``
    when it asked for the probe) travels in the frame, so a probe processed late still says
    when it was sent. ``auth`` is the core's HMAC of the three (hex), so a probe cannot be
    forged or altered (controllers/core.py, ``RoutingCore.probe_in``); a probe parsed back
    from a frame carries what the frame says."""
    dpid: int
    port: int
    sent_at: float = None
    auth: str = None


@dataclass(frozen=True)
class PacketOut:
    """Send ``packet`` (an ArpPacket, an LldpProbe or raw bytes) out of ``ports`` of a switch.

    ``ports`` may hold :data:`PORT_TABLE`: the packet then goes through the switch's flow
    table as if it had come from the controller."""
    dpid: int
    ports: tuple
    packet: object = field(compare=False)


@dataclass(frozen=True)
class Barrier:
    """Ask a switch to answer once it has processed every message sent before this one
    (controllers/driver.py pairs the answer with the changes it confirms by ``xid``)."""
    dpid: int
    xid: int


@dataclass(frozen=True)
class PortStatsRequest:
    """Ask a switch for the counters of all its ports."""
    dpid: int
    xid: int


@dataclass(frozen=True)
class FlowStatsRequest:
    """Ask a switch for the counters of its rules (every table) whose cookie is ``cookie``,
    compared on all 64 bits."""
    dpid: int
    xid: int
    cookie: int


@dataclass(frozen=True)
class FlowDumpRequest:
    """Ask a switch for every rule in every table, whatever its cookie (what it holds, read
    back when it connects or after an error: controllers/driver.py)."""
    dpid: int
    xid: int


@dataclass(frozen=True)
class GroupDumpRequest:
    """Ask a switch for the description of every group it holds."""
    dpid: int
    xid: int


@dataclass(frozen=True)
class MeterDumpRequest:
    """Ask a switch for the configuration of every meter it holds."""
    dpid: int
    xid: int
