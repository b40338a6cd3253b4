"""One interpreter of OpenFlow 1.3 forwarding tables, and a model of Open vSwitch's SELECT hash.

What it is for
--------------
Everything that asks "where does this packet go?" without a switch asks it here: the routing
core (what do the rules it believes switches hold do?), the fake datapath of the tests
(tests/fakedp.py), and the flow-level simulator (which bucket would Open vSwitch pick for this
5-tuple?). It works on the plain values of controllers/rules.py:

- :class:`FlowTable` holds one switch's flows and groups, finds the rule a packet hits and
  expands its actions through groups into output ports;
- :func:`walk` follows a packet across switches joined by a port-to-port map;
- :func:`installed_paths` is the routing core's path query over what it installed;
- :func:`ovs_dp_hash`, :func:`select_slots` and :func:`select_bucket` model how Open vSwitch
  picks a SELECT bucket.

It must not import Ryu, open sockets, run processes or keep time, and it validates nothing a
switch would reject: the fake datapath does that before it hands messages to a table.

Forwarding semantics
--------------------
Only table 0 is looked up: the core's actions have no goto-table. The highest-priority rule
whose fields all match the packet's wins: an exact field ``(name, value)`` when the packet's
value equals it, a masked one ``(name, (value, mask))`` (Ryu's form) when the packet's value
ANDed with the mask equals ``value``, as Open vSwitch compares them (a rule's value must have
no bits outside its mask: the fake datapath refuses one that does, see :func:`masked`).
Among overlapping rules of one priority (undefined in OpenFlow) the one matching more fields
wins, then the one whose field names sort first. A plain output to the packet's in-port is
dropped, :data:`PORT_IN_PORT` sends it back, ``ToController`` gives the output
:data:`CONTROLLER`, a group the table lacks gives nothing. A FAST_FAILOVER group takes its
first live bucket; ALL and INDIRECT groups every bucket; a SELECT group either every live
bucket (``hashed=False``: all paths a packet of this header *may* take) or the one bucket Open
vSwitch picks for it (``hashed=True``). A bucket is live when its weight is above 0 (SELECT
only) and its watch port, if any, is up.

The SELECT hash (Open vSwitch 3.1, the version Debian 12 ships)
---------------------------------------------------------------
Read from the openvswitch/ovs sources at tag v3.1.0 (``ofproto/ofproto-dpif.c``:
``group_set_selection_method``, ``group_setup_dp_hash_table``; ``ofproto/ofproto-dpif-xlate.c``:
``pick_select_group``, ``pick_dp_hash_select_group``, ``pick_default_select_group``,
``group_best_live_bucket``, ``bucket_is_alive``; ``lib/odp-execute.c``: the
``OVS_ACTION_ATTR_HASH`` action; ``lib/flow.c``: ``flow_hash_symmetric_l3l4``,
``flow_hash_symmetric_l2``, ``flow_hash_symmetric_l4``; ``lib/hash.h``, ``lib/jhash.c``) and
re-written here, no code copied:

1. A group from Ryu has no selection method, so Open vSwitch tries ``dp_hash``: it spreads a
   power-of-two table of hash values (at least 16, at least ``ceil(total / min weight)`` and
   ``min(4 * buckets, 256)``) over the buckets by the Webster (Sainte-Laguë) method, in bucket
   order, first bucket on ties (:func:`select_slots`). The datapath hashes the packet with the
   symmetric L3/L4 hash, basis 0: the XOR of the IP addresses, the IP protocol, and the XOR of
   the L4 ports *for TCP and SCTP only* (UDP ports are left out, so every UDP flow of a host
   pair, RoCEv2 included, takes one bucket); non-IP packets hash the XOR of the MACs, the
   EtherType and the VLAN id. The bucket is ``slots[hash & mask]``, or the next live one.
2. If more than 256 hash values would be needed (very unequal weights), Open vSwitch falls back
   to highest-random-weight: every live bucket scores ``(hash_int(bucket id, basis) & 0xffff)
   * weight`` with ``basis`` the symmetric L4 hash (also MACs and EtherType), the highest score
   wins, the last bucket on ties. Its shares are *not* proportional to weight (1:3 gives 1:5).

Both hashes are re-implemented bit for bit as read, for little-endian x86-64 builds without
SSE 4.2 (the Debian package's ovs-vswitchd has no crc32 instruction, so it uses the
murmur-style ``hash_add``), bucket ids 0, 1, ... in bucket order as for OpenFlow 1.3, and
unfragmented packets. They were not checked against a running switch: treat individual bucket
choices as a model whose inputs, weighting and statistics are Open vSwitch's, and the exact
choices as very likely but unverified.
"""

