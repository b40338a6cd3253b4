"""Collective intents: an announced flow set, validated once, and the paths assigned to it.

An *intent* is a collective's whole flow set, announced before it starts (see
``RoutingCore.submit_intent``). This module parses and validates one (:func:`parse_flows`:
an error names the flow's index, the field and the value), holds it (:class:`Intent`,
:class:`IntentFlow`) and assigns a path to every flow (:func:`assign`) with the min-max
algorithms of controllers/placement.py: exactly on small intents, batched with numpy on large
ones (a million flows). It reads the core only through ``hosts``, ``host_by_ref``,
``host_paths`` (small intents), ``host_path_matrix`` and ``link_list`` (large ones) and
``capacity``. It must not pin, build rules, import Ryu or read a clock;
when to assign, and what announced flows mean for learned ones, is the policy's business
(:class:`controllers.policies.Collective`).
"""

import dataclasses
import itertools
import math
import numbers

import numpy as np

from controllers.placement import batched_min_max_assignment, min_max_assignment
from controllers.paths import path_links
from controllers.rules import FlowKey

FIELDS = frozenset({"src", "dst", "bytes", "flow", "phase"})
"""Keys a flow given as a dict may have."""


class IntentError(ValueError):
    """A collective intent was malformed, named an unknown host, or is not known."""


@dataclasses.dataclass(slots=True)
class IntentFlow:
    """One announced flow (or every packet of a host pair) and the path it was given: a view
    of one row of an :class:`Intent` (:attr:`Intent.flows`), made on demand."""

    src: object           # Host
    dst: object           # Host
    bytes: float
    key: FlowKey = None   # None: every packet of the host pair
    path: tuple = None
    phase: object = None  # flows of one phase run together (e.g. a round of an all-to-all)


class FlowTable:
    """An intent's announced flows as columns (what :func:`parse_flows` returns): a million
    flows are a few arrays, not a million objects.

    ``hosts`` are the host records the flows name, one per MAC, in order of first appearance;
    ``src`` and ``dst`` index them. ``proto``, ``sport`` and ``dport`` are the flow's 5-tuple
    beyond its hosts' addresses (``ips``, as announced), ``proto`` -1 for a host pair (every
    IPv4 packet of it). ``phase`` indexes ``phases`` (None: a flow whose merged items had
    different phases).
    """

    __slots__ = ("hosts", "ips", "src", "dst", "size", "proto", "sport", "dport", "phase",
                 "phases", "_lookup")

    def __init__(self, hosts, src, dst, size, proto, sport, dport, phase, phases):
        self.hosts = list(hosts)
        self.ips = [h.ip for h in self.hosts]
        # As narrow as their values allow (67 million rows at k=32): hosts and phases index
        # lists, ports fit 16 bits, protocols 8 (and -1).
        self.src = np.asarray(src, dtype=index_dtype(len(self.hosts)))
        self.dst = np.asarray(dst, dtype=self.src.dtype)
        self.size = np.asarray(size, dtype=float)
        self.proto = np.asarray(proto, dtype=np.int16)
        self.sport = np.asarray(sport, dtype=np.int32)
        self.dport = np.asarray(dport, dtype=np.int32)
        self.phases = list(phases)
        self.phase = np.asarray(phase, dtype=index_dtype(len(self.phases)))
        self._lookup = None

    def __len__(self):
        return len(self.size)

    def keys(self):
        """Every row's 5-tuple as a FlowKey (None for a host pair), in row order (a
        generator)."""
        ips = self.ips
        for s, d, proto, sport, dport in zip(self.src.tolist(), self.dst.tolist(),
                                             self.proto.tolist(), self.sport.tolist(),
                                             self.dport.tolist()):
            yield None if proto < 0 else FlowKey(ips[s], ips[d], proto, sport, dport)

    def covers(self, key, src_mac, dst_mac):
        """Whether a row is the 5-tuple ``key`` (a plain tuple or FlowKey) or the host pair
        ``(src_mac, dst_mac)``: a search in sorted codes, built at the first call."""
        if self._lookup is None:
            self._lookup = self._build_lookup()
        ip_at, mac_at, flow_codes, flow_rows, pair_codes = self._lookup
        s, d = mac_at.get(src_mac), mac_at.get(dst_mac)
        if s is not None and d is not None and len(pair_codes):
            code = s * len(self.hosts) + d
            j = np.searchsorted(pair_codes, code)
            if j < len(pair_codes) and pair_codes[j] == code:
                return True
        if key is None or not len(flow_codes):
            return False
        s, d = ip_at.get(key[0]), ip_at.get(key[1])
        if s is None or d is None:
            return False
        code = (s << 32) | (int(key[3]) << 16) | int(key[4])
        lo, hi = np.searchsorted(flow_codes, [code, code + 1])
        rows = flow_rows[lo:hi]
        return bool(((self.dst[rows] == d) & (self.proto[rows] == int(key[2]))).any())

    def _build_lookup(self):
        ip_at = {}
        for i, ip in enumerate(self.ips):
            ip_at.setdefault(ip, i)
        mac_at = {h.mac: i for i, h in enumerate(self.hosts)}
        keyed = self.proto >= 0
        rows = np.flatnonzero(keyed)
        # Rows by the announced source address (two records never share one at parse).
        src, dst = self.src.astype(np.int64), self.dst.astype(np.int64)
        codes = (src[rows] << 32) | (self.sport[rows].astype(np.int64) << 16) | self.dport[rows]
        order = np.argsort(codes, kind="stable")
        pair_codes = np.unique(src[~keyed] * len(self.hosts) + dst[~keyed])
        return ip_at, mac_at, codes[order], rows[order], pair_codes


