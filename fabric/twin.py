"""The twin: a flow-level simulator that runs the routing core's own policies on a fabric model.

It executes a flow schedule on a fabric model (fabric/model.py) the way the emulation does, but
with fluid flows instead of packets, in simulated time, without root, Mininet or Open vSwitch.
The routing is not re-implemented: a :class:`~controllers.core.RoutingCore` with the spec's
policy (built without its OpenFlow renderer) learns the fabric, learns the flows, is fed port
and flow statistics every ``stats_interval_s`` of simulated time and decides as it does under
the Ryu app (placements, moves, SELECT bucket weights, collective intents, repairs). The twin
forwards each flow where the switches would send it given those decisions.

Model
-----
- **Rates**: max-min fair sharing by progressive filling over every directed link a flow
  crosses, its sender's and receiver's NIC links included (:func:`max_min_rates`), recomputed
  whenever flows start, finish or move, or links change (events at one instant together).
- **Forwarding**, per flow, from the sender's switch: a pin of the policy (a collective's
  intent, by 5-tuple or host pair), else the learned flow's pinned path, else the destination
  switch's SELECT group: the bucket Open vSwitch 3.1 would pick for the flow's 5-tuple
  (controllers/tables.py: the dp_hash of the symmetric L3/L4 hash, the Webster slot table of
  the bucket weights, the highest-random-weight fallback), so hash collisions happen as in the
  emulation. Source ports are drawn like Linux's ephemeral ports (uniform in 32768-60999,
  distinct per host, from the run's seed); the destination port is the agents' port.
- **Failures**: a link that goes down stops carrying at once; each switch's FAST_FAILOVER
  groups send a flow to the next live bucket of the rotation the renderer installs (the next
  equal-cost hop; for a single next hop, the detour through a neighbour), with no controller
  involved. ``detect_s`` later the core gets the port-status events and reroutes as it does in
  the emulation. A flow with no live path waits, at rate 0.
- **Time**: a flow starts by the schedule's own rule (``Flow.start_time``); it has been received
  once its last byte has crossed its path's propagation delay (fiber length, 5 us/km, when the
  spec emulates delay) and its last packet has been stored and forwarded at every hop (the
  MTU at each link's rate: milliseconds per hop at the emulation's rates, nanoseconds at
  400 Gbit/s). Like the agents, every flow is connected before the clock starts, so
  learning policies have learned (and ``collective`` has announced) every flow at time 0.
- **Units**: ``twin.timebase: nominal`` (the default) runs the fabric's own rates and the
  schedule's own seconds; ``emulated`` runs the rates and times the emulation would run for
  the spec (``emulation.host_link_mbps``), so controller periods relate to flow durations as
  in the emulation; this is what the twin-against-emulation benchmark uses.

Not modelled: packet loss and its recovery, queueing delay (beyond one packet per hop), TCP slow
start and congestion window dynamics (a flow takes its fair share from its first byte), ACK
traffic (the reverse direction carries nothing; the core sees ACK-sized counters for it),
connection set-up (connections exist before the clock, as in the emulation) and controller
processing time.
A short flow is therefore approximated as ``bytes / fair share + propagation delay``, which
underestimates what TCP takes for flows of a few round trips.
"""

import heapq
import ipaddress
import random
import time

import numpy as np

from controllers.core import RoutingCore, link_capacities
from controllers.rules import IP_PROTO_TCP, FlowKey
from controllers.tables import (ovs_dp_hash, ovs_dp_hash_tcp4, ovs_symmetric_l4_hash,
                               select_index)
from fabric import model
from traffic import jobs

EPHEMERAL_PORTS = (32768, 60999)   # Linux's net.ipv4.ip_local_port_range default
AGENT_PORT = 5001                  # traffic/agent.py's PORT (not imported: it opens sockets)
# Bytes of ACKs per data byte, reported as the reverse direction's counter (one 66-byte ACK
# per two segments of a 9000-byte MTU).
ACK_BYTES_PER_BYTE = 66 / (2 * (9000 - 52))
# A flow is done when what is left is below this fraction of its size (float residue).
DONE_FRACTION = 1e-9
TIMEBASES = ("nominal", "emulated")
MAX_WALK = 64                      # switches a forwarding walk may visit before it is a loop


