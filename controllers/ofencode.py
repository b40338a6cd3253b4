"""OpenFlow 1.3 wire encoding of the core's flow and group modifications, without Ryu.

The app sends tens of thousands of flow and group mods when a fabric comes up or learns
flows at scale; Ryu builds each through ``OFPMatch(**fields)`` (text-to-binary address
conversions through netaddr, one Python object per field) and a generic serializer, which
profiling of a k=8 emulation put at a fifth of the controller's CPU. The messages the core
makes use a handful of OXM fields and four kinds of action, so they are packed here directly
with ``struct``, byte for byte as Ryu 4.34 packs them (fields in OXM order, Ryu's defaults
for what the core does not set; tests/test_ofencode.py compares both on every kind of rule
the renderer makes). Anything else (meters, packet-outs, requests) still goes through Ryu.

Pure: no Ryu, no sockets. The transaction id is patched in when the connection assigns it
(:func:`with_xid`).
"""

import struct

from controllers import rules

OFP_VERSION = 0x04
OFPT_FLOW_MOD = 14
OFPT_GROUP_MOD = 15
OFPFC_ADD = 0
OFPFC_DELETE_STRICT = 4
OFPGC = {"add": 0, "modify": 1, "delete": 2}
OFPGT = {"all": 0, "select": 1, "indirect": 2, "fast_failover": 3}
OFPIT_APPLY_ACTIONS = 4
OFPIT_METER = 6
OFPAT_OUTPUT = 0
OFPAT_GROUP = 22
OFPP_CONTROLLER = 0xFFFFFFFD
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFP_DEFAULT_PRIORITY = 0x8000
OFPCML_MAX = 0xFFE5   # Ryu's default max_len of an output action
ALL_ONES = 0xFFFF_FFFF_FFFF_FFFF

# OXM_OF_* (class 0x8000): field number and how a value packs. Ryu orders a match's fields by
# their number, which also puts every prerequisite (eth_type, ip_proto) first.
_MAC, _IP4, _U8, _U16, _U32 = "mac", "ip4", "B", "H", "I"
OXM_FIELDS = {
    "in_port": (0, _U32), "eth_dst": (3, _MAC), "eth_src": (4, _MAC), "eth_type": (5, _U16),
    "ip_proto": (10, _U8), "ipv4_src": (11, _IP4), "ipv4_dst": (12, _IP4),
    "tcp_src": (13, _U16), "tcp_dst": (14, _U16), "udp_src": (15, _U16),
    "udp_dst": (16, _U16), "arp_op": (21, _U16), "arp_spa": (22, _IP4), "arp_tpa": (23, _IP4),
}


class EncodeError(ValueError):
    """A rule this encoder does not know how to pack (the caller falls back to Ryu)."""


def _mac(text):
    b = bytes.fromhex(text.replace(":", ""))
    if len(b) != 6:
        raise EncodeError(f"bad MAC address {text!r}")
    return b


def _ip4(text):
    parts = text.split(".")
    if len(parts) != 4:
        raise EncodeError(f"bad IPv4 address {text!r}")
    try:
        return bytes(int(p) for p in parts)
    except ValueError:
        raise EncodeError(f"bad IPv4 address {text!r}") from None


def _value(kind, v):
    if kind == _MAC:
        return _mac(v)
    if kind == _IP4:
        return _ip4(v)
    return struct.pack("!" + kind, v)


def _oxm(name, value):
    try:
        number, kind = OXM_FIELDS[name]
    except KeyError:
        raise EncodeError(f"OXM field {name!r} not encoded here") from None
    if isinstance(value, tuple):   # (value, mask), as Ryu's OFPMatch takes a masked field
        body = _value(kind, value[0]) + _value(kind, value[1])
        return number, struct.pack("!HBB", 0x8000, number << 1 | 1, len(body)) + body
    body = _value(kind, value)
    return number, struct.pack("!HBB", 0x8000, number << 1, len(body)) + body