class IntentColumns:
    """An intent's flows given as columns, what a flow-level simulator has (fabric/twin.py):
    :func:`parse_flows` checks them in numpy instead of item by item.

    ``hosts`` names hosts by MAC or IPv4 address; ``src`` and ``dst`` index it per flow.
    ``proto``, ``sport`` and ``dport`` give each flow's 5-tuple beyond its hosts' addresses
    (all three or none: without them every flow is its host pair). ``phase`` is an integer
    per flow, or None.
    """

    __slots__ = ("hosts", "src", "dst", "size", "proto", "sport", "dport", "phase")

    def __init__(self, hosts, src, dst, size, proto=None, sport=None, dport=None, phase=None):
        self.hosts = list(hosts)
        self.src, self.dst, self.size = np.asarray(src), np.asarray(dst), np.asarray(size)
        self.proto, self.sport, self.dport, self.phase = proto, sport, dport, phase

    def __len__(self):
        return len(self.size)

    def take(self, rows):
        """These rows (indices or a mask) as columns of their own, on the same hosts."""
        def pick(col):
            return None if col is None else np.asarray(col)[rows]
        return IntentColumns(self.hosts, self.src[rows], self.dst[rows], self.size[rows],
                             pick(self.proto), pick(self.sport), pick(self.dport),
                             pick(self.phase))