import functools
import ipaddress

import numpy as np
from dataclasses import dataclass
from types import MappingProxyType

from controllers.rules import (
    ETH_TYPE_IPV4, ETH_TYPE_IPV6, IP_PROTO_TCP, IP_PROTO_UDP, PORT_IN_PORT, FlowKey, Output,
    ToController, ToGroup)

__all__ = ["CONTROLLER", "MAX_HASH_SLOTS", "MAX_PATH_SWITCHES", "Branch", "FlowTable",
           "installed_paths", "masked", "ovs_dp_hash", "ovs_dp_hash_tcp4", "select_index",
           "ovs_symmetric_l4_hash", "select_bucket", "select_slots", "walk"]

# The output a ToController action gives.
CONTROLLER = "controller"
# Open vSwitch's limit on dp_hash values per group (MAX_SELECT_GROUP_HASH_VALUES).
MAX_HASH_SLOTS = 256
# A walk along rules longer than this is a loop (no fabric here is that deep).
MAX_PATH_SWITCHES = 32
# Groups chained deeper than this are a cycle a modify created (Open vSwitch stops at 32 too).
MAX_GROUP_DEPTH = 32

IP_PROTO_SCTP = 132
_M32 = 0xFFFFFFFF
_PORT_FIELDS = {IP_PROTO_TCP: ("tcp_src", "tcp_dst"), IP_PROTO_UDP: ("udp_src", "udp_dst"),
                IP_PROTO_SCTP: ("sctp_src", "sctp_dst")}


# -- Open vSwitch's hashes ------------------------------------------------------------------
def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & _M32


def _mhash_add(h, data):
    # MurmurHash3's block step; a zero block leaves the state unmixed, as in lib/hash.h.
    if data:
        data = (data * 0xCC9E2D51) & _M32
        data = (_rotl(data, 15) * 0x1B873593) & _M32
        h ^= data
    return (_rotl(h, 13) * 5 + 0xE6546B64) & _M32


def _mhash_finish(h):
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _M32
    return h ^ (h >> 16)


def _hash_int(x, basis):
    return _mhash_finish(_mhash_add(_mhash_add(x, 0), basis) ^ 8)


def _jhash_mix(a, b, c):
    # lookup3's six mixing steps: each is the same step with the roles of a, b, c rotated.
    for k in (4, 6, 8, 16, 19, 4):
        a = ((a - c) & _M32) ^ _rotl(c, k)
        c = (c + b) & _M32
        a, b, c = b, c, a
    return a, b, c


def _jhash_final(a, b, c):
    c = ((c ^ b) - _rotl(b, 14)) & _M32
    a = ((a ^ c) - _rotl(c, 11)) & _M32
    b = ((b ^ a) - _rotl(a, 25)) & _M32
    c = ((c ^ b) - _rotl(b, 16)) & _M32
    a = ((a ^ c) - _rotl(c, 4)) & _M32
    b = ((b ^ a) - _rotl(a, 14)) & _M32
    return ((c ^ b) - _rotl(b, 24)) & _M32


def _jhash_words(words, n_bytes, basis):
    # Bob Jenkins' lookup3 over 32-bit words, zero-padded, as lib/jhash.c applies it: mix every
    # whole 12-byte block, run the final step only over a partial one.
    a = b = c = (0xDEADBEEF + n_bytes + basis) & _M32
    words = list(words) + [0, 0]
    i = 0
    while n_bytes - 4 * i >= 12:
        a, b, c = _jhash_mix((a + words[i]) & _M32, (b + words[i + 1]) & _M32,
                             (c + words[i + 2]) & _M32)
        i += 3
    if n_bytes - 4 * i:
        c = _jhash_final((a + words[i]) & _M32, (b + words[i + 1]) & _M32,
                         (c + words[i + 2]) & _M32)
    return c


@functools.lru_cache(maxsize=65536)
def _addr_bytes(addr):
    return ipaddress.ip_address(addr).packed


@functools.lru_cache(maxsize=65536)
def _mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def _xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def _l4_ports_xor(pkt, proto):
    names = _PORT_FIELDS.get(proto)
    return 0 if names is None else int(pkt.get(names[0], 0)) ^ int(pkt.get(names[1], 0))


def _mac_xor(pkt):
    zero = "00:00:00:00:00:00"
    return _xor(_mac_bytes(pkt.get("eth_src", zero)), _mac_bytes(pkt.get("eth_dst", zero)))


