"""Plain rule and message objects the routing core returns and the Ryu app serializes.

Nothing here knows about Ryu, sockets or OpenFlow wire formats: a ``FlowMod`` is a value with
a switch id, a match and actions, built with no datapath and bound to one only when the app
sends it (the way Faucet builds its messages with ``datapath=None``). Tests apply them to a
fake flow table (tests/fakedp.py); the flow-level simulator will do the same.
"""

from dataclasses import dataclass, field

# Every rule the core installs carries this cookie, so a switch's own rules and ours never mix.
COOKIE = 0xA1F0_0000_0000_0000

PRIO_TABLE_MISS = 0
PRIO_HOST_ROUTE = 100
PRIO_CONTROL = 1000

ETH_TYPE_ARP = 0x0806
ETH_TYPE_LLDP = 0x88CC
ETH_TYPE_IPV6 = 0x86DD


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
class Bucket:
    actions: tuple
    weight: int = 1
    watch_port: int = None


@dataclass(frozen=True)
class Group:
    """An OpenFlow group: ``type`` is "select", "fast_failover", "all" or "indirect"."""
    group_id: int
    type: str
    buckets: tuple


@dataclass(frozen=True)
class FlowRule:
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


@dataclass(frozen=True)
class FlowMod:
    dpid: int
    command: str  # "add" or "delete" (strict)
    rule: FlowRule


@dataclass(frozen=True)
class GroupMod:
    dpid: int
    command: str  # "add", "modify" or "delete"
    group: Group


@dataclass(frozen=True)
class ClearSwitch:
    """Delete every flow and group on a switch (sent when it connects)."""
    dpid: int


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


@dataclass(frozen=True)
class LldpProbe:
    """A link-discovery frame to send out of (dpid, port)."""
    dpid: int
    port: int


@dataclass(frozen=True)
class PacketOut:
    """Send ``packet`` (an ArpPacket, an LldpProbe or raw bytes) out of ``ports`` of a switch."""
    dpid: int
    ports: tuple
    packet: object = field(compare=False)