class SwitchPaths:
    """Switch paths as columns: a million chosen paths are a few arrays, not a tuple each.

    Paths come in groups of ``width`` (a group: the candidate paths of one pair of switches,
    in the core's order), path ``p`` in group ``p // width``. Path ``p`` starts at switch
    ``first[p // width]`` and crosses the links ``rows[p]``, indices into ``links`` (directed
    ``(u, v)`` dpid pairs) padded with ``len(links)``; a path of no links (both ends on one
    switch) is a row of padding. ``last[g]`` is group g's last switch. ``paths[p]`` is path
    p as a tuple of dpids.
    """

    __slots__ = ("first", "last", "rows", "width", "links")

    def __init__(self, first=(), last=(), rows=None, width=1, links=()):
        self.first = np.asarray(first, dtype=np.int64)
        self.last = np.asarray(last, dtype=np.int64)
        self.rows = np.zeros((0, 1), dtype=np.int32) if rows is None else rows
        self.width = max(1, int(width))
        self.links = list(links)

    def __len__(self):
        return self.rows.shape[0]

    def __getitem__(self, p):
        p = int(p)
        if not 0 <= p < len(self):
            raise IndexError(p)
        n, links = len(self.links), self.links
        return (int(self.first[p // self.width]),) + tuple(
            links[lk][1] for lk in self.rows[p].tolist() if lk < n)

    def ends(self, ids):
        """``(first, last)``: the dpids each path of ``ids`` starts and ends at."""
        group = np.asarray(ids) // self.width
        return self.first[group], self.last[group]


def index_dtype(n):
    """The smallest of int32 and int64 that indexes ``n`` items (and -1)."""
    return np.int32 if n < 2 ** 31 - 1 else np.int64


class Intent:
    """An announced collective, its flows (a :class:`FlowTable`), the path each was given,
    and what its last assignment achieved.

    ``path_of[i]`` indexes ``paths`` (a :class:`SwitchPaths`) for row i, -1 for none.
    ``link_bytes`` is the bytes the assignment puts on each directed switch link: other
    intents' assignments count it as background without walking these flows again.
    """

    def __init__(self, intent_id, table, submitted_at):
        self.intent_id = intent_id
        self.table = table
        self.submitted_at = submitted_at
        self.paths = SwitchPaths()
        self.path_of = np.full(len(table), -1, dtype=np.int32)
        self.version = 0
        self.installed_version = -1
        self.peak_s = 0.0
        self.peak_link = None
        self.peak_bytes = 0.0
        self.phase_peak_s = 0.0
        self.optimal = True
        self.unplaced = 0
        self.phases = 0
        self.link_bytes = {}

    def __len__(self):
        return len(self.table)

    @property
    def flows(self):
        """Every row as an :class:`IntentFlow` (made on each call: for small intents, tests
        and reports; the policy reads the columns)."""
        t, paths, hosts = self.table, self.paths, self.table.hosts
        return [IntentFlow(hosts[s], hosts[d], size, key, paths[p] if p >= 0 else None,
                           t.phases[ph])
                for s, d, size, key, p, ph in zip(t.src.tolist(), t.dst.tolist(),
                                                   t.size.tolist(), t.keys(),
                                                   self.path_of.tolist(), t.phase.tolist())]

    def covers(self, key, src_mac, dst_mac):
        """Whether the intent announced the 5-tuple ``key`` or the host pair."""
        return self.table.covers(key, src_mac, dst_mac)

    def pinned(self):
        """``(FlowKey or None, source Host, destination Host, path)`` of every row with a
        path, in row order (a generator)."""
        t, paths, hosts = self.table, self.paths, self.table.hosts
        made = {}   # a path named by many rows is made once
        for s, d, key, p in zip(t.src.tolist(), t.dst.tolist(), t.keys(),
                                self.path_of.tolist()):
            if p >= 0:
                path = made.get(p)
                if path is None:
                    path = made[p] = paths[p]
                yield key, hosts[s], hosts[d], path

    def valid(self, core):
        """Whether every row still has a path the core allows between its hosts' switches,
        its hosts being the core's current records."""
        t = self.table
        hosts = core.hosts
        fresh = np.array([hosts.get(h.mac) == h for h in t.hosts] or [True], dtype=bool)
        dpid = np.array([h.dpid for h in t.hosts] or [0], dtype=np.int64)
        p = self.path_of
        if (p < 0).any():
            return False
        if not (fresh[t.src] & fresh[t.dst]).all():
            return False
        first, last = self.paths.ends(p)
        if not ((first == dpid[t.src]) & (last == dpid[t.dst])).all():
            return False
        return bool(core.allowed_paths(self.paths)[p].all())

    def status(self):
        """What ``RoutingCore.intent_status`` reports, JSON-able."""
        return {
            "intent": self.intent_id,
            "state": "installed" if self.installed_version == self.version else "installing",
            "flows": len(self.table),
            "unplaced": self.unplaced,
            "max_link": list(self.peak_link) if self.peak_link else None,
            "max_link_load_s": self.peak_s,
            "max_link_bytes": self.peak_bytes,
            "phases": self.phases,
            "max_phase_link_load_s": self.phase_peak_s,
            "optimal": self.optimal,
            "submitted_at": self.submitted_at,
        }


def check_intent_id(intent_id):
    """``intent_id`` if it can name an intent (a string or an integer), else IntentError."""
    if isinstance(intent_id, bool) or not isinstance(intent_id, (str, int)):
        raise IntentError(f"an intent id is a string or an integer, got {intent_id!r}")
    return intent_id


def parse_flows(flows, host_by_ref):
    """The validated flows of an intent, items of one 5-tuple or host pair merged.

    Parameters
    ----------
    flows : iterable
        Items ``(src, dst, bytes[, 5-tuple[, phase]])`` or dicts with keys among
        :data:`FIELDS`. Hosts are named by MAC or IPv4 address; a phase is a string or an
        integer. Items without a 5-tuple mean every IPv4 packet of their host pair.
    host_by_ref : callable
        ``host_by_ref(ref)``: the host a MAC or IP names, or None (``RoutingCore.host_by_ref``).

    Returns
    -------
    FlowTable
        One row per ``ident`` in order of first appearance, ``ident`` being what the flow's
        pin matches: its 5-tuple, or its host pair. Items of one ident are one row with
        their bytes summed; if their phases differ, the row's phase is None, since one pin
        carries it in both.

    Raises
    ------
    IntentError
        Naming the flow's index and what is wrong with which value.

    Examples
    --------
    >>> import collections
    >>> H = collections.namedtuple("H", "mac ip dpid port")
    >>> known = {"10.0.0.1": H("m1", "10.0.0.1", 1, 1), "10.0.0.2": H("m2", "10.0.0.2", 2, 1)}
    >>> parse_flows([("10.0.0.1", "10.0.0.2", 5)] * 2, known.get).size.tolist()
    [10.0]
    >>> try:
    ...     parse_flows([("10.0.0.1", "10.0.0.2", 5), ("10.0.0.1", "10.0.0.2", 0)], known.get)
    ... except IntentError as err:
    ...     print(err)
    flow 1: bytes must be a number > 0, got 0
    """
    if isinstance(flows, IntentColumns):
        return _parse_columns(flows, host_by_ref)
    if isinstance(flows, (str, bytes)) or not hasattr(flows, "__iter__"):
        raise IntentError("an intent's flows are a list of (src, dst, bytes[, 5-tuple])")
    resolved = {}  # a collective names each host many times: look each name up once
    host_at = {}   # MAC -> index in hosts
    hosts = []
    row_of = {}    # ident -> row
    src_col, dst_col, size_col = [], [], []
    proto_col, sport_col, dport_col, phase_col = [], [], [], []
    phase_at = {}
    # Local names: this loop runs once per flow, a million times for a large collective.
    known_host, real, plain = resolved.get, numbers.Real, FlowKey.plain
    for i, item in enumerate(flows):
        if item.__class__ is dict or isinstance(item, dict):
            if not item.keys() <= FIELDS:
                raise IntentError(f"flow {i}: unknown field(s) {sorted(set(item) - FIELDS)}")
            src_ref, dst_ref, size = item.get("src"), item.get("dst"), item.get("bytes")
            flow, phase = item.get("flow"), item.get("phase")
        else:
            if isinstance(item, (str, bytes)) or not hasattr(item, "__len__") \
                    or len(item) not in (3, 4, 5):
                raise IntentError(f"flow {i}: expected (src, dst, bytes[, 5-tuple[, phase]]), "
                                  f"got {item!r}")
            src_ref, dst_ref, size = item[0], item[1], item[2]
            flow = item[3] if len(item) >= 4 else None
            phase = item[4] if len(item) == 5 else None
        src = known_host(src_ref) if src_ref.__class__ is str else None
        if src is None:
            src = host_by_ref(src_ref)
            if src is None:
                raise IntentError(f"flow {i}: unknown host {src_ref!r}")
            if src_ref.__class__ is str:
                resolved[src_ref] = src
        dst = known_host(dst_ref) if dst_ref.__class__ is str else None
        if dst is None:
            dst = host_by_ref(dst_ref)
            if dst is None:
                raise IntentError(f"flow {i}: unknown host {dst_ref!r}")
            if dst_ref.__class__ is str:
                resolved[dst_ref] = dst
        if src.mac == dst.mac:
            raise IntentError(f"flow {i}: source and destination are one host")
        if (size.__class__ is not int and size.__class__ is not float and (
                isinstance(size, bool) or not isinstance(size, real))) or not size > 0:
            raise IntentError(f"flow {i}: bytes must be a number > 0, got {size!r}")
        key = None
        if flow is not None:
            try:
                key = plain(flow)
            except ValueError as err:
                raise IntentError(f"flow {i}: {err}") from None
            if (key[0], key[1]) != (src.ip, dst.ip):
                raise IntentError(f"flow {i}: 5-tuple addresses are not those of "
                                  f"{src_ref!r} and {dst_ref!r}")
        if phase is not None and phase.__class__ is not int and phase.__class__ is not str \
                and (isinstance(phase, bool) or not isinstance(phase, (str, int))):
            raise IntentError(f"flow {i}: a phase is a string or an integer, got {phase!r}")
        ident = key if key is not None else ("pair", src.mac, dst.mac)
        row = row_of.get(ident)
        if row is not None:
            size_col[row] += float(size)
            if phase_col[row] != phase_at.setdefault(phase, len(phase_at)):
                phase_col[row] = phase_at.setdefault(None, len(phase_at))  # one pin, both
            continue
        row_of[ident] = len(size_col)
        s = host_at.get(src.mac)
        if s is None:
            s = host_at[src.mac] = len(hosts)
            hosts.append(src)
        d = host_at.get(dst.mac)
        if d is None:
            d = host_at[dst.mac] = len(hosts)
            hosts.append(dst)
        src_col.append(s)
        dst_col.append(d)
        size_col.append(float(size))
        if key is None:
            proto_col.append(-1)
            sport_col.append(0)
            dport_col.append(0)
        else:
            proto_col.append(key[2])
            sport_col.append(key[3])
            dport_col.append(key[4])
        phase_col.append(phase_at.setdefault(phase, len(phase_at)))
    if not size_col:
        raise IntentError("an intent needs at least one flow")
    del row_of
    return FlowTable(hosts, src_col, dst_col, size_col, proto_col, sport_col, dport_col,
                     phase_col, list(phase_at))


def _parse_columns(cols, host_by_ref):
    """:func:`parse_flows` of an :class:`IntentColumns`: the same checks, errors (naming
    the first flow at fault) and table, in numpy."""
    n = len(cols.size)
    if n == 0:
        raise IntentError("an intent needs at least one flow")
    if not (len(cols.src) == len(cols.dst) == n):
        raise IntentError(f"src, dst and bytes have different lengths: {len(cols.src)}, "
                          f"{len(cols.dst)}, {n}")

    def first(bad, message):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise IntentError(f"flow {i}: {message(i)}")

    def integers(values):   # kept as given if integers: 67 million rows at k=32
        values = np.asarray(values)
        narrow = values.dtype.kind == "i" or (values.dtype.kind == "u" and values.itemsize < 8)
        return values if narrow else values.astype(np.int64)

    src, dst = integers(cols.src), integers(cols.dst)
    n_refs = len(cols.hosts)
    first((src < 0) | (src >= n_refs) | (dst < 0) | (dst >= n_refs),
          lambda i: f"host index out of range ({src[i]}, {dst[i]} of {n_refs} hosts)")
    records = [host_by_ref(ref) for ref in cols.hosts]
    known = np.array([r is not None for r in records], dtype=bool)
    first(~known[src] | ~known[dst], lambda i: "unknown host "
          f"{cols.hosts[src[i] if not known[src[i]] else dst[i]]!r}")
    # Hosts by MAC, in order of first appearance (each flow's source, then destination).
    mac_at, mac_of_ref = {}, np.zeros(n_refs, dtype=index_dtype(n_refs))
    for j, r in enumerate(records):
        if r is not None:
            mac_of_ref[j] = mac_at.setdefault(r.mac, len(mac_at))
    macs = list(mac_at)
    record_of = {r.mac: r for r in records if r is not None}
    s_m, d_m = mac_of_ref[src], mac_of_ref[dst]
    first(s_m == d_m, lambda i: "source and destination are one host")
    size = np.asarray(cols.size)
    if size.dtype.kind not in "iuf" or size.dtype == bool:
        raise IntentError(f"bytes must be numbers > 0, got {size.dtype} values")
    size = size.astype(float)
    first(~(size > 0), lambda i: f"bytes must be a number > 0, got {cols.size[i].item()!r}")
    keyed = cols.proto is not None
    if keyed != (cols.sport is not None) or keyed != (cols.dport is not None):
        raise IntentError("give proto, sport and dport together, or none of them")
    if keyed:
        proto, sport, dport = integers(cols.proto), integers(cols.sport), integers(cols.dport)
        first((proto < 0) | (proto > 255) | (sport < 0) | (sport > 65535) | (dport < 0)
              | (dport > 65535), lambda i: f"flow ({proto[i]}, {sport[i]}, {dport[i]}): "
                                           "protocol or port out of range")
    else:
        proto, sport, dport = (np.full(n, -1), np.zeros(n, dtype=np.int64),
                               np.zeros(n, dtype=np.int64))
    if cols.phase is None:
        phase, phases = np.zeros(n, dtype=np.int64), [None]
    else:
        values = np.asarray(cols.phase)
        if values.dtype.kind not in "iu":
            raise IntentError(f"phases must be integers, got {values.dtype} values")
        low = int(values.min())
        at, inverse = _codes(values - low, int(values.max()) - low + 1)
        order = np.argsort(at, kind="stable")        # phases in order of first appearance
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        phase = rank[inverse]
        phases = (values[at[order]]).tolist()
        del inverse
    # Rows of one 5-tuple (or host pair) are one flow: bytes summed, phase kept if alike.
    # Rows distinct in (source, destination, source port), as a simulator's connections
    # are, are distinct flows: one sort of one column tells, before sorting all five.
    hosts_bits = max(1, len(macs)).bit_length()
    if 2 * hosts_bits + 16 <= 62:
        quick = (s_m.astype(np.int64) << hosts_bits | d_m) << 16 | sport
        quick.sort()
        distinct = not (quick[1:] == quick[:-1]).any()
        del quick
    else:
        distinct = False
    step = np.ones(n, dtype=bool)
    if not distinct:
        ident = np.stack([s_m, d_m, proto, sport, dport])
        order = np.lexsort(ident[::-1])
        step[1:] = (ident[:, order[1:]] != ident[:, order[:-1]]).any(axis=0)
        del ident
    if not step.all():
        group_sorted = np.cumsum(step) - 1
        group = np.empty(n, dtype=np.int64)
        group[order] = group_sorted
        g = int(group_sorted[-1]) + 1
        head = np.full(g, n, dtype=np.int64)
        np.minimum.at(head, group, np.arange(n))
        lo, hi = np.full(g, np.iinfo(np.int64).max), np.full(g, -1)
        np.minimum.at(lo, group, phase)
        np.maximum.at(hi, group, phase)
        merged_size = np.bincount(group, weights=size, minlength=g)
        mixed = lo != hi
        if mixed.any():
            if None not in phases:
                phases.append(None)
            lo[mixed] = phases.index(None)
        rows = np.sort(head)
        grp = group[rows]
        s_m, d_m, proto, sport, dport = (c[rows] for c in (s_m, d_m, proto, sport, dport))
        size, phase = merged_size[grp], lo[grp]
    # The table's hosts in order of first appearance (each flow's source, then its
    # destination), as the item parse has them.
    m = len(s_m)
    first_at = np.full(len(macs), 2 * m, dtype=np.int64)
    np.minimum.at(first_at, s_m, np.arange(0, 2 * m, 2))
    np.minimum.at(first_at, d_m, np.arange(1, 2 * m, 2))
    named = np.flatnonzero(first_at < 2 * m)
    order = named[np.argsort(first_at[named], kind="stable")]
    renumber = np.empty(len(macs), dtype=np.int64)
    renumber[order] = np.arange(len(order))
    return FlowTable([record_of[macs[m]] for m in order.tolist()], renumber[s_m],
                     renumber[d_m], size, proto, sport, dport, phase, phases)


def assign(core, intent, background_bytes, node_budget, improve_ops, exact_flows):
    """Give every flow of ``intent`` one of its equal-cost paths, minimizing the peak load.

    A link's load is its transmission time, bytes * 8 / capacity, per phase; other intents'
    bytes (``background_bytes``, ``{link: bytes}``) weigh on every phase, their timing being
    unknown. Intents of at most ``exact_flows`` flows go to
    :func:`~controllers.placement.min_max_assignment` (search within ``node_budget`` nodes);
    larger ones to :func:`~controllers.placement.batched_min_max_assignment` (improvement
    within ``improve_ops``). The core's paths are asked once per pair of switches.

    Sets the intent's ``paths`` and ``path_of`` (-1 where the flow's switches are not
    connected) and refreshes its table's hosts from ``core.hosts``; sets the intent's
    ``peak_s``, ``peak_link`` and ``peak_bytes`` (all phases together, with the background),
    ``phase_peak_s``, ``optimal``, ``unplaced``, ``phases`` and ``link_bytes``, and counts a
    new ``version``.
    """
    table = intent.table
    n = len(table)
    # Flows name few hosts, each one entry of the table's hosts: work per host, and per flow
    # only in numpy.
    table.hosts = records = [core.hosts.get(h.mac, h) for h in table.hosts]
    dpids = sorted({h.dpid for h in records})
    switch_of = np.searchsorted(np.array(dpids), [h.dpid for h in records])
    src, dst = table.src, table.dst
    first, flow_pair = _codes(switch_of[src] * len(dpids) + switch_of[dst], len(dpids) ** 2)
    pair_ends = [(records[src[i]].mac, records[dst[i]].mac) for i in first.tolist()]
    first_switch = [records[src[i]].dpid for i in first.tolist()]
    last_switch = [records[dst[i]].dpid for i in first.tolist()]
    phase_first, flow_phase = _codes(table.phase - table.phase.min(initial=0),
                                     int(np.ptp(table.phase)) + 1 if n else 0)
    sizes = table.size
    if n <= exact_flows:
        path_lists = [core.host_paths(a, b) for a, b in pair_ends]
        paths, counts, links = _candidate_arrays(path_lists)
        capacity_bps, background_s = _capacities(core, links, background_bytes)
        options = [[tuple(((phase, link), size * 8 / capacity_bps[link])
                          for link in path_links(p)) for p in path_lists[pair]]
                   for size, phase, pair in zip(sizes.tolist(), flow_phase.tolist(),
                                                flow_pair.tolist())]
        choices, phase_peak, optimal = min_max_assignment(
            options, {(p, link): load for p in range(len(phase_first))
                      for link, load in background_s.items()},
            node_budget=node_budget)
        choices = np.array([-1 if c is None else c for c in choices], dtype=np.int64)
    else:
        # The core's path matrices (cached parts shared by every switch pair with the same
        # next hops), not every path as a tuple: at k=16, 16,384 switch pairs of 64 paths.
        matrices = [core.host_path_matrix(a, b) for a, b in pair_ends]
        links = list(core.link_list)
        paths, counts = _matrix_arrays(matrices, len(links))
        del matrices
        capacity_bps, background_s = _capacities(core, links, background_bytes)
        weight = np.array([8 / capacity_bps[link] for link in links])
        choices, phase_peak, optimal = batched_min_max_assignment(
            paths, counts, flow_pair, flow_phase, sizes, weight,
            np.array([background_s.get(link, 0.0) for link in links]),
            improve_ops=improve_ops)
        phase_peak = max(phase_peak, max(background_s.values(), default=0.0))
    # A flow's path is its pair's group of candidates and its choice in it: no path is
    # made per flow (tens of millions at k=32).
    width = paths.shape[1]
    intent.paths = SwitchPaths(first_switch, last_switch, paths.reshape(-1, paths.shape[2]),
                               width, links)
    placed = choices >= 0
    path_of = np.full(n, -1, dtype=index_dtype(len(intent.paths)))
    path_of[placed] = flow_pair[placed].astype(path_of.dtype) * width + choices[placed]
    intent.path_of = path_of
    del choices, flow_pair
    # The bytes on every link, one link position of the paths at a time (no (flows, hops)
    # array of link indices and its repeated sizes).
    rows, chosen = intent.paths.rows, path_of[placed]
    placed_sizes = sizes[placed]
    own = np.zeros(len(links) + 1)
    for j in range(rows.shape[1]):
        own += np.bincount(rows[chosen, j], weights=placed_sizes, minlength=len(links) + 1)
    own = own[:len(links)]
    del chosen, placed_sizes
    intent.link_bytes = {links[j]: float(own[j]) for j in np.flatnonzero(own).tolist()}
    load_bytes = dict(background_bytes)
    for link, b in intent.link_bytes.items():
        load_bytes[link] = load_bytes.get(link, 0.0) + b
    loads = {link: b * 8 / capacity_bps[link] for link, b in load_bytes.items()}
    intent.peak_link = max(sorted(loads), key=loads.get) if loads else None
    intent.peak_s = loads.get(intent.peak_link, 0.0)
    intent.peak_bytes = load_bytes.get(intent.peak_link, 0.0)
    intent.phase_peak_s = phase_peak
    intent.optimal = bool(optimal)
    intent.unplaced = int(n - placed.sum())
    intent.phases = len(phase_first)
    intent.version += 1


def _codes(values, bound):
    """``(first, inverse)`` of non-negative integer ``values`` below ``bound``, as
    ``np.unique(values, return_index=True, return_inverse=True)`` gives them (the row where
    each distinct value first appears, in sorted order of the values, and each row's value's
    index among them, as int32 while that fits): by a table of ``bound`` entries when that
    is no more than a few times the rows, else by ``np.unique``'s sort."""
    values = np.asarray(values, dtype=np.int64)
    if bound > 4 * len(values) + 1024:
        _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
        return first, inverse.reshape(-1).astype(index_dtype(len(first)))
    first = np.full(max(bound, 1), len(values), dtype=np.int64)
    np.minimum.at(first, values, np.arange(len(values)))
    present = first < len(values)
    number = np.cumsum(present) - 1
    return first[present], number[values].astype(index_dtype(int(present.sum())))


def _capacities(core, links, background_bytes):
    """``(capacity_bps, background_s)``: the capacity of every candidate and background link,
    and other intents' bytes on a link as its transmission time.

    A link that is gone (a switch crashed, a link found gray) keeps its place in the core's
    link list and in the bytes other intents put on it until they are re-assigned in turn,
    but no path crosses it: it weighs nothing (infinite capacity)."""
    capacity_bps = {link: core.capacity(*link) if core.has_link(*link) else math.inf
                    for link in itertools.chain(links, background_bytes)}
    return capacity_bps, {link: b * 8 / capacity_bps[link]
                          for link, b in background_bytes.items()}


def _matrix_arrays(matrices, n_links):
    """Path matrices (see ``RoutingCore.host_path_matrix``; None for no path) as the arrays
    of :func:`_candidate_arrays`: ``(paths, counts)``, ``paths[p, j]`` the link indices of
    the j-th path of pair p padded with ``n_links`` (int32 while the links are fewer: the
    array holds every candidate of every pair: 268 million entries at k=32)."""
    counts = np.array([0 if m is None else m.shape[1] for m in matrices], dtype=np.int64)
    depth = max([m.shape[0] for m in matrices if m is not None], default=0)
    paths = np.full((len(matrices), max(1, int(counts.max(initial=0))), max(1, depth)),
                    n_links, dtype=index_dtype(n_links + 1))
    for p, m in enumerate(matrices):
        if m is not None and m.shape[0]:
            paths[p, :m.shape[1], :m.shape[0]] = m.T
    return paths, counts


def _candidate_arrays(path_lists):
    """Switch paths as arrays of link ids: ``(paths, counts, links)``.

    ``paths[p, j]`` holds the link ids of the j-th path of pair p, padded with
    ``len(links)``; ``counts[p]`` is how many paths pair p has; ``links[id]`` is the
    directed link ``(u, v)``, ids in sorted order of the links.
    """
    n_pairs = len(path_lists)
    counts = np.fromiter(map(len, path_lists), dtype=np.int64, count=n_pairs)
    every = list(itertools.chain.from_iterable(path_lists))
    lengths = np.fromiter(map(len, every), dtype=np.int64, count=len(every))
    # Switches numbered in sorted order of dpid, so that link ids sort like the links (a
    # set and a search cost less than np.unique's sort of every switch of every path).
    switches = sorted(set(itertools.chain.from_iterable(every)))
    nodes = np.searchsorted(np.array(switches, dtype=np.uint64), np.fromiter(
        itertools.chain.from_iterable(every), dtype=np.uint64, count=int(lengths.sum())))
    width = max(1, len(switches))
    ends = np.cumsum(lengths)
    hop = np.ones(len(nodes), dtype=bool)
    hop[ends - 1] = False  # a path's last switch starts no link
    heads = np.flatnonzero(hop)
    codes = nodes[heads] * width + nodes[heads + 1]
    if width * width <= 4 * len(codes):
        # A table of every (u, v) is no larger than the links themselves: numbering the
        # ones present costs one pass instead of a sort (0.6 s on a k=16 fat-tree).
        present = np.zeros(width * width, dtype=bool)
        present[codes] = True
        link_codes = np.flatnonzero(present)
        link_ids = (np.cumsum(present) - 1)[codes]
    else:
        link_codes, link_ids = np.unique(codes, return_inverse=True)
    links = [(switches[c // width], switches[c % width]) for c in link_codes.tolist()]
    path_of = np.repeat(np.arange(len(every)), lengths - 1)
    table = np.full((len(every) + 1, max(1, int(lengths.max(initial=1)) - 1)), len(links),
                    dtype=np.int64)
    table[path_of, heads - (ends - lengths)[path_of]] = link_ids
    m = int(counts.max(initial=0))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    j = np.arange(m)
    row = np.where(j < counts[:, None], starts[:, None] + j, len(every))
    return table[row], counts, links