def _swap16(x):
    return ((x & 0xFF) << 8) | (x >> 8)


def ovs_dp_hash(pkt, basis=0):
    """The hash Open vSwitch's userspace datapath gives a packet for a SELECT group's dp_hash.

    ``flow_hash_symmetric_l3l4`` without UDP ports (the ``OVS_HASH_ALG_SYM_L4`` action): IPv4
    and IPv6 packets hash the XOR of their addresses, the IP protocol and, for TCP and SCTP,
    the XOR of the ports; other packets the XOR of the MACs and the EtherType. It is symmetric:
    both directions of a connection get one value.

    Parameters
    ----------
    pkt : dict
        OXM fields of the packet (``eth_type``, ``ipv4_src``, ``ip_proto``, ``tcp_src``, ...);
        a missing field counts as 0, as in Open vSwitch's flow key.
    basis : int
        Hash basis (0 for groups without a selection method).

    Returns
    -------
    int
        A 32-bit hash.

    Examples
    --------
    >>> a = {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2",
    ...      "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 5001}
    >>> b = dict(a, ipv4_src=a["ipv4_dst"], ipv4_dst=a["ipv4_src"], tcp_src=5001, tcp_dst=40000)
    >>> ovs_dp_hash(a) == ovs_dp_hash(b)
    True
    >>> udp = dict(a, ip_proto=17, udp_src=1, udp_dst=4791)
    >>> ovs_dp_hash(udp) == ovs_dp_hash(dict(udp, udp_src=2))
    True
    """
    eth_type = int(pkt.get("eth_type", 0))
    if eth_type == ETH_TYPE_IPV4:
        x = _xor(_addr_bytes(pkt.get("ipv4_src", "0.0.0.0")),
                 _addr_bytes(pkt.get("ipv4_dst", "0.0.0.0")))
        h = _mhash_add(basis, int.from_bytes(x, "little"))
    elif eth_type == ETH_TYPE_IPV6:
        x = _xor(_addr_bytes(pkt.get("ipv6_src", "::")), _addr_bytes(pkt.get("ipv6_dst", "::")))
        h = basis
        for i in range(0, 16, 4):
            h = _mhash_add(h, int.from_bytes(x[i:i + 4], "little"))
    else:
        mac = _mac_xor(pkt)
        words = (int.from_bytes(eth_type.to_bytes(2, "big") + b"\0\0", "little"),
                 int.from_bytes(mac[:4], "little"), int.from_bytes(mac[4:] + b"\0\0", "little"))
        h = basis
        for w in words:
            h = _mhash_add(h, w)
        return _mhash_finish(h ^ basis)
    proto = int(pkt.get("ip_proto", 0))
    h = _mhash_add(h, proto)
    if proto in (IP_PROTO_TCP, IP_PROTO_SCTP):
        h = _mhash_add(h, _swap16(_l4_ports_xor(pkt, proto)))
    return _mhash_finish(h ^ basis)


def _rotl_np(x, k):
    return ((x << np.uint64(k)) | (x >> np.uint64(32 - k))) & np.uint64(_M32)


def _mhash_add_np(h, data):
    m = np.uint64(_M32)
    mixed = (data * np.uint64(0xCC9E2D51)) & m
    mixed = (_rotl_np(mixed, 15) * np.uint64(0x1B873593)) & m
    h = np.where(data != 0, h ^ mixed, h)
    return (_rotl_np(h, 13) * np.uint64(5) + np.uint64(0xE6546B64)) & m


def ovs_dp_hash_tcp4(src, dst, sport, dport):
    """:func:`ovs_dp_hash` of many IPv4 TCP packets at once (basis 0), for the flow-level
    simulator's millions of flows.

    Parameters
    ----------
    src, dst : array_like of int
        IPv4 addresses as integers (``int(ipaddress.IPv4Address(a))``).
    sport, dport : array_like of int
        TCP ports.

    Returns
    -------
    numpy.ndarray
        The 32-bit hashes (uint64), equal to :func:`ovs_dp_hash` of each packet.

    Examples
    --------
    >>> pkt = {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2",
    ...        "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 5001}
    >>> int(ovs_dp_hash_tcp4([0x0A000001], [0x0A000002], [40000], [5001])[0]) == ovs_dp_hash(pkt)
    True
    """
    m = np.uint64(_M32)
    x = np.asarray(src, dtype=np.uint64) ^ np.asarray(dst, dtype=np.uint64)
    # The address bytes in network order read as a little-endian word.
    word = (((x >> np.uint64(24)) & np.uint64(0xFF)) | ((x >> np.uint64(8)) & np.uint64(0xFF00))
            | ((x << np.uint64(8)) & np.uint64(0xFF0000))
            | ((x << np.uint64(24)) & np.uint64(0xFF000000)))
    h = _mhash_add_np(np.zeros_like(word), word)
    h = _mhash_add_np(h, np.full_like(word, IP_PROTO_TCP))
    ports = np.asarray(sport, dtype=np.uint64) ^ np.asarray(dport, dtype=np.uint64)
    h = _mhash_add_np(h, ((ports & np.uint64(0xFF)) << np.uint64(8)) | (ports >> np.uint64(8)))
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & m
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & m
    return h ^ (h >> np.uint64(16))