class TwinError(RuntimeError):
    """A run the twin cannot carry out (an unknown link in an event, ...)."""


def max_min_rates(links, caps, active=None):
    """Max-min fair rates of flows over links, by progressive filling.

    Parameters
    ----------
    links : numpy.ndarray
        ``(flows, width)`` int array: the link indices each flow crosses, padded with -1.
    caps : numpy.ndarray
        Capacity of every link (bit/s).
    active : numpy.ndarray, optional
        Boolean mask of the flows that take part; the others (and flows crossing no link) get
        rate 0.

    Returns
    -------
    numpy.ndarray
        The rate of every flow: every flow gets the same rate until a link it crosses is
        full; those flows keep that rate and the others grow on, until every flow crosses a
        full link.

    Examples
    --------
    Two flows on one link get half each; on a parking lot (flow 0 over both links, flows 1
    and 2 over one each) every flow gets half of a link:

    >>> max_min_rates(np.array([[0], [0]]), np.array([10.0])).tolist()
    [5.0, 5.0]
    >>> max_min_rates(np.array([[0, 1], [0, -1], [1, -1]]), np.array([10.0, 10.0])).tolist()
    [5.0, 5.0, 5.0]
    """
    links = np.ascontiguousarray(links, dtype=np.int32)
    if active is None:
        active = np.ones(len(links), dtype=np.bool_)
    if len(links) == 0:
        return np.zeros(0)
    caps = np.asarray(caps, dtype=np.float64)
    active = np.asarray(active, dtype=np.bool_)
    if int(active.sum()) <= SMALL_SOLVE:
        return _fill_levels(links, caps, active)
    return _compiled()(links, caps, active)


# Up to this many flows a solve runs in numpy level by level, so a small run never waits for
# numba to load (about half a second per process); past it the compiled heap solver runs.
SMALL_SOLVE = 64
_FILL = None


def _compiled():
    """The heap solver compiled with numba (loaded from its on-disk cache after the first
    time), made once per process."""
    global _FILL, _heap_push, _heap_pop
    if _FILL is None:
        import numba
        jit = numba.njit(cache=True)
        _heap_push, _heap_pop = jit(_heap_push), jit(_heap_pop)
        _FILL = jit(_fill)
    return _FILL


def _fill_levels(links, caps, active):
    """The same progressive filling in numpy, one fill level per step: every unfrozen flow
    grows by the smallest remaining share, and the flows of the links that fill freeze."""
    n_links = len(caps)
    rate = np.zeros(len(links))
    todo = (links >= 0).any(axis=1) & active
    rem = caps.copy()
    level = 0.0
    tol = 1e-9 * max(1.0, float(caps.max(initial=1.0)))
    while todo.any():
        rows = links[todo]
        counts = np.bincount(rows[rows >= 0], minlength=n_links)
        used = counts > 0
        share = np.full(n_links, np.inf)
        share[used] = rem[used] / counts[used]
        inc = max(0.0, float(share.min()))
        level += inc
        rem[used] -= inc * counts[used]
        full = used & (rem <= tol)
        if not full.any():  # rounding: freeze the tightest links
            full = used & (share <= inc * (1 + 1e-12) + tol)
        hit = np.append(full, False)[links].any(axis=1) & todo   # -1 (padding) is never full
        rate[hit] = level
        todo &= ~hit
    return rate


def _heap_push(keys, vals, size, key, val):
    i = size
    keys[i], vals[i] = key, val
    while i > 0:
        parent = (i - 1) >> 1
        if keys[parent] <= keys[i]:
            break
        keys[parent], keys[i] = keys[i], keys[parent]
        vals[parent], vals[i] = vals[i], vals[parent]
        i = parent
    return size + 1