# Matches repeat across switches and messages (a destination's rules on every switch): their
# packed form is kept, bounded, by the match tuple itself.
_MATCH_CACHE = {}
_MATCH_CACHE_MAX = 65536


def pack_match(match):
    """The ``ofp_match`` (OXM type, padded to 8 bytes) of a rule's match tuple."""
    packed = _MATCH_CACHE.get(match)
    if packed is not None:
        return packed
    fields = b"".join(oxm for _, oxm in sorted((_oxm(k, v) for k, v in match),
                                               key=lambda x: x[0]))
    length = 4 + len(fields)
    packed = struct.pack("!HH", 1, length) + fields + bytes(-length % 8)
    if len(_MATCH_CACHE) >= _MATCH_CACHE_MAX:
        _MATCH_CACHE.clear()
    _MATCH_CACHE[match] = packed
    return packed


def pack_actions(actions):
    """The action list of plain actions (Output, ToGroup, ToController)."""
    out = []
    for a in actions:
        t = type(a)
        if t is rules.Output:
            out.append(struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, a.port, OFPCML_MAX))
        elif t is rules.ToGroup:
            out.append(struct.pack("!HHI", OFPAT_GROUP, 8, a.group_id))
        elif t is rules.ToController:
            out.append(struct.pack("!HHIH6x", OFPAT_OUTPUT, 16, OFPP_CONTROLLER, a.max_len))
        else:
            raise EncodeError(f"action {a!r} not encoded here")
    return b"".join(out)


def _message(mtype, body):
    return struct.pack("!BBHI", OFP_VERSION, mtype, 8 + len(body), 0) + body


def flow_mod(msg):
    """The bytes of a :class:`rules.FlowMod` (add or strict delete), xid 0."""
    r = msg.rule
    if msg.command == "add":
        inst = []
        plain = []
        for a in r.actions:
            if type(a) is rules.Meter:   # an instruction of its own, before the actions
                inst.append(struct.pack("!HHI", OFPIT_METER, 8, a.meter_id))
            else:
                plain.append(a)
        acts = pack_actions(plain)
        inst.append(struct.pack("!HH4x", OFPIT_APPLY_ACTIONS, 8 + len(acts)) + acts)
        head = struct.pack("!QQBBHHHIIIH2x", r.cookie, 0, r.table_id, OFPFC_ADD, 0, 0,
                           r.priority, OFP_NO_BUFFER, 0, 0, 0)
        return _message(OFPT_FLOW_MOD, head + pack_match(r.match) + b"".join(inst))
    head = struct.pack("!QQBBHHHIIIH2x", r.cookie, ALL_ONES, r.table_id, OFPFC_DELETE_STRICT,
                       0, 0, r.priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0)
    return _message(OFPT_FLOW_MOD, head + pack_match(r.match))


def group_mod(msg):
    """The bytes of a :class:`rules.GroupMod`, xid 0. A delete carries no buckets
    (OpenFlow 1.3.5 and Open vSwitch reject one that does)."""
    g = msg.group
    try:
        command, gtype = OFPGC[msg.command], OFPGT[g.type]
    except KeyError:
        raise EncodeError(f"group mod {msg.command!r} of a {g.type!r} group") from None
    buckets = []
    if msg.command != "delete":
        for b in g.buckets:
            acts = pack_actions(b.actions)
            buckets.append(struct.pack(
                "!HHII4x", 16 + len(acts), b.weight if g.type == "select" else 0,
                OFPP_ANY if b.watch_port is None else b.watch_port, OFPG_ANY) + acts)
    return _message(OFPT_GROUP_MOD,
                    struct.pack("!HBxI", command, gtype, g.group_id) + b"".join(buckets))


def with_xid(buf, xid):
    """``buf`` with its header's transaction id set to ``xid``."""
    return buf[:4] + struct.pack("!I", xid) + buf[8:]