def ovs_symmetric_l4_hash(pkt, basis=0):
    """Open vSwitch's ``flow_hash_symmetric_l4``: the basis of its fallback SELECT method.

    Like :func:`ovs_dp_hash` it is symmetric and leaves UDP ports out, but it also hashes the
    XOR of the MACs and the EtherType, with Jenkins' lookup3 rather than murmur steps.

    Parameters
    ----------
    pkt : dict
        OXM fields of the packet.
    basis : int
        Hash basis (0 in Open vSwitch's default method).

    Returns
    -------
    int
        A 32-bit hash.

    Examples
    --------
    >>> p = {"eth_src": "02:00:00:00:00:01", "eth_dst": "02:00:00:00:00:02",
    ...      "eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2"}
    >>> q = dict(p, eth_src=p["eth_dst"], eth_dst=p["eth_src"],
    ...          ipv4_src=p["ipv4_dst"], ipv4_dst=p["ipv4_src"])
    >>> ovs_symmetric_l4_hash(p) == ovs_symmetric_l4_hash(q)
    True
    """
    buf = bytearray(32)  # the C struct: 16-byte address union, three be16, a MAC, a byte, pad
    eth_type = int(pkt.get("eth_type", 0))
    buf[16:18] = eth_type.to_bytes(2, "big")
    buf[22:28] = _mac_xor(pkt)
    if eth_type in (ETH_TYPE_IPV4, ETH_TYPE_IPV6):
        if eth_type == ETH_TYPE_IPV4:
            addr = _xor(_addr_bytes(pkt.get("ipv4_src", "0.0.0.0")),
                        _addr_bytes(pkt.get("ipv4_dst", "0.0.0.0")))
        else:
            addr = _xor(_addr_bytes(pkt.get("ipv6_src", "::")),
                        _addr_bytes(pkt.get("ipv6_dst", "::")))
        buf[:len(addr)] = addr
        proto = int(pkt.get("ip_proto", 0))
        buf[28] = proto
        if proto in (IP_PROTO_TCP, IP_PROTO_SCTP):
            buf[20:22] = _l4_ports_xor(pkt, proto).to_bytes(2, "big")
    words = [int.from_bytes(buf[i:i + 4], "little") for i in range(0, 32, 4)]
    return _jhash_words(words, 32, basis)