def _heap_pop(keys, vals, size):
    size -= 1
    keys[0], vals[0] = keys[size], vals[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and keys[left + 1] < keys[left]:
            child = left + 1
        if keys[i] <= keys[child]:
            break
        keys[child], keys[i] = keys[i], keys[child]
        vals[child], vals[i] = vals[i], vals[child]
        i = child
    return size


def _fill(links, caps, active):
    """Progressive filling, one bottleneck link at a time: the link whose remaining capacity
    per unfrozen flow is smallest fixes its flows at that share, which is taken off the other
    links they cross. A link's share only grows as flows freeze elsewhere (each froze at the
    smallest share), so a heap whose stale entries are pushed again on pop finds every
    bottleneck in order: O(flows x width x log links) per solve."""
    n, width = links.shape
    n_links = caps.shape[0]
    rate = np.zeros(n)
    rem = caps.copy()
    cnt = np.zeros(n_links, np.int64)
    total = 0
    for f in range(n):
        if active[f]:
            for w in range(width):
                lk = links[f, w]
                if lk >= 0:
                    cnt[lk] += 1
                    total += 1
    start = np.zeros(n_links + 1, np.int64)
    for lk in range(n_links):
        start[lk + 1] = start[lk] + cnt[lk]
    fill = start[:-1].copy()
    on = np.empty(total, np.int64)
    for f in range(n):
        if active[f]:
            for w in range(width):
                lk = links[f, w]
                if lk >= 0:
                    on[fill[lk]] = f
                    fill[lk] += 1
    frozen = ~active
    # Every link enters once and re-enters at most once per pop: 2 x links slots suffice.
    keys = np.empty(2 * n_links + 1)
    vals = np.empty(2 * n_links + 1, np.int64)
    size = 0
    for lk in range(n_links):
        if cnt[lk] > 0:
            size = _heap_push(keys, vals, size, rem[lk] / cnt[lk], lk)
    level = 0.0
    while size > 0:
        share, lk = keys[0], vals[0]
        size = _heap_pop(keys, vals, size)
        if cnt[lk] == 0:
            continue
        cur = rem[lk] / cnt[lk]
        if cur > share * (1.0 + 1e-12) + 1e-300:
            size = _heap_push(keys, vals, size, cur, lk)
            continue
        level = max(level, cur)
        for i in range(start[lk], start[lk + 1]):
            f = on[i]
            if frozen[f]:
                continue
            frozen[f] = True
            rate[f] = level
            for w in range(width):
                m = links[f, w]
                if m >= 0:
                    rem[m] -= level
                    cnt[m] -= 1
        cnt[lk] = 0
    return rate


class _Flows:
    """The active flows of a run as arrays of reusable rows: links crossed (-1 padded; a
    free row crosses none), bytes left, rate, bytes sent."""

    def __init__(self, rows=64, width=8):
        self.links = np.full((rows, width), -1, dtype=np.int32)
        self.left = np.zeros(rows)
        self.rate = np.zeros(rows)
        self.sent = np.zeros(rows)
        self.t0 = np.zeros(rows)
        self.alive = np.zeros(rows, dtype=np.bool_)
        self.fid = np.full(rows, -1, dtype=np.int64)
        self.free = list(range(rows - 1, -1, -1))
        self.row = {}             # flow index -> row

    def __len__(self):
        return len(self.row)

    @property
    def ids(self):
        return list(self.row)

    def _grow(self, rows, width):
        old_rows, old_width = self.links.shape
        rows, width = max(rows, old_rows), max(width, old_width)
        links = np.full((rows, width), -1, dtype=np.int32)
        links[:old_rows, :old_width] = self.links
        self.links = links
        extra = rows - old_rows
        if extra:
            self.left = np.append(self.left, np.zeros(extra))
            self.rate = np.append(self.rate, np.zeros(extra))
            self.sent = np.append(self.sent, np.zeros(extra))
            self.t0 = np.append(self.t0, np.zeros(extra))
            self.alive = np.append(self.alive, np.zeros(extra, dtype=np.bool_))
            self.fid = np.append(self.fid, np.full(extra, -1, dtype=np.int64))
            self.free.extend(range(rows - 1, old_rows - 1, -1))

    def add(self, fi, links, nbytes, t=0.0):
        if not self.free or len(links) > self.links.shape[1]:
            self._grow(2 * len(self.left) if not self.free else 0, len(links))
        r = self.free.pop()
        self.links[r] = -1
        self.links[r, :len(links)] = links
        self.left[r], self.rate[r], self.sent[r], self.t0[r] = float(nbytes), 0.0, 0.0, t
        self.alive[r], self.fid[r] = True, fi
        self.row[fi] = r

    def set_links(self, fi, links):
        if len(links) > self.links.shape[1]:
            self._grow(0, len(links))
        r = self.row[fi]
        self.links[r] = -1
        self.links[r, :len(links)] = links

    def current(self, fi):
        r = self.links[self.row[fi]]
        return tuple(int(x) for x in r[r >= 0])

    def remove(self, rows):
        """Free the given rows (indices)."""
        for r in rows:
            del self.row[int(self.fid[r])]
            self.free.append(int(r))
        self.alive[rows] = False
        self.links[rows] = -1
        self.rate[rows] = 0.0
        self.left[rows] = 0.0
        self.fid[rows] = -1


class Twin:
    """One run of a schedule on a fabric under a policy, in simulated time.

    Parameters
    ----------
    g : nx.Graph
        The fabric model.
    schedule : Schedule
        The flows, in the twin's time unit (see the module docstring's Units).
    policy : str
        A routing core policy.
    capacity_scale : float
        Bit/s of the run per nominal bit/s (1.0 nominal; the emulation's rate scale for
        ``emulated``).
    stats_interval_s : float
        Period of the statistics rounds (port and flow counters, then the policy's adapt).
    fast_failover : bool
        Whether switches hold FAST_FAILOVER protection (the controller's ``fast_failover``).
    options : dict
        Policy options (controllers.policies.PolicyConfig).
    seed : int
        Draws the source ports.
    delay_scale : float or None
        Seconds of the run per nominal second of propagation delay; None leaves delay out.
    mtu_bytes : int
        Packet size: a flow arrives its last packet's store-and-forward time after it
        left (at every link of its path but one).
    detect_s : float
        Time from a link's failure to the controller's port-status event.
    link_events : iterable of dict
        ``{"at_s": t, "link": [u, v], "up": bool}``: link u-v (node names of ``g``) goes
        down or comes back at time t.
    max_time_s : float, optional
        Stop the run at this simulated time (flows not received by then are left incomplete).
    resolution : float
        A flow whose time left at its current rate is below this fraction of the time it has
        run is taken as done with the flows ending now (so it ends at most that fraction of
        its duration early, and a chain of dependent flows too), so a run with many flows
        recomputes rates less often; 0 (the default) is exact.
    five_tuples : dict, optional
        ``{flow id: [src ip, dst ip, proto, sport, dport]}`` of the flows' connections (an
        emulation run's ``connections.json``), to replay its hash choices; flows not in it
        get drawn source ports.
    """

    def __init__(self, g, schedule, policy="ecmp", capacity_scale=1.0, stats_interval_s=1.0,
                 fast_failover=True, options=None, seed=0, delay_scale=1.0, mtu_bytes=9000,
                 detect_s=0.0,
                 link_events=(), max_time_s=None, resolution=0.0, five_tuples=None):
        self.g, self.schedule = g, schedule
        self.stats_interval_s = float(stats_interval_s)
        self.fast_failover = fast_failover
        self.detect_s = float(detect_s)
        self.max_time_s = max_time_s
        self.core = RoutingCore(policy, fast_failover=fast_failover, render=False,
                                link_capacity_bps=link_capacities(g, capacity_scale),
                                **(options or {}))
        self.core.load_fabric(g, now=0.0, capacity_scale=capacity_scale)
        self.core.flush(0.0)
        self.counters = {"rate_solves": 0, "events": 0, "stats_rounds": 0, "reroutes": 0,
                         "stalled": 0}
        self._index_links(capacity_scale, delay_scale)
        self.serialize = mtu_bytes * 8.0 / self.caps   # one packet's time on each link
        self._make_flows(seed, five_tuples or {})
        self.resolution = float(resolution)
        self._events = []
        for ev in link_events:
            self._add_link_event(ev)

    # -- the fabric ------------------------------------------------------------------------
    def _index_links(self, scale, delay_scale):
        g = self.g
        self.dpid = {n: g.nodes[n]["dpid"] for n in model.switches(g)}
        self.lid = {}      # (node, node) -> directed link index
        self.ends_of = []  # directed link index -> (node, node)
        caps, delays, self.port_of = [], [], []
        for u, v, d in g.edges(data=True):
            for a, b in ((u, v), (v, u)):
                self.lid[(a, b)] = len(caps)
                self.ends_of.append((a, b))
                caps.append(d["capacity_gbps"] * 1e9 * scale)
                delays.append(0.0 if delay_scale is None else d["delay_us"] * 1e-6 * delay_scale)
                self.port_of.append((a, d["ports"][a]) if not model.is_host(g, a) else None)
        self.caps = np.array(caps)
        self.live_caps = self.caps.copy()
        self.delay = np.array(delays)
        self.up = np.ones(len(caps), dtype=bool)
        self.link_bytes = np.zeros(len(caps))
        self.link_rate = np.zeros(len(caps))
        self.switch_ports = {}   # dpid -> [(port, lid)] of links it transmits on
        for lid, at in enumerate(self.port_of):
            if at is not None:
                self.switch_ports.setdefault(self.dpid[at[0]], []).append((at[1], lid))
        self.sw_lid = {(self.dpid[a], self.dpid[b]): i for (a, b), i in self.lid.items()
                       if a in self.dpid and b in self.dpid}

    def _make_flows(self, seed, given):
        g, flows = self.g, self.schedule.flows
        rng = random.Random(seed)
        used = {}
        at = {}
        for h in model.hosts(g):
            sw, _ = model.host_switch(g, h)
            at[h] = (g.nodes[h]["ip"], self.dpid[sw], self.lid[(h, sw)], self.lid[(sw, h)])
        self.keys, self.ends = [], []
        for f in flows:
            taken = used.setdefault(f.src, set())
            (src_ip, s, up, _), (dst_ip, d, _, down) = at[f.src], at[f.dst]
            if f.id in given:
                key = FlowKey.of(given[f.id])
                if (key.ipv4_src, key.ipv4_dst) != (src_ip, dst_ip):
                    raise TwinError(f"flow {f.id!r}: connection {list(key)} is not between "
                                    f"{f.src} and {f.dst}")
                taken.add(key.tp_src)
            else:
                sport = rng.randint(*EPHEMERAL_PORTS)
                while sport in taken:
                    sport = rng.randint(*EPHEMERAL_PORTS)
                taken.add(sport)
                key = FlowKey(src_ip, dst_ip, IP_PROTO_TCP, sport, AGENT_PORT)
            self.keys.append(key)
            self.ends.append((s, d, up, down))
        ip_int = {ip: int(ipaddress.IPv4Address(ip)) for ip, *_ in at.values()}
        self.hash = ovs_dp_hash_tcp4([ip_int[k.ipv4_src] for k in self.keys],
                                     [ip_int[k.ipv4_dst] for k in self.keys],
                                     [k.tp_src for k in self.keys],
                                     [k.tp_dst for k in self.keys]).tolist()
        for i, k in enumerate(self.keys):
            if k.ip_proto != IP_PROTO_TCP:   # a replayed connection of another protocol
                self.hash[i] = ovs_dp_hash(dict(k.match()))
        self.index = {f.id: i for i, f in enumerate(flows)}
        self.mac = {h: g.nodes[h]["mac"] for h in model.hosts(g)}
        self.key_index = {k: i for i, k in enumerate(self.keys)}

    def _latency(self, row):
        """From a flow's last byte leaving to its arrival: the propagation delay of its path
        and the store-and-forward of its last packet at every link but the one whose
        transmission the fluid rate already counts (the slowest)."""
        links = row[row >= 0]
        ser = self.serialize[links]
        return float(self.delay[links].sum() + ser.sum() - ser.max())

    def _add_link_event(self, ev):
        try:
            u, v = ev["link"]
            at, up = float(ev["at_s"]), bool(ev.get("up", False))
        except (KeyError, TypeError, ValueError):
            raise TwinError(f"link event {ev!r}: needs at_s and link [u, v]") from None
        if (u, v) not in self.lid:
            raise TwinError(f"link event {ev!r}: no link {u}-{v} in {self.g.graph['name']}")
        heapq.heappush(self._events, (at, len(self._events), "phys", (u, v, up)))

    # -- forwarding ------------------------------------------------------------------------
    def _pins(self):
        """The policy's own pins (collective intents): by 5-tuple and by host pair."""
        by_key, by_pair = {}, {}
        for fields, _prio, path, _src, _dst in self.core.pins():
            f = dict(fields)
            if "tcp_src" in f:
                by_key[FlowKey(f["ipv4_src"], f["ipv4_dst"], IP_PROTO_TCP, f["tcp_src"],
                               f["tcp_dst"])] = path
            else:
                by_pair[(f["ipv4_src"], f["ipv4_dst"])] = path
        return by_key, by_pair

    def _live(self, a, b):
        lid = self.sw_lid.get((a, b))
        return lid is not None and self.up[lid]

    def _next_hop(self, s, d, fi, came_from):
        """Where switch ``s`` sends a packet of flow ``fi`` toward switch ``d``: its SELECT
        bucket, then the FAST_FAILOVER rotation; None if nothing live leads on."""
        hops = self.core.path_service.hops.get(d, {}).get(s)
        if not hops:
            return None
        core = self.core
        n_hops = len(hops)
        b = 0
        if core.render.multipath and n_hops > 1:
            wmap = core.render.weights.get((s, d))
            weights = tuple(wmap.get(n, 1) for n in hops) if wmap else (1,) * n_hops
            b = self._bucket(weights, fi)
            if b is None:
                return None
        order = [hops[(b + j) % n_hops] for j in range(n_hops)] if (
            self.fast_failover) else [hops[b]]
        for n in order:
            if n != came_from and self._live(s, n):
                return n
        if self.fast_failover and n_hops == 1:
            return self._detour(s, d, hops[0], came_from)
        return None

    def _bucket(self, weights, fi):
        """The SELECT bucket Open vSwitch picks for flow ``fi`` (controllers/tables.py)."""
        return select_index(weights, self.hash[fi],
                            lambda: ovs_symmetric_l4_hash(dict(self.keys[fi].match())))

    def _detour(self, s, d, primary, came_from):
        """The FAST_FAILOVER alternate of a switch with one next hop: a live neighbour that
        reaches ``d`` without coming back (the renderer's choice order)."""
        hops = self.core.path_service.hops.get(d, {})
        nbrs = sorted(n for n in self.core.topo.adj[s] if n != primary)
        if not nbrs:
            return None
        start = d % len(nbrs)
        for a in nbrs[start:] + nbrs[:start]:
            if a == came_from or not self._live(s, a):
                continue
            if a == d or any(m != s and self._live(a, m) for m in hops.get(a, ())):
                return a
        return None

    def _route(self, fi, pins):
        """The directed links flow ``fi`` crosses now, or None if no live path leads on."""
        key = self.keys[fi]
        s, d, up_lid, down_lid = self.ends[fi]
        links = [up_lid]
        path = pins[0].get(key) or pins[1].get((key.ipv4_src, key.ipv4_dst))
        if path is None:
            flow = self.core.flows.get(key)
            path = None if flow is None else flow.path
        prev = None
        if path is not None and path[0] == s:
            for a, b in zip(path, path[1:]):
                if not self._live(a, b):
                    break
                links.append(self.sw_lid[(a, b)])
                prev, s = a, b
        for _ in range(MAX_WALK):
            if s == d:
                links.append(down_lid)
                return links
            n = self._next_hop(s, d, fi, prev)
            if n is None:
                return None
            links.append(self.sw_lid[(s, n)])
            prev, s = s, n
        return None

    def flow_path(self, flow_id):
        """The nodes (names of the model) the flow ``flow_id`` would cross now, host to
        host, or None if no live path leads on."""
        links = self._route(self.index[flow_id], self._pins())
        if links is None:
            return None
        return tuple([self.ends_of[links[0]][0]] + [self.ends_of[lid][1] for lid in links])

    def setup(self):
        """The connections before the clock: learning policies learn every flow (and its
        ACK direction), ``collective`` announces them all, as the agents and the runner do
        (one intent, or one per job in job order: traffic/jobs.py ``intent_requests``); returns the
        number of flows the core learned."""
        core, flows, mac = self.core, self.schedule.flows, self.mac
        if core.learns_flows:
            for fi, f in enumerate(flows):
                key = self.keys[fi]
                core.flow_seen(key, mac[f.src], mac[f.dst], 0, 0.0)
                core.flow_seen(key.reverse(), mac[f.dst], mac[f.src], 0, 0.0)
        if core.policy == "collective":
            tuples = {f.id: self.keys[fi] for fi, f in enumerate(flows)}
            for intent_id, body in jobs.intent_requests(self.schedule, "run", tuples):
                core.submit_intent(intent_id, body, 0.0)
        core.flush(0.0)
        return core.counters.get("flows_learned", 0)

    # -- the run ---------------------------------------------------------------------------
    def run(self):
        """Execute the schedule; returns ``(records, info)``: one flow record per started
        flow (traffic/metrics.py's format) and what the run counted."""
        t_wall = time.monotonic()
        core, sched = self.core, self.schedule
        flows = sched.flows
        n = len(flows)
        mac = self.mac
        learned_at_setup = self.setup()
        pins, pins_version = self._pins(), core.pins_version

        children = [[] for _ in range(n)]
        waiting = [0] * n
        dep_end = [0.0] * n
        for fi, f in enumerate(flows):
            waiting[fi] = len(f.deps)
            for dep in f.deps:
                children[self.index[dep]].append(fi)
        starts = [(f.start_time(()), fi) for fi, f in enumerate(flows) if not f.deps]
        heapq.heapify(starts)
        arrivals = []                       # (time received, flow index)
        start_s, end_s = [None] * n, [None] * n
        sent_final = self._final_sent = [0.0] * n
        act = _Flows()
        stalled = set()                     # flow indices active with no live path
        t = 0.0
        next_stats = self.stats_interval_s
        dirty = True
        timed_out = False

        def reroute_all():
            nonlocal dirty
            for fi in list(act.ids):
                links = self._route(fi, pins)
                if links is None:
                    if fi not in stalled:
                        stalled.add(fi)
                        act.set_links(fi, ())
                        dirty = True
                        self.counters["stalled"] += 1
                    continue
                stalled.discard(fi)
                if tuple(links) != act.current(fi):
                    act.set_links(fi, links)
                    self.counters["reroutes"] += 1
                    dirty = True

        def after_core(now):
            nonlocal pins, pins_version
            core.flush(now)
            if core.pins_version != pins_version:
                pins, pins_version = self._pins(), core.pins_version
            reroute_all()

        while True:
            if dirty:
                act.rate = max_min_rates(act.links, self.live_caps, act.alive)
                rows = act.links
                mask = rows >= 0
                self.link_rate = np.bincount(rows[mask], weights=np.broadcast_to(
                    act.rate[:, None], rows.shape)[mask], minlength=len(self.caps))
                self.counters["rate_solves"] += 1
                dirty = False
            moving = act.rate > 0
            t_done = t + float(np.min(act.left[moving] / (act.rate[moving] / 8.0))) if (
                moving.any()) else np.inf
            t_next = min(t_done, starts[0][0] if starts else np.inf,
                         arrivals[0][0] if arrivals else np.inf,
                         self._events[0][0] if self._events else np.inf)
            if not np.isfinite(t_next):
                break                     # nothing can happen any more
            if len(act) or self._events or core.learns_flows:
                t_next = min(t_next, next_stats)
            if self.max_time_s is not None and t_next > self.max_time_s:
                timed_out = True
                self._advance(act, self.max_time_s - t)
                t = self.max_time_s
                break
            self._advance(act, t_next - t)
            t = t_next
            self.counters["events"] += 1
            # Flows whose last byte left: received after their path's propagation delay.
            done = np.flatnonzero(act.alive & (
                (act.left <= DONE_FRACTION * (act.left + act.sent) + 1e-9)
                | (act.left * 8.0 <= act.rate * (self.resolution * (t - act.t0)))))
            if len(done):
                for r in done:
                    fi = int(act.fid[r])
                    sent_final[fi] = float(act.sent[r] + act.left[r])
                    heapq.heappush(arrivals, (t + self._latency(act.links[r]), fi))
                    stalled.discard(fi)
                act.remove(done)
                dirty = True
            while arrivals and arrivals[0][0] <= t:
                _, fi = heapq.heappop(arrivals)
                end_s[fi] = t
                for c in children[fi]:
                    waiting[c] -= 1
                    dep_end[c] = max(dep_end[c], t)
                    if waiting[c] == 0:
                        heapq.heappush(starts, (max(flows[c].start_s,
                                                    dep_end[c] + flows[c].delay_s), c))
            while starts and starts[0][0] <= t:
                _, fi = heapq.heappop(starts)
                start_s[fi] = t
                f = flows[fi]
                if core.learns_flows and self.keys[fi] not in core.flows:
                    # Forgotten while idle: its first packet is a packet-in again.
                    core.flow_seen(self.keys[fi], mac[f.src], mac[f.dst], 0, t)
                    core.flow_seen(self.keys[fi].reverse(), mac[f.dst], mac[f.src], 0, t)
                    # Placing one flow pins only it; the others move only if the policy's
                    # own pins changed.
                    core.flush(t)
                    if core.pins_version != pins_version:
                        after_core(t)
                links = self._route(fi, pins)
                act.add(fi, links or (), f.bytes, t)
                if links is None:
                    stalled.add(fi)
                    self.counters["stalled"] += 1
                dirty = True
            while self._events and self._events[0][0] <= t:
                _, _, kind, arg = heapq.heappop(self._events)
                self._link_event(kind, arg, t)
                if kind == "phys":
                    reroute_all()
                else:
                    after_core(t)
                dirty = True
            if t >= next_stats:
                self._stats_round(act, t)
                core.adapt(t)
                after_core(t)
                next_stats = t + self.stats_interval_s
                self.counters["stats_rounds"] += 1
        for fi, r in act.row.items():
            sent_final[fi] = float(act.sent[r])
        records = []
        for fi, f in enumerate(flows):
            if start_s[fi] is None:
                continue
            done = end_s[fi] is not None
            records.append({"id": f.id, "src": f.src, "dst": f.dst, "bytes": f.bytes,
                            "start_s": start_s[fi], "end_s": end_s[fi],
                            "bytes_received": f.bytes if done else int(sent_final[fi])})
        info = dict(self.counters, timed_out=timed_out, simulated_s=t,
                    wall_s=round(time.monotonic() - t_wall, 3),
                    flows_learned_at_setup=learned_at_setup,
                    stalled_at_end=len(stalled))
        return records, info

    def _advance(self, act, dt):
        if dt <= 0 or not len(act):
            return
        moved = act.rate * dt / 8.0
        moved = np.minimum(moved, act.left)
        act.left -= moved
        act.sent += moved
        self.link_bytes += self.link_rate * (dt / 8.0)

    def _link_event(self, kind, arg, t):
        core = self.core
        u, v, up = arg
        lids = (self.lid[(u, v)], self.lid[(v, u)])
        if kind == "phys":
            for lid in lids:
                self.up[lid] = up
                self.live_caps[lid] = self.caps[lid] if up else 0.0
            heapq.heappush(self._events, (t + self.detect_s, len(self._events) + 1_000_000,
                                          "detect", arg))
            return
        for a, b in ((u, v), (v, u)):
            if a in self.dpid:
                core.port_status(self.dpid[a], self.g.edges[u, v]["ports"][a], up, t)
        if up and u in self.dpid and v in self.dpid:
            pu, pv = self.g.edges[u, v]["ports"][u], self.g.edges[u, v]["ports"][v]
            core.link_seen(self.dpid[u], pu, self.dpid[v], pv, t)
            core.link_seen(self.dpid[v], pv, self.dpid[u], pu, t)

    def _stats_round(self, act, t):
        """What the app's statistics round gives the core: every switch's port transmit
        counters, and the byte counter of every learned flow."""
        core = self.core
        total = self.link_bytes
        for dpid, ports in self.switch_ports.items():
            core.port_stats(dpid, {p: int(total[lid]) for p, lid in ports}, t)
        if not core.learns_flows:
            return
        sent = {fi: float(act.sent[r]) for fi, r in act.row.items()}
        flows = self.schedule.flows
        for key in list(core.flows):
            fi = self.key_index.get(key)
            reverse = fi is None
            if reverse:
                fi = self.key_index.get(key.reverse())
                if fi is None:
                    continue
            if fi in sent:
                b = sent[fi]
            else:
                b = self._final_sent[fi]
            f = flows[fi]
            if reverse:
                core.flow_seen(key, self.mac[f.dst], self.mac[f.src],
                               int(b * ACK_BYTES_PER_BYTE), t)
            else:
                core.flow_seen(key, self.mac[f.src], self.mac[f.dst], int(b), t)