@functools.lru_cache(maxsize=4096)
def select_slots(weights):
    """Open vSwitch's dp_hash table of a SELECT group: the bucket index of every hash value.

    Parameters
    ----------
    weights : tuple of int
        Bucket weights, in bucket order.

    Returns
    -------
    tuple of int or None
        ``slots[h]`` is the bucket of hash values ``h`` modulo ``len(slots)`` (a power of two,
        at least 16); None when the weights need more than :data:`MAX_HASH_SLOTS` values or
        all are 0, where Open vSwitch falls back to highest-random-weight.

    Examples
    --------
    >>> select_slots((1, 1))
    (0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1)
    >>> sorted(select_slots((1, 3))).count(0)
    4
    >>> select_slots((1, 100, 100, 100)) is None
    True
    """
    positive = [w for w in weights if w > 0]
    if not positive:
        return None
    min_slots = max(-(-sum(weights) // min(positive)), min(4 * len(weights), MAX_HASH_SLOTS))
    n_slots = max(16, 1 << (min_slots - 1).bit_length())
    if n_slots > MAX_HASH_SLOTS:
        return None
    # Webster's method in floating point, as Open vSwitch computes it, so ties fall alike.
    divisors = [1] * len(weights)
    values = [float(w) for w in weights]
    slots = []
    for _ in range(n_slots):
        best = 0
        for i in range(1, len(weights)):
            if values[i] > values[best]:
                best = i
        slots.append(best)
        divisors[best] += 2
        values[best] = weights[best] / divisors[best]
    return tuple(slots)


def _bucket_live(group, bucket, live):
    if group.type == "select" and bucket.weight <= 0:
        return False
    return bucket.watch_port is None or live(bucket.watch_port)


def _all_live(_port):
    return True


def select_bucket(group, pkt, live=None):
    """The bucket of a SELECT group Open vSwitch sends ``pkt`` to, or None if none is live.

    Parameters
    ----------
    group : Group
        A SELECT group.
    pkt : dict
        OXM fields of the packet.
    live : callable, optional
        ``live(port) -> bool`` for watch ports; every port is live if omitted.

    Returns
    -------
    Bucket or None

    Examples
    --------
    >>> from controllers.rules import Bucket, Group, Output
    >>> g = Group(1, "select", (Bucket((Output(1),)), Bucket((Output(2),))))
    >>> pkt = {"eth_type": 0x0800, "ipv4_src": "10.0.0.1", "ipv4_dst": "10.0.0.2"}
    >>> select_bucket(g, pkt) is select_bucket(g, pkt)
    True
    >>> select_bucket(g, pkt) in g.buckets
    True
    """
    live = live or _all_live
    buckets = group.buckets
    i = select_index(tuple(b.weight for b in buckets), ovs_dp_hash(pkt),
                     lambda: ovs_symmetric_l4_hash(pkt),
                     lambda i: _bucket_live(group, buckets[i], live))
    return None if i is None else buckets[i]


def select_index(weights, dp_hash, l4_hash, alive=None):
    """The index of the bucket Open vSwitch picks among buckets of ``weights`` (see
    :func:`select_bucket`), from the packet's hashes: its dp_hash, and ``l4_hash()`` (a
    callable, called only for the highest-random-weight fallback) its symmetric L4 hash.
    ``alive(i)`` says whether bucket ``i`` may be picked (every bucket of weight > 0 if
    omitted); None when none may."""
    alive = alive or (lambda i: weights[i] > 0)
    slots = select_slots(weights)
    if slots is not None:
        mask = len(slots) - 1
        # From the packet's slot onward, so a dead bucket's share spreads as the weights say.
        for i in range(len(slots)):
            b = slots[(dp_hash + i) & mask]
            if alive(b):
                return b
        return None
    basis = l4_hash()
    best, best_score = None, 0
    for i, w in enumerate(weights):
        if alive(i):
            score = (_hash_int(i, basis) & 0xFFFF) * w
            if score >= best_score:
                best, best_score = i, score
    return best


# -- one switch -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=65536)
def masked(value, mask):
    """``value`` ANDed with ``mask``, in ``value``'s own notation.

    Parameters
    ----------
    value, mask : str or int
        Both MACs (``aa:bb:cc:dd:ee:ff``), both IPv4 or IPv6 addresses, or both integers.

    Returns
    -------
    str or int
        The masked value, written as a switch reports it (lower-case MAC, compressed address).

    Examples
    --------
    >>> masked("0A:00:00:05:00:03", "ff:ff:ff:ff:00:00")
    '0a:00:00:05:00:00'
    >>> masked("10.1.2.3", "255.255.0.0"), masked(0x0806, 0xff00)
    ('10.1.0.0', 2048)
    """
    if isinstance(value, int):
        return value & mask
    if len(value) == 17 and value.count(":") == 5:
        n = int(value.replace(":", ""), 16) & int(mask.replace(":", ""), 16)
        return ":".join(f"{n:012x}"[i:i + 2] for i in range(0, 12, 2))
    addr = ipaddress.ip_address(value)
    return str(type(addr)(int(addr) & int(ipaddress.ip_address(mask))))


class FlowTable:
    """One switch's flows and groups, with a lookup that costs a few dict probes.

    Rules are indexed by *schema*, (table, priority, matched fields): a lookup probes each
    schema once, highest priority first, with the packet's values of its fields (masked by the
    schema's mask for a masked field), so its cost grows with the number of distinct schemas
    (a handful), not with the number of rules. A masked field's schema entry is
    ``(name, mask)``, an exact one's the name.

    Parameters
    ----------
    flows : iterable of FlowRule
        Initial rules (a later rule with the same key replaces an earlier one).
    groups : iterable of Group
        Initial groups.

    Examples
    --------
    >>> from controllers.rules import FlowRule, Output, match
    >>> t = FlowTable([FlowRule(0, (), ()), FlowRule(10, match(eth_dst="02:00:00:00:00:01"),
    ...                                              (Output(3),))])
    >>> t.outputs({"eth_dst": "02:00:00:00:00:01"}, in_port=1)
    (3,)
    >>> t.outputs({"eth_dst": "02:00:00:00:00:02"}, in_port=1)
    ()
    """

    def __init__(self, flows=(), groups=()):
        self._flows = {}
        self._groups = {}
        self._schemas = {}   # (table, priority, field names) -> number of rules
        self._order = None   # schemas in lookup order, rebuilt only when one appears or goes
        for rule in flows:
            self.add_flow(rule)
        for group in groups:
            self.set_group(group)

    @property
    def flows(self):
        """Read-only ``{rule.key: FlowRule}``."""
        return MappingProxyType(self._flows)

    @property
    def groups(self):
        """Read-only ``{group id: Group}``."""
        return MappingProxyType(self._groups)

    @staticmethod
    def _schema(rule):
        return (rule.table_id, rule.priority, tuple(
            name if type(value) is not tuple else (name, value[1]) for name, value in rule.match))

    def add_flow(self, rule):
        """Install ``rule``, replacing the rule with the same table, priority and match."""
        if rule.key not in self._flows:
            schema = self._schema(rule)
            count = self._schemas.get(schema, 0)
            self._schemas[schema] = count + 1
            if not count:
                self._order = None
        self._flows[rule.key] = rule

    def delete_flow(self, rule):
        """Remove the rule with ``rule``'s key (a strict delete); absent is fine."""
        if self._flows.pop(rule.key, None) is not None:
            schema = self._schema(rule)
            self._schemas[schema] -= 1
            if not self._schemas[schema]:
                del self._schemas[schema]
                self._order = None

    def set_group(self, group):
        """Add or replace a group."""
        self._groups[group.group_id] = group

    def delete_group(self, group_id):
        """Remove a group; absent is fine."""
        self._groups.pop(group_id, None)

    def clear(self):
        """Remove every flow and group."""
        self._flows.clear()
        self._groups.clear()
        self._schemas.clear()
        self._order = None

    def lookup(self, pkt):
        """The table-0 rule ``pkt`` (a dict of OXM fields) hits, or None.

        Examples
        --------
        >>> from controllers.rules import FlowRule, match
        >>> t = FlowTable([FlowRule(5, match(ip_proto=6), ()), FlowRule(9, match(tcp_dst=80), ())])
        >>> t.lookup({"ip_proto": 6, "tcp_dst": 80}).priority
        9
        >>> t.lookup({"ip_proto": 17}) is None
        True
        """
        if self._order is None:
            self._order = [s + (any(type(f) is tuple for f in s[2]),) for s in sorted(
                (s for s in self._schemas if s[0] == 0),
                key=lambda s: (-s[1], -len(s[2]), [f if type(f) is str else f"{f[0]}/{f[1]}"
                                                   for f in s[2]]))]
        flows = self._flows
        for table, priority, fields, has_masks in self._order:
            try:
                if has_masks:
                    values = [(f, pkt[f]) if type(f) is str
                              else (f[0], (masked(pkt[f[0]], f[1]), f[1])) for f in fields]
                else:
                    values = [(f, pkt[f]) for f in fields]
            except KeyError:
                continue
            rule = flows.get((table, priority, tuple(values)))
            if rule is not None:
                return rule
        return None

    def outputs(self, pkt, in_port=None, live=None, hashed=False):
        """The ports the rule ``pkt`` hits sends it to, in action order, each once.

        Parameters
        ----------
        pkt : dict
            OXM fields of the packet; its ``in_port`` is matched like any field.
        in_port : int, optional
            The port it came in by: a plain output to it is dropped, ``PORT_IN_PORT`` gives it.
        live : callable, optional
            ``live(port) -> bool`` for watch ports; every port is live if omitted.
        hashed : bool
            Take the one bucket of each SELECT group Open vSwitch would take for ``pkt``
            (:func:`select_bucket`) instead of every live bucket.

        Returns
        -------
        tuple
            Port numbers and :data:`CONTROLLER`; empty if the packet is dropped.

        Raises
        ------
        ValueError
            If groups chain deeper than :data:`MAX_GROUP_DEPTH` (a cycle).
        """
        rule = self.lookup(pkt)
        return () if rule is None else self.expand(rule.actions, pkt, in_port, live, hashed)

    def expand(self, actions, pkt=None, in_port=None, live=None, hashed=False):
        """The ports ``actions`` send a packet to, following this table's groups.

        Parameters are those of :meth:`outputs`; ``pkt`` is needed only with ``hashed``.

        Examples
        --------
        >>> from controllers.rules import Bucket, Group, Output, ToGroup
        >>> ff = Group(7, "fast_failover", (Bucket((Output(1),), watch_port=1),
        ...                                 Bucket((Output(2),), watch_port=2)))
        >>> t = FlowTable(groups=[ff])
        >>> t.expand((ToGroup(7),)), t.expand((ToGroup(7),), live=lambda port: port != 1)
        ((1,), (2,))
        """
        outs = {}
        self._expand(actions, pkt or {}, in_port, live or _all_live, hashed, outs, 0)
        return tuple(outs)

    def _expand(self, actions, pkt, in_port, live, hashed, outs, depth):
        for a in actions:
            if isinstance(a, Output):
                if a.port == PORT_IN_PORT:
                    outs[in_port] = None
                elif a.port != in_port:
                    outs[a.port] = None
            elif isinstance(a, ToGroup):
                group = self._groups.get(a.group_id)
                if group is None:
                    continue
                if depth >= MAX_GROUP_DEPTH:
                    raise ValueError(f"group {a.group_id}: groups chain deeper than "
                                     f"{MAX_GROUP_DEPTH}")
                kind = group.type
                if kind == "fast_failover":
                    for b in group.buckets:
                        if b.watch_port is None or live(b.watch_port):
                            self._expand(b.actions, pkt, in_port, live, hashed, outs, depth + 1)
                            break
                elif kind == "select":
                    if hashed:
                        bucket = select_bucket(group, pkt, live)
                        buckets = () if bucket is None else (bucket,)
                    else:
                        buckets = [b for b in group.buckets if b.weight > 0 and (
                            b.watch_port is None or live(b.watch_port))]
                    for b in buckets:
                        self._expand(b.actions, pkt, in_port, live, hashed, outs, depth + 1)
                else:
                    for b in group.buckets:
                        self._expand(b.actions, pkt, in_port, live, hashed, outs, depth + 1)
            elif isinstance(a, ToController):
                outs[CONTROLLER] = None


# -- a fabric -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Branch:
    """Where one branch of a walk went.

    ``switches`` are the switch ids it crossed, in order. ``end`` says how it ended:
    ``"exit"`` out of ``port`` of the last switch, a port with no switch behind it (a host);
    ``"down"`` out of ``port``, which is not live (lost); ``"controller"`` to the controller;
    ``"drop"`` no output (or a switch without a table); ``"loop"`` back at a switch and in-port
    it had crossed, or past the depth limit.
    """
    switches: tuple
    end: str
    port: object = None


def walk(tables, peers, pkt, dpid, in_port, live=None, hashed=False,
         max_switches=MAX_PATH_SWITCHES):
    """Follow a packet from ``(dpid, in_port)`` through a fabric; every branch it may take.

    Parameters
    ----------
    tables : mapping
        ``{dpid: FlowTable}``; ``tables.get(dpid)`` is called once per switch visit.
    peers : mapping
        ``{(dpid, port): (peer dpid, peer port)}`` for both directions of every link.
    pkt : dict
        OXM fields of the packet, without ``in_port`` (the walk sets it at each switch).
    dpid, in_port : int
        Where the packet enters the fabric.
    live : callable, optional
        ``live(dpid, port) -> bool``; every port is live if omitted. A dead watch port fails
        its bucket over, an output to a dead port loses the packet.
    hashed : bool
        Follow the SELECT bucket Open vSwitch would pick (one branch unless ALL groups or
        several outputs fan out) rather than every live bucket.
    max_switches : int
        A branch crossing more switches than this ends as a loop.

    Returns
    -------
    list of Branch
        Depth first, outputs in action order.

    Examples
    --------
    >>> from controllers.rules import FlowRule, Output
    >>> tables = {1: FlowTable([FlowRule(0, (), (Output(2),))]),
    ...           2: FlowTable([FlowRule(0, (), (Output(9),))])}
    >>> walk(tables, {(1, 2): (2, 1), (2, 1): (1, 2)}, {}, 1, 5)
    [Branch(switches=(1, 2), end='exit', port=9)]
    """
    out = []
    here = dict(pkt)  # the packet as it enters the current switch; only in_port changes
    live_at = {}
    stack = [(dpid, in_port, (), ())]
    while stack:
        item = stack.pop()
        if isinstance(item, Branch):
            out.append(item)
            continue
        dpid, in_port, trail, seen = item
        trail += (dpid,)
        state = (dpid, in_port)
        if state in seen or len(trail) > max_switches:
            out.append(Branch(trail, "loop"))
            continue
        seen += (state,)
        table = tables.get(dpid)
        if table is None:
            out.append(Branch(trail, "drop"))
            continue
        port_live = live_at.get(dpid)
        if port_live is None:
            port_live = live_at[dpid] = (_all_live if live is None
                                         else functools.partial(live, dpid))
        here["in_port"] = in_port
        outs = table.outputs(here, in_port, port_live, hashed)
        if not outs:
            out.append(Branch(trail, "drop"))
        nxt = []
        for port in outs:
            if port == CONTROLLER:
                nxt.append(Branch(trail, "controller"))
            elif not port_live(port):
                nxt.append(Branch(trail, "down", port))
            elif (dpid, port) in peers:
                nxt.append((*peers[(dpid, port)], trail, seen))
            else:
                nxt.append(Branch(trail, "exit", port))
        # Reversed onto the stack, so branches come out depth first in action order.
        stack.extend(reversed(nxt))
    return out


class _InstalledTables:
    """``{dpid: FlowTable}`` built on first use from the core's ``installed`` dicts."""

    def __init__(self, installed):
        self._installed = installed
        self._tables = {}

    def get(self, dpid):
        table = self._tables.get(dpid)
        if table is None and dpid in self._installed:
            held = self._installed[dpid]
            table = self._tables[dpid] = FlowTable(held["flows"].values(),
                                                   held["groups"].values())
        return table


def installed_paths(installed, links, live_ports, src, dst, flow_key=None, hashed=False):
    """Every switch path the installed rules allow from host ``src`` to host ``dst``.

    The routing core's path query: it follows the rules and groups the core has sent, for an
    IPv4 packet of the host pair, or of the flow ``flow_key`` if given: every live bucket of
    a SELECT group (or, with ``hashed``, the one Open vSwitch picks), the first live bucket of
    a FAST_FAILOVER group.

    Parameters
    ----------
    installed : dict
        ``{dpid: {"flows": {key: FlowRule}, "groups": {gid: Group}}}``.
    links : dict
        ``{(dpid, port): (peer dpid, peer port, ...)}``, one or both directions.
    live_ports : dict
        ``{dpid: set of live ports}``.
    src, dst : Host or None
        Hosts with ``mac``, ``ip``, ``dpid`` and ``port``; no paths if either is None.
    flow_key : sequence, optional
        A 5-tuple (see :class:`controllers.rules.FlowKey`).
    hashed : bool
        Follow Open vSwitch's SELECT bucket choice (one path).

    Returns
    -------
    list of list of int
        Distinct paths (dpids from the source's switch to the destination's), sorted.

    Raises
    ------
    ValueError
        If ``flow_key`` is not a valid 5-tuple.

    Examples
    --------
    >>> from controllers.rules import FlowRule, Output
    >>> from collections import namedtuple
    >>> Host = namedtuple("Host", "mac ip dpid port")
    >>> a = Host("02:00:00:00:00:01", "10.0.0.1", 1, 1)
    >>> b = Host("02:00:00:00:00:02", "10.0.0.2", 2, 1)
    >>> installed = {1: {"flows": {(0, 0, ()): FlowRule(0, (), (Output(2),))}, "groups": {}},
    ...              2: {"flows": {(0, 0, ()): FlowRule(0, (), (Output(1),))}, "groups": {}}}
    >>> installed_paths(installed, {(1, 2): (2, 2, 0.0)}, {1: {1, 2}, 2: {1, 2}}, a, b)
    [[1, 2]]
    """
    if src is None or dst is None:
        return []
    pkt = {"eth_src": src.mac, "eth_dst": dst.mac, "eth_type": ETH_TYPE_IPV4,
           "ipv4_src": src.ip, "ipv4_dst": dst.ip}
    if flow_key is not None:
        pkt.update(FlowKey.of(flow_key).match())
    peers = {}
    for (a, pa), (b, pb, *_) in links.items():
        peers[(a, pa)] = (b, pb)
        peers[(b, pb)] = (a, pa)

    def live(dpid, port):
        return port in live_ports.get(dpid, ())

    found = {br.switches for br in walk(_InstalledTables(installed), peers, pkt, src.dpid,
                                        src.port, live, hashed)
             if br.end == "exit" and (br.switches[-1], br.port) == (dst.dpid, dst.port)}
    return [list(p) for p in sorted(found)]
