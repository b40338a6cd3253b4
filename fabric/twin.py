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
  With ``epoch`` (an approximation for millions of flows) they are recomputed only once
  that fraction of the flows in flight have started or ended, and whenever the policy or
  the links changed; a flow starting in between takes what its links have free.
- **Forwarding**, per flow, from the sender's switch: a pin of the policy (a collective's
  intent, by 5-tuple or host pair), else the learned flow's pinned path, else the destination
  switch's SELECT group: the bucket Open vSwitch 3.1 would pick for the flow's 5-tuple
  (controllers/tables.py: the dp_hash of the symmetric L3/L4 hash, the Webster slot table of
  the bucket weights, the highest-random-weight fallback), so hash collisions happen as in the
  emulation. Source ports are drawn from the run's seed (traffic/ports.py: uniform in
  Linux's ephemeral range, distinct per host), the ports the emulation's agents bind to
  for the same schedule and seed; the destination port is the agents' port.
- **Optical circuits** (fabric/optical.py): a ``reconfiguration`` moves the circuits of an OCS
  fabric during the run, make-before-break: at ``at_s`` the core drains the circuits that
  change (routes leave them), they go dark (carry nothing) for ``dark_s``, then the core
  commits the new circuits as one topology change and routes onto them. With
  ``circuit_phases`` the circuits follow the schedule's phases instead: the event loop stops
  when the arrivals of an instant have received a phase's last flow (before that instant's
  starts), and the circuits move to the next phase's plan then, in one or two such steps
  (two when one would cut a block pair of that phase off: fabric/optical.py
  ``staged_reconfigure``); the times are the run's, not fixed in advance.
- **Failures**: a link that goes down stops carrying at once; each switch's FAST_FAILOVER
  groups send a flow to the next live bucket of the rotation the renderer installs (the next
  equal-cost hop; for a single next hop, the detour through a neighbour), with no controller
  involved. ``detect_s`` later the core gets the port-status events and reroutes as it does in
  the emulation. A flow with no live path waits, at rate 0.
- **Time**: a flow starts by the schedule's own rule (``Flow.start_time``); it has been received
  once its last byte has crossed its path's propagation delay (fiber length, 5 us/km, when the
  spec emulates delay) and its last packet has been stored and forwarded at every hop (the
  MTU at each link's rate: milliseconds per hop at the emulation's rates, nanoseconds at
  400 Gbit/s). Like the agents, every flow is connected before the clock starts:
  ``collective`` has announced every flow at time 0, and learning policies have learned
  every flow no pin covers (a flow an intent pins matches its pin above the rule that
  sends new flows to the controller; the emulation, whose runner announces only once its
  connections are open, also learns those, and the intent leaves them unpinned).
- **Units**: ``twin.timebase: nominal`` (the default) runs the fabric's own rates and the
  schedule's own seconds; ``emulated`` runs the rates and times the emulation would run for
  the spec (``emulation.host_link_mbps``), so controller periods relate to flow durations as
  in the emulation; this is what the twin-against-emulation benchmark uses.

Scale
-----
The twin reads the schedule's columns (traffic/schedule.py ``Columns``), never its Flow
objects, and keeps its own state as arrays: the flows' hosts, ports and hashes, the active
flows as reusable rows, heaps of starts and arrivals. Its event loop (:func:`_loop`) walks
the SELECT groups on next-hop and slot tables built from the core, and runs compiled with
numba from :data:`COMPILED_FLOWS` flows, as the same Python below; it hands over to Python
only for what needs the core: statistics rounds, link events, a flow the core forgot,
routes through a failed fabric or a highest-random-weight group. Records come back as
arrays (:class:`~traffic.metrics.FlowRecords`).

Not modelled: packet loss and its recovery, queueing delay (beyond one packet per hop), TCP slow
start and congestion window dynamics (a flow takes its fair share from its first byte), ACK
traffic (the reverse direction carries nothing; the core sees ACK-sized counters for it),
connection set-up (connections exist before the clock, as in the emulation) and controller
processing time.
A short flow is therefore approximated as ``bytes / fair share + propagation delay``, which
underestimates what TCP takes for flows of a few round trips.
"""

import bisect
import heapq
import ipaddress
import math
import time

import numpy as np

from controllers.core import RoutingCore, link_capacities
from controllers.intents import IntentColumns, index_dtype
from controllers.rules import IP_PROTO_TCP, FlowKey
from controllers.tables import (ovs_dp_hash, ovs_dp_hash_tcp4, ovs_symmetric_l4_hash,
                               select_index, select_slots)
from fabric import model
from traffic import jobs
from traffic.metrics import FlowRecords, fabric_codes
from traffic.ports import PortError, source_ports
from traffic.schedule import ScheduleError

AGENT_PORT = 5001                  # traffic/agent.py's PORT (not imported: it opens sockets)
# Bytes of ACKs per data byte, reported as the reverse direction's counter (one 66-byte ACK
# per two segments of a 9000-byte MTU).
ACK_BYTES_PER_BYTE = 66 / (2 * (9000 - 52))
# A flow is done when what is left is below this fraction of its size (float residue).
DONE_FRACTION = 1e-9
TIMEBASES = ("nominal", "emulated")
MAX_WALK = 64                      # switches a forwarding walk may visit before it is a loop
HASH_CHUNK = 1 << 22               # flows hashed at a time


def _padded(rows):
    """Rows of ints as one int32 array, padded with -1 (one row of -1 for none)."""
    out = np.full((max(len(rows), 1), max((len(r) for r in rows), default=1)), -1,
                  dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _search(ordered, queries):
    """``np.searchsorted(ordered, queries)`` with many queries sorted first: a binary search
    per query in a large array misses the cache at every step (12 million random queries in
    12 million values: 18.7 s; sorted: 0.4 s, plus 1.6 s to sort them)."""
    queries = np.asarray(queries)
    if len(queries) < 1 << 16 or len(ordered) < 1 << 16:
        return np.searchsorted(ordered, queries)
    order = np.argsort(queries)
    out = np.empty(len(queries), dtype=np.int64)
    out[order] = np.searchsorted(ordered, queries[order])
    return out


class _PinPaths:
    """The switch paths of every intent's pins as one numbering (see :meth:`Twin._pins`):
    path ``p`` is path ``p - offsets[i]`` of ``parts[i]`` (controllers/intents.py
    ``SwitchPaths``), i the last part starting at or before p."""

    def __init__(self, parts):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(x) for x in self.parts])[:-1].tolist()

    def __len__(self):
        return sum(len(x) for x in self.parts)

    def part_of(self, p):
        i = bisect.bisect_right(self.offsets, p) - 1
        return i, p - self.offsets[i]

    def __getitem__(self, p):
        i, q = self.part_of(int(p))
        return self.parts[i][q]


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
    global _FILL, _sift_down, _progressive, _index_compact, _count_on
    if _FILL is None:
        import numba
        jit = numba.njit(cache=True)
        _sift_down = jit(_sift_down)
        _progressive = jit(_progressive)
        _count_on = jit(_count_on)
        _index_compact = jit(_index_compact)
        _FILL = jit(_fill)
    return _FILL


def _fill_levels(links, caps, active):
    """The same progressive filling in numpy, one fill level per step: every unfrozen flow
    grows by the smallest remaining share, and the flows of the links that fill freeze. A
    link no unfrozen flow crosses has infinite room (its share is then infinite, never the
    smallest), so each step is a few operations over all links and the unfrozen flows."""
    n_links = len(caps)
    rate = np.zeros(len(links))
    todo = np.flatnonzero((links >= 0).any(axis=1) & active)
    if not len(todo):
        return rate
    # Padding points at an extra slot that never fills.
    pad = links[todo]
    pad = np.where(pad >= 0, pad, n_links)
    cnt = np.bincount(pad.ravel(), minlength=n_links + 1)[:n_links].astype(np.float64)
    rem = np.array(caps, dtype=np.float64)
    rem[cnt == 0] = np.inf
    full = np.zeros(n_links + 1, dtype=np.bool_)
    level = 0.0
    tol = 1e-9 * max(1.0, float(caps.max(initial=1.0)))
    while len(todo):
        share = rem / cnt
        inc = max(0.0, float(share.min()))
        level += inc
        rem -= inc * cnt
        filled = rem <= tol
        if not filled.any():  # rounding: freeze the tightest links
            filled = share <= inc * (1 + 1e-12) + tol
        full[:n_links] = filled
        hit = full[pad].any(axis=1)
        rate[todo[hit]] = level
        cnt -= np.bincount(pad[hit].ravel(), minlength=n_links + 1)[:n_links]
        rem[cnt == 0] = np.inf
        keep = ~hit
        pad, todo = pad[keep], todo[keep]
    return rate


# The solver's heap of links by share is 4-ary: half as deep as a binary one, and its four
# children sit side by side in memory (a fifth less time per solve at k=16). Each entry is
# its share and its link (as a float) side by side, so a level of the heap is one run of
# memory, not two (a fifth less time per solve again at k=24).
def _sift_down(heap, size, i):
    key, val = heap[2 * i], heap[2 * i + 1]
    while True:
        first = 4 * i + 1
        if first >= size:
            break
        child, child_key = first, heap[2 * first]
        for j in range(first + 1, min(first + 4, size)):
            if heap[2 * j] < child_key:
                child, child_key = j, heap[2 * j]
        if key <= child_key:
            break
        heap[2 * i], heap[2 * i + 1] = child_key, heap[2 * child + 1]
        i = child
    heap[2 * i], heap[2 * i + 1] = key, val


def _fill(links, caps, active):
    """Progressive filling, one bottleneck link at a time: the link whose remaining capacity
    per unfrozen flow is smallest fixes its flows at that share, which is taken off the other
    links they cross. A link's share only grows as flows freeze elsewhere (each froze at the
    smallest share), so a heap whose stale entries sink again when they reach the top finds every
    bottleneck in order: O(flows x width x log links) per solve. Most links never fix a
    flow (at k=16, 173 bottlenecks among 3,888 links): they empty as their flows freeze
    elsewhere, and the heap drops them all at once (filter and heapify, linear) whenever
    they are half of it, instead of popping each (40% of a solve's time at k=16)."""
    n, width = links.shape
    n_links = caps.shape[0]
    rate = np.zeros(n)
    cnt = np.zeros(n_links, np.int32)
    start = np.empty(n_links, np.int64)
    on = np.empty(max(1, n * width), np.int32)   # room for every link of every flow
    _index_compact(links, active, cnt, start, on)
    _progressive(links, caps, active, cnt, start, on, rate, np.zeros(0))
    return rate


def _progressive(links, caps, active, n_on, start, on, rate, used):
    """The progressive filling of :func:`_fill` into ``rate``, on the flows of every link
    as indexed: link ``lk``'s flows are ``on[start[lk]:start[lk] + n_on[lk]]``; and, unless
    ``used`` is empty, the rate the flows use on every link into it (what the filling left
    of each link's capacity, taken off it: no second pass over the flows' links)."""
    n, width = links.shape
    n_links = caps.shape[0]
    rem = caps.copy()
    cnt = n_on.copy()   # unfrozen flows per link
    unfrozen = 0
    for f in range(n):
        rate[f] = 0.0
        if active[f]:
            for w in range(width):
                if links[f, w] >= 0:
                    unfrozen += 1
                    break
    frozen = ~active
    # Every link enters once, and a stale entry goes back down from the top: the heap never
    # holds more than the links.
    heap = np.empty(2 * (n_links + 1))
    size = 0
    for lk in range(n_links):
        if cnt[lk] > 0:
            heap[2 * size], heap[2 * size + 1] = rem[lk] / cnt[lk], lk
            size += 1
    for i in range((size - 2) // 4, -1, -1):   # heapify: a third of the time of pushing each
        _sift_down(heap, size, i)
    level = 0.0
    emptied = 0   # links in the heap whose flows are all frozen
    while size > 0 and unfrozen > 0:   # the links left once every flow is frozen fix nothing
        if 2 * emptied > size:
            kept = 0
            for i in range(size):
                if cnt[int(heap[2 * i + 1])] > 0:
                    heap[2 * kept], heap[2 * kept + 1] = heap[2 * i], heap[2 * i + 1]
                    kept += 1
            size, emptied = kept, 0
            for i in range((size - 2) // 4, -1, -1):
                _sift_down(heap, size, i)
            continue
        share, lk = heap[0], int(heap[1])
        cur = rem[lk] / cnt[lk] if cnt[lk] > 0 else 0.0
        if cnt[lk] > 0 and cur > share * (1.0 + 1e-12) + 1e-300:
            heap[0] = cur   # stale (its share rose as flows froze elsewhere): sift it down
            _sift_down(heap, size, 0)
            continue
        size -= 1
        if size > 0:
            heap[0], heap[1] = heap[2 * size], heap[2 * size + 1]
            _sift_down(heap, size, 0)
        if cnt[lk] == 0:
            emptied -= 1
            continue
        level = max(level, cur)
        for i in range(start[lk], start[lk] + n_on[lk]):
            f = on[i]
            if frozen[f]:
                continue
            frozen[f] = True
            unfrozen -= 1
            rate[f] = level
            for w in range(width):
                m = links[f, w]
                if m >= 0:
                    rem[m] -= level
                    cnt[m] -= 1
                    if cnt[m] == 0 and m != lk:   # every other link of the flow is in the heap
                        emptied += 1
        cnt[lk] = 0
    for lk in range(used.shape[0]):
        used[lk] = caps[lk] - rem[lk]
    return rate




# -- the event loop ---------------------------------------------------------------------------
# What the loop returns to Python for (state ints[0]).
DONE, STOP, TIMED_OUT, PY_START, GROW_ROWS, GROW_HEAPS, GROW_INDEX = range(7)
# The loop's scalar state, in and out: floats and ints (indices below).
F_T, F_NEXT_STATS, F_NEXT_EVENT, F_MAX_TIME, F_RESOLUTION, F_EPOCH = range(6)
(I_STATUS, I_PHASE, I_DIRTY, I_FREE, I_STARTS, I_ARRIVALS, I_ACTIVE, I_EVENTS, I_SOLVES,
 I_ALL_UP, I_FAST_FAILOVER, I_MULTIPATH, I_STATS_ALWAYS, I_MAX_CHILDREN, I_STALLED, I_CHANGES,
 I_PENDING, I_FIN) = range(18)
# A kernel run (compiled) instead of the same loop in Python once a schedule has this many
# flows: below it, loading numba (half a second per process) costs more than it saves.
COMPILED_FLOWS = 2000


def _hpush(ht, hf, size, t, f):
    """Push (t, f) on the heap held in ``ht`` (times) and ``hf`` (flows), ordered by time
    then flow, so ties pop in schedule order; returns the new size."""
    i = size
    ht[i], hf[i] = t, f
    while i > 0:
        p = (i - 1) >> 1
        if ht[p] < ht[i] or (ht[p] == ht[i] and hf[p] <= hf[i]):
            break
        ht[p], ht[i] = ht[i], ht[p]
        hf[p], hf[i] = hf[i], hf[p]
        i = p
    return size + 1


def _hpop(ht, hf, size):
    """Remove the top of the heap; returns the new size."""
    size -= 1
    ht[0], hf[0] = ht[size], hf[size]
    _hsift(ht, hf, size, 0)
    return size


def _hsift(ht, hf, size, i):
    """Sift entry ``i`` down the heap of :func:`_hpush`."""
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and (ht[c + 1] < ht[c] or (ht[c + 1] == ht[c] and hf[c + 1] < hf[c])):
            c += 1
        if ht[i] < ht[c] or (ht[i] == ht[c] and hf[i] <= hf[c]):
            break
        ht[c], ht[i] = ht[i], ht[c]
        hf[c], hf[i] = hf[i], hf[c]
        i = c


def _walk(fi, walk, f_src, f_dst, fhash, ov_row, ov_links, pp, pmap, h_sw, h_up, h_down,
          dcol, nh, nhc, tids, slots, smask, swlid, fast_failover, multipath):
    """The links flow ``fi`` crosses on a fabric whose links are all up, into ``walk``
    (-1 padded): the policy's route if it has one (``ov_row``: a pin's path row in ``pp``
    between the hosts' links, or a whole route in ``ov_links``; see Twin._overrides), else
    the SELECT bucket of its hash at every switch. Returns the number of links, 0 if no path
    leads on, -1 if Python must decide (a highest-random-weight group, a detour)."""
    walk[:] = -1
    r = ov_row[fi] if fi < ov_row.shape[0] else -1
    hs, hd = f_src[fi], f_dst[fi]
    if r >= 0:
        walk[0] = h_up[hs]
        n = 1
        for w in range(pp.shape[1]):
            lk = pmap[pp[r, w]]
            if lk >= 0:
                walk[n] = lk
                n += 1
        walk[n] = h_down[hd]
        return n + 1
    if r <= -2:
        n = 0
        for w in range(ov_links.shape[1]):
            if ov_links[-2 - r, w] >= 0:
                walk[w] = ov_links[-2 - r, w]
                n += 1
        return n
    s, d = h_sw[hs], h_sw[hd]
    walk[0] = h_up[hs]
    n = 1
    c = dcol[d]
    prev = -1
    for _ in range(MAX_WALK):
        if s == d:
            walk[n] = h_down[hd]
            return n + 1
        if c < 0:
            return 0
        cnt = nhc[c, s]
        if cnt == 0:
            return 0
        tid = tids[c, s]
        b = 0
        if multipath and cnt > 1:
            if tid == -1:
                return -1
            b = slots[tid, fhash[fi] & smask[tid]]
        nxt = -1
        for j in range(cnt if fast_failover else 1):
            m = nh[c, s, (b + j) % cnt]
            if m != prev:
                nxt = m
                break
        if nxt < 0:
            return -1 if fast_failover and cnt == 1 else 0
        if n + 1 >= walk.shape[0]:
            return -1
        walk[n] = swlid[s, nxt]
        n += 1
        prev, s = s, nxt
    return 0


def _index_rows(r_links, r_alive, on_cnt, on, on_start, pos):
    """Index the rows on every link: link ``lk``'s ``on_cnt[lk]`` rows are
    ``on[on_start[lk]:on_start[lk] + on_cnt[lk]]``, and ``pos[r, w]`` is where row ``r``
    sits in the list of its ``w``-th link. Returns False (nothing indexed) if a link's list
    would leave less room than a row's width."""
    rows, width = r_links.shape
    cap = on.shape[0] // on_cnt.shape[0]
    _count_on(r_links, r_alive, on_cnt)
    if on_cnt.max() + width > cap:
        return False
    on_cnt[:] = 0
    for r in range(rows):
        if r_alive[r]:
            for w in range(width):
                lk = r_links[r, w]
                if lk >= 0:
                    _index_add(r, w, lk, on_cnt, on, on_start, pos)
    return True


def _count_on(r_links, r_alive, on_cnt):
    """How many live rows cross each link, into ``on_cnt`` (a row crossing a link twice
    counts twice); returns the total."""
    on_cnt[:] = 0
    total = 0
    for r in range(r_links.shape[0]):
        if r_alive[r]:
            for w in range(r_links.shape[1]):
                lk = r_links[r, w]
                if lk >= 0:
                    on_cnt[lk] += 1
                    total += 1
    return total


def _index_add(r, w, lk, on_cnt, on, on_start, pos):
    pos[r, w] = on_cnt[lk]
    on[on_start[lk] + on_cnt[lk]] = r
    on_cnt[lk] += 1


def _index_drop(r, w, lk, on_cnt, on, on_start, pos, r_links):
    """Take row ``r``'s ``w``-th link ``lk`` out of the index: the link's last row takes
    its place."""
    p = pos[r, w]
    last = on_cnt[lk] - 1
    q = on[on_start[lk] + last]
    on[on_start[lk] + p] = q
    for v in range(r_links.shape[1]):
        if r_links[q, v] == lk and pos[q, v] == last:
            pos[q, v] = p
            break
    on_cnt[lk] = last


def _index_compact(r_links, r_alive, on_cnt, on_start, on):
    """Epoch mode's index of the rows on every link, made afresh for each solve, packed
    (link ``lk``'s rows are ``on[on_start[lk]:on_start[lk] + on_cnt[lk]]``): two passes
    over the rows, where keeping the index as rows start and end touched a large array at
    random twice per link of every flow. Returns False (nothing indexed) if ``on`` is too
    small."""
    rows, width = r_links.shape
    if _count_on(r_links, r_alive, on_cnt) > on.shape[0]:
        return False
    at = 0
    for lk in range(on_cnt.shape[0]):
        on_start[lk] = at
        at += on_cnt[lk]
        on_cnt[lk] = 0
    for r in range(rows):
        if r_alive[r]:
            for w in range(width):
                lk = r_links[r, w]
                if lk >= 0:
                    on[on_start[lk] + on_cnt[lk]] = r
                    on_cnt[lk] += 1
    return True


def _solve_plain(links, caps, active, n_on, start, on, rate, used):
    """The rates as :func:`max_min_rates` gives them, into ``rate``, and unless ``used`` is
    empty the rate used on every link: the Python loop's solver, which leaves the index to
    the compiled one."""
    rate[:] = max_min_rates(links, caps, active)
    if len(used):
        crossed = active[:, None] & (links >= 0)
        used[:] = np.bincount(links[crossed], minlength=len(used),
                              weights=np.broadcast_to(rate[:, None], links.shape)[crossed])


def _end_row(r, t, si, free, r_links, r_left, r_rate, r_sent, r_base, r_alive, r_fid,
             sent_final, link_bytes, ldelay, ser, used, on_cnt, on, on_start, pos, ar_t, ar_f,
             indexed):
    """Row ``r``'s last byte left at ``t`` (what is left of it, ``r_left[r]``, counted as
    sent): its flow is received after the propagation delay of its path and the
    store-and-forward of its last packet at every link but the one whose transmission the
    fluid rate already counts (the slowest). The row is freed and its rate given back
    on its links (``used``)."""
    left = r_left[r]
    fi = r_fid[r]
    sent_final[fi] = r_sent[r] + left
    lat, ser_sum, ser_max = 0.0, 0.0, 0.0
    for w in range(r_links.shape[1]):
        lk = r_links[r, w]
        if lk >= 0:
            if indexed:
                _index_drop(r, w, lk, on_cnt, on, on_start, pos, r_links)
            link_bytes[lk] += r_sent[r] + left - r_base[r]
            used[lk] -= r_rate[r]
            lat += ldelay[lk]
            ser_sum += ser[lk]
            ser_max = max(ser_max, ser[lk])
            r_links[r, w] = -1
    si[I_ARRIVALS] = _hpush(ar_t, ar_f, si[I_ARRIVALS], t + lat + ser_sum - ser_max, fi)
    r_alive[r] = False
    r_rate[r] = 0.0
    r_left[r] = 0.0
    r_base[r] = 0.0
    r_fid[r] = -1
    free[si[I_FREE]] = r
    si[I_FREE] += 1
    si[I_ACTIVE] -= 1
    si[I_DIRTY] = 1
    si[I_CHANGES] += 1


def _settle(t, r_alive, r_left, r_rate, r_sent, r_tref):
    """Every row's bytes sent and left as of ``t`` at its rate since ``r_tref`` (epoch
    mode, where rows are advanced only when their rates change or Python looks)."""
    for r in range(r_alive.shape[0]):
        if r_alive[r]:
            moved = min(r_rate[r] * (t - r_tref[r]) / 8.0, r_left[r])
            r_left[r] -= moved
            r_sent[r] += moved
            r_tref[r] = t


def _epoch_solve(t, si, r_links, caps, r_alive, r_left, r_rate, r_sent, r_tref, on_cnt,
                 on_start, on, used, fin_t, fin_r):
    """Epoch mode's full solve at ``t``: rows settled, max-min rates, the rates used on
    every link and the heap of end times made again (nothing to solve with no row).
    Returns False, having changed nothing, if the index of the rows on each link needs
    more room."""
    if si[I_ACTIVE] > 0 and not _index_compact(r_links, r_alive, on_cnt, on_start, on):
        return False
    si[I_FIN] = 0
    si[I_DIRTY] = 0
    si[I_CHANGES] = 0
    si[I_PENDING] = 0
    if si[I_ACTIVE] == 0:
        used[:] = 0.0   # otherwise the solve writes every link's
        return True
    _settle(t, r_alive, r_left, r_rate, r_sent, r_tref)
    _solve(r_links, caps, r_alive, on_cnt, on_start, on, r_rate, used)
    si[I_SOLVES] += 1
    n = 0
    for r in range(r_alive.shape[0]):
        if r_alive[r] and r_rate[r] > 0:
            fin_t[n], fin_r[n] = t + r_left[r] * 8.0 / r_rate[r], r
            n += 1
    for i in range((n - 2) // 2, -1, -1):   # heapify: linear, pushing each is n log n
        _hsift(fin_t, fin_r, n, i)
    si[I_FIN] = n
    return True


def _epoch_rate(r, t, si, r_links, caps, r_left, r_rate, used, fin_t, fin_r):
    """Between epoch mode's solves, a row that started takes what its links have left
    free (0 if one is full: it waits for the next solve)."""
    rate, top = np.inf, 0.0
    for w in range(r_links.shape[1]):
        lk = r_links[r, w]
        if lk >= 0:
            rate = min(rate, caps[lk] - used[lk])
            top = max(top, caps[lk])
    if not rate > 1e-9 * top or rate == np.inf:
        r_rate[r] = 0.0
        return
    r_rate[r] = rate
    for w in range(r_links.shape[1]):
        if r_links[r, w] >= 0:
            used[r_links[r, w]] += rate
    si[I_FIN] = _hpush(fin_t, fin_r, si[I_FIN], t + r_left[r] * 8.0 / rate, r)


def _loop(fs, si, f_src, f_dst, nbytes, floor, delay, cptr, cidx, waiting, start_out,
           end_out, sent_final, fhash, needs_py, ov_row, ov_links, pp, pmap, h_sw, h_up,
           h_down, dcol, nh, nhc, tids, slots, smask, swlid, caps, ldelay, ser, link_bytes,
           r_links, r_left, r_rate, r_sent, r_base, r_t0, r_alive, r_fid, free, st_t,
           st_f, ar_t, ar_f, walk, on_cnt, on, on_start, pos, phase_of, phase_left,
           r_tref, pend, fin_t, fin_r, used):
    """The event loop over the schedule's columns (see Twin.run_columns): runs until it
    must hand over to Python (the status in ``si[I_STATUS]``), its state in ``fs``, ``si``
    and the arrays. Compiled with numba for large runs, run as Python for small ones; the
    helpers it calls are module globals, compiled alongside it. The rows on every link
    (``on_cnt``, ``on``, ``on_start``, ``pos``: :func:`_index_rows`) are indexed on entry,
    as Python may have moved rows, then kept as rows start and finish, so that a rate
    solve does not index the links' flows again (a third of a solve at k=16). With
    ``phase_of`` (the phase of every flow; empty if the run has none), ``phase_left`` counts
    the flows of each phase not yet received, and the loop stops (``STOP``) once the
    arrivals of an instant have emptied a phase, before that instant's starts.

    With ``fs[F_EPOCH]`` > 0 (epoch mode) the rates are solved again only once that
    fraction of the flows in flight have started or ended since the last solve (and on
    every entry after Python, which may have moved flows); in between, a flow that starts
    takes the capacity its links have left (``used``: the rates on each link), one that
    ends leaves its share unused, and rows advance only when solved or handed to Python
    (``r_tref``: the time a row's bytes left stand at), their ends on a heap (``fin_t``,
    ``fin_r``), so an event costs O(log rows) instead of O(rows)."""
    t = fs[F_T]
    epoch = fs[F_EPOCH]
    width = r_links.shape[1]
    cap = on.shape[0] // on_cnt.shape[0]
    # Epoch mode indexes the rows afresh at each solve (the first on entry); otherwise
    # the index is kept as rows start and end.
    if epoch <= 0 and not _index_rows(r_links, r_alive, on_cnt, on, on_start, pos):
        si[I_STATUS] = GROW_INDEX
        return
    force = True   # epoch mode: solve on entry if anything changed
    handed = False
    while True:
        if si[I_PHASE] == 0:
            if (si[I_ARRIVALS] + si[I_ACTIVE] > ar_t.shape[0]
                    or si[I_STARTS] + (si[I_ARRIVALS] + si[I_ACTIVE]) * si[I_MAX_CHILDREN]
                    > st_t.shape[0]):
                si[I_STATUS] = GROW_HEAPS
                break
            t_next = np.inf
            if epoch > 0:
                if si[I_DIRTY] and (force or si[I_CHANGES] >= epoch * si[I_ACTIVE]):
                    if not _epoch_solve(t, si, r_links, caps, r_alive, r_left, r_rate,
                                        r_sent, r_tref, on_cnt, on_start, on, used, fin_t,
                                        fin_r):
                        si[I_STATUS] = GROW_INDEX
                        break
                    force = False
                for p in range(si[I_PENDING]):
                    _epoch_rate(pend[p], t, si, r_links, caps, r_left, r_rate, used,
                                fin_t, fin_r)
                si[I_PENDING] = 0
                if si[I_FIN] > 0:
                    t_next = fin_t[0]
            else:
                if si[I_DIRTY]:
                    _solve(r_links, caps, r_alive, on_cnt, on_start, on, r_rate, used[:0])
                    si[I_SOLVES] += 1
                    si[I_DIRTY] = 0
                for r in range(r_rate.shape[0]):
                    if r_alive[r] and r_rate[r] > 0:
                        td = t + r_left[r] / (r_rate[r] / 8.0)
                        if td < t_next:
                            t_next = td
            if si[I_STARTS] > 0 and st_t[0] < t_next:
                t_next = st_t[0]
            if si[I_ARRIVALS] > 0 and ar_t[0] < t_next:
                t_next = ar_t[0]
            if fs[F_NEXT_EVENT] < t_next:
                t_next = fs[F_NEXT_EVENT]
            if not t_next < np.inf:
                if epoch > 0 and si[I_DIRTY] and si[I_ACTIVE] > 0:
                    force = True   # only flows waiting for a solve are left
                    continue
                si[I_STATUS] = DONE
                break
            if (si[I_ACTIVE] > 0 or si[I_STATS_ALWAYS]) and fs[F_NEXT_STATS] < t_next:
                t_next = fs[F_NEXT_STATS]
            timed_out = t_next > fs[F_MAX_TIME]
            if timed_out:
                t_next = fs[F_MAX_TIME]
            dt = t_next - t
            t = t_next
            if epoch > 0:
                while not timed_out and si[I_FIN] > 0 and fin_t[0] <= t:
                    r = fin_r[0]
                    si[I_FIN] = _hpop(fin_t, fin_r, si[I_FIN])
                    _end_row(r, t, si, free, r_links, r_left, r_rate, r_sent, r_base,
                             r_alive, r_fid, sent_final, link_bytes, ldelay, ser, used,
                             on_cnt, on, on_start, pos, ar_t, ar_f, False)
            else:
                for r in range(r_rate.shape[0]):
                    if not r_alive[r]:
                        continue
                    if dt > 0:
                        moved = min(r_rate[r] * dt / 8.0, r_left[r])
                        r_left[r] -= moved
                        r_sent[r] += moved
                    if timed_out:
                        continue
                    left = r_left[r]
                    if (left <= DONE_FRACTION * (left + r_sent[r]) + 1e-9
                            or left * 8.0 <= r_rate[r] * (fs[F_RESOLUTION] * (t - r_t0[r]))):
                        _end_row(r, t, si, free, r_links, r_left, r_rate, r_sent, r_base,
                                 r_alive, r_fid, sent_final, link_bytes, ldelay, ser, used,
                                 on_cnt, on, on_start, pos, ar_t, ar_f, True)
            if timed_out:
                si[I_STATUS] = TIMED_OUT
                break
            si[I_EVENTS] += 1
            phase_ended = False
            while si[I_ARRIVALS] > 0 and ar_t[0] <= t:
                fi = ar_f[0]
                si[I_ARRIVALS] = _hpop(ar_t, ar_f, si[I_ARRIVALS])
                end_out[fi] = t
                if phase_of.shape[0] > 0:
                    phase_left[phase_of[fi]] -= 1
                    if phase_left[phase_of[fi]] == 0:
                        phase_ended = True
                for k in range(cptr[fi], cptr[fi + 1]):
                    c = cidx[k]
                    waiting[c] -= 1
                    if waiting[c] == 0:
                        # Arrivals come in time order: this one is its last dependency.
                        si[I_STARTS] = _hpush(st_t, st_f, si[I_STARTS],
                                             max(floor[c], t + delay[c]), c)
            si[I_PHASE] = 6
            if phase_ended:
                si[I_STATUS] = STOP
                break
        while si[I_STARTS] > 0 and st_t[0] <= t:
            fi = st_f[0]
            n = _walk(fi, walk, f_src, f_dst, fhash, ov_row, ov_links, pp, pmap, h_sw,
                      h_up, h_down, dcol, nh, nhc, tids, slots, smask, swlid,
                      si[I_FAST_FAILOVER], si[I_MULTIPATH])
            status = DONE   # none: it starts here
            if needs_py[fi] or not si[I_ALL_UP] or n <= 0 or n > width:
                status = PY_START
            elif si[I_FREE] == 0:
                status = GROW_ROWS
            elif epoch <= 0:
                for w in range(n):
                    if on_cnt[walk[w]] + width > cap:
                        status = GROW_INDEX
            if status != DONE:
                si[I_STATUS] = status
                handed = True
                break
            si[I_STARTS] = _hpop(st_t, st_f, si[I_STARTS])
            start_out[fi] = t
            si[I_FREE] -= 1
            r = free[si[I_FREE]]
            for w in range(width):
                r_links[r, w] = walk[w]
                if walk[w] >= 0 and epoch <= 0:
                    _index_add(r, w, walk[w], on_cnt, on, on_start, pos)
            r_left[r] = float(nbytes[fi])
            r_rate[r], r_sent[r], r_base[r], r_t0[r], r_tref[r] = 0.0, 0.0, 0.0, t, t
            r_alive[r], r_fid[r] = True, fi
            if epoch > 0:
                pend[si[I_PENDING]] = r
                si[I_PENDING] += 1
            si[I_ACTIVE] += 1
            si[I_DIRTY] = 1
            si[I_CHANGES] += 1
        if handed:   # to Python, mid-way through the starts (I_PHASE stays set)
            break
        si[I_PHASE] = 0
        if t >= fs[F_NEXT_EVENT] or t >= fs[F_NEXT_STATS]:
            si[I_STATUS] = STOP
            break
    fs[F_T] = t
    if epoch > 0:
        _settle(t, r_alive, r_left, r_rate, r_sent, r_tref)



_KERNEL = None
_solve = _solve_plain   # the compiled heap solver on the loop's index once compiled


def _kernel(compiled):
    """The event loop: compiled with numba (once per process, from its on-disk cache after
    the first time; the helpers it calls are compiled first and take the place of their
    Python versions, which compute the same) or as Python."""
    global _KERNEL, _solve, _hpush, _hpop, _hsift, _walk, _index_rows, _index_add, _index_drop
    global _end_row, _settle, _epoch_solve, _epoch_rate
    if not compiled:
        return _loop
    if _KERNEL is None:
        import numba
        jit = numba.njit(cache=True)
        _compiled()
        _solve = _progressive
        _hsift = jit(_hsift)
        _hpush, _hpop, _walk = jit(_hpush), jit(_hpop), jit(_walk)
        _index_add, _index_drop = jit(_index_add), jit(_index_drop)
        _index_rows = jit(_index_rows)
        _end_row, _settle = jit(_end_row), jit(_settle)
        _epoch_solve, _epoch_rate = jit(_epoch_solve), jit(_epoch_rate)
        _KERNEL = jit(_loop)
    return _KERNEL


class _Rows:
    """The active flows as arrays of reusable rows (links crossed, -1 padded; bytes left,
    rate, bytes sent, start; which flow), with a stack of free rows, and room for the
    event loop's index of the rows on each of ``n_links`` links: what the event loop works
    on."""

    def __init__(self, rows=64, width=8, n_links=1):
        self.links = np.full((rows, width), -1, dtype=np.int32)
        self.left = np.zeros(rows)
        self.rate = np.zeros(rows)
        self.sent = np.zeros(rows)
        self.base = np.zeros(rows)   # bytes sent when it took its current links
        self.t0 = np.zeros(rows)
        self.tref = np.zeros(rows)   # epoch mode: when ``left`` and ``sent`` stood
        self.alive = np.zeros(rows, dtype=np.bool_)
        self.fid = np.full(rows, -1, dtype=np.int64)
        self.free = np.arange(rows - 1, -1, -1, dtype=np.int64)
        self.n_free = rows
        # Epoch mode: rows started since the last solve, the heap of the rows' end times.
        self.pend = np.zeros(rows, dtype=np.int64)
        self.fin_t, self.fin_r = np.zeros(rows), np.zeros(rows, dtype=np.int64)
        self.on_cnt = np.zeros(n_links, dtype=np.int32)
        self.pos = np.zeros((rows, width), dtype=np.int32)
        self.grow_index(16)

    def grow_index(self, cap=0):
        """Room for ``cap`` rows per link in the event loop's index (twice as many as now
        if 0); the loop fills it."""
        n_links = len(self.on_cnt)
        cap = cap or 2 * len(self.on) // n_links
        self.on = np.zeros(n_links * cap, dtype=np.int32)
        self.on_start = np.arange(n_links, dtype=np.int64) * cap

    def grow(self, rows=0, width=0):
        """At least ``rows`` rows (twice as many if 0) and ``width`` links per row."""
        old_rows, old_width = self.links.shape
        rows = max(rows or 2 * old_rows, old_rows)
        width = max(width, old_width)
        links = np.full((rows, width), -1, dtype=np.int32)
        links[:old_rows, :old_width] = self.links
        self.links = links
        self.pos = np.zeros((rows, width), dtype=np.int32)   # the loop indexes again
        extra = rows - old_rows
        if extra:
            self.left, self.rate, self.sent, self.base, self.t0, self.tref, self.fin_t = (
                np.append(a, np.zeros(extra)) for a in (
                    self.left, self.rate, self.sent, self.base, self.t0, self.tref,
                    self.fin_t))
            self.pend, self.fin_r = (np.append(a, np.zeros(extra, dtype=np.int64))
                                     for a in (self.pend, self.fin_r))
            self.alive = np.append(self.alive, np.zeros(extra, dtype=np.bool_))
            self.fid = np.append(self.fid, np.full(extra, -1, dtype=np.int64))
            free = np.empty(rows, dtype=np.int64)
            free[:self.n_free] = self.free[:self.n_free]
            free[self.n_free:self.n_free + extra] = np.arange(rows - 1, old_rows - 1, -1)
            self.free = free
            self.n_free += extra

    def add(self, fi, links, nbytes, t):
        if self.n_free == 0 or len(links) > self.links.shape[1]:
            self.grow(0 if self.n_free == 0 else len(self.left), len(links))
        self.n_free -= 1
        r = int(self.free[self.n_free])
        self.links[r] = -1
        self.links[r, :len(links)] = links
        self.left[r], self.rate[r], self.sent[r], self.base[r], self.t0[r], self.tref[r] = (
            float(nbytes), 0.0, 0.0, 0.0, t, t)
        self.alive[r], self.fid[r] = True, fi
        return r

    def set_links(self, r, links, link_bytes):
        """Move row ``r`` to ``links``; what it sent on its old links stays counted there
        (``link_bytes``, the port counters of the rows that left their links)."""
        old = self.links[r][self.links[r] >= 0]
        link_bytes[old] += self.sent[r] - self.base[r]
        self.base[r] = self.sent[r]
        if len(links) > self.links.shape[1]:
            self.grow(len(self.left), len(links))
        self.links[r] = -1
        self.links[r, :len(links)] = links

    def port_bytes(self, link_bytes):
        """Bytes sent on every link so far: ``link_bytes`` (rows gone from it) plus what
        the rows on it sent since they took it."""
        total = link_bytes.copy()
        rows = np.flatnonzero(self.alive)
        links = self.links[rows]
        mask = links >= 0
        np.add.at(total, links[mask], np.broadcast_to(
            (self.sent[rows] - self.base[rows])[:, None], links.shape)[mask])
        return total

    def current(self, r):
        row = self.links[r]
        return tuple(int(x) for x in row[row >= 0])


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
        recomputes rates less often; 0 (the default) is exact. Only with ``epoch`` 0: in
        epoch mode ends are exact times on a heap and cost no solve.
    epoch : float
        Solve the rates again only once this fraction of the flows in flight have started or
        ended since the last solve (and whenever the policy or the links changed anything);
        in between, a flow that starts takes the capacity its links have left free (none if
        one is full: it waits for the next solve), and one that ends leaves its share
        unused, so rates are feasible but below max-min until the next solve. 0 (the
        default) solves at every event. An approximation for schedules of millions of
        flows; see the module docstring.
    five_tuples : dict, optional
        ``{flow id: [src ip, dst ip, proto, sport, dport]}`` of the flows' connections (an
        emulation run's ``connections.json``), to replay its hash choices; flows not in it
        get drawn source ports.
    reconfiguration : dict, optional
        ``{"at_s": t, "circuits": {ocs: [(p, q), ...]}, "dark_s": d}``: on an OCS fabric
        (``g`` from fabric/optical.py), move to these circuits at time t, the changed ones
        dark for d seconds of the run (see the module docstring); with ``"pairs": [(block,
        block), ...]``, in two steps (each dark for d) if one would cut such a pair off.
    circuit_phases : dict, optional
        Circuits that follow the schedule's phases (fabric/optical.py ``phase_plans``):
        ``{"phase_of": phase of every flow, "circuits": [plan of each phase], "pairs":
        [block pairs of each phase], "dark_s_per_ms": seconds of the run per ms of OCS
        reconfiguration}``. ``g`` holds phase 0's plan; when every flow of the current phase
        has been received, the circuits move to the plan of the next phase with flows left,
        staged so that its pairs stay connected (see the module docstring).
    """

    def __init__(self, g, schedule, policy="ecmp", capacity_scale=1.0, stats_interval_s=1.0,
                 fast_failover=True, options=None, seed=0, delay_scale=1.0, mtu_bytes=9000,
                 detect_s=0.0,
                 link_events=(), max_time_s=None, resolution=0.0, five_tuples=None,
                 reconfiguration=None, circuit_phases=None, epoch=0.0):
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
        self.capacity_scale = capacity_scale
        self._events = []
        self._wired = self._plan_circuits(reconfiguration, circuit_phases)
        self._index_links(capacity_scale, delay_scale)
        for u, v in self._wired.graph.get("dark_at_start", ()):
            for lid in (self.lid[(u, v)], self.lid[(v, u)]):
                self.up[lid] = False
                self.live_caps[lid] = 0.0
        self.serialize = mtu_bytes * 8.0 / self.caps   # one packet's time on each link
        self._make_flows(seed, five_tuples or {})
        self.resolution = float(resolution)
        self.epoch = float(epoch)
        if not 0.0 <= self.epoch < 1.0:
            raise TwinError(f"epoch: {epoch!r} is not a fraction in [0, 1)")
        for ev in link_events:
            self._add_link_event(ev)

    # -- the fabric ------------------------------------------------------------------------
    def _plan_circuits(self, reconfiguration, circuit_phases):
        """The links the twin indexes (``g``'s, plus every circuit a reconfiguration or a
        phase's plan may add, dark until it commits), and the events of a reconfiguration
        at a fixed time."""
        self.reconfigurations = []   # one entry per move of the circuits, as it starts
        self._circuits_lg, self._moving, self._phases = self.g, False, None
        if reconfiguration is None and circuit_phases is None:
            return self.g
        from fabric import optical
        graphs = []
        if reconfiguration is not None:
            try:
                at, dark = float(reconfiguration["at_s"]), float(reconfiguration["dark_s"])
                steps = optical.staged_reconfigure(self.g, reconfiguration["circuits"],
                                                   reconfiguration.get("pairs", ()))
            except (KeyError, TypeError, ValueError) as e:
                raise TwinError(f"reconfiguration {reconfiguration!r}: {e}") from None
            graphs += [lg for lg, _ in steps]
            self._move(at, steps, lambda _plan: dark, None)
        if circuit_phases is not None:
            try:
                plans = list(circuit_phases["circuits"])
                graphs += [optical.reconfigure(self.g, c)[0] for c in plans]
                phase_of = np.asarray(circuit_phases["phase_of"], dtype=np.int32)
                per_ms = float(circuit_phases["dark_s_per_ms"])
                pairs = [list(p) for p in circuit_phases["pairs"]]
            except (KeyError, TypeError, ValueError) as e:
                raise TwinError(f"circuit_phases: {e}") from None
            if len(phase_of) != len(self.schedule) or len(pairs) != len(plans) or (
                    len(phase_of) and not 0 <= phase_of.min() <= phase_of.max() < len(plans)):
                raise TwinError(f"circuit_phases: phase_of needs one phase in 0..{len(plans) - 1}"
                                f" per flow ({len(self.schedule)}), pairs one list per phase")
            self._phases = {"of": phase_of, "circuits": plans, "pairs": pairs,
                            "per_ms": per_ms, "current": 0,
                            "left": np.bincount(phase_of, minlength=len(plans)).astype(
                                np.int64)}
        wired = self.g.copy()
        added_pairs = []
        for lg in graphs:
            for u, v, d in lg.edges(data=True):
                if not wired.has_edge(u, v):
                    wired.add_edge(u, v, **d)
                    added_pairs.append((u, v))
        wired.graph["dark_at_start"] = added_pairs
        return wired

    def _move(self, t, steps, dark_of, phase):
        """Start moving the circuits at ``t`` through ``steps`` (fabric/optical.py
        ``staged_reconfigure``), one after the other, each make-before-break: drain and dark
        at its start, commit ``dark_of(plan)`` later."""
        from fabric import optical
        dpid = {n: x for n, x in self.g.nodes(data="dpid") if x is not None}

        def links(circuits, lg):
            out = []
            for c in circuits:
                (u, pu), (v, pv) = optical.circuit_link(lg, c)
                out.append(((u, v), ((dpid[u], pu), (dpid[v], pv))))
            return out

        entry = {"at_s": t, "phase": phase, "steps": len(steps), "circuits_removed": 0,
                 "circuits_added": 0, "dark_s": 0.0}
        lg, when = self._circuits_lg, t
        for new, plan in steps:
            arg = (links(plan.removed, lg), links(plan.added, new), new)
            dark = dark_of(plan)
            for kind, at in (("drain", when), ("dark", when), ("commit", when + dark)):
                heapq.heappush(self._events, (at, len(self._events), kind, arg))
            entry["circuits_removed"] += len(plan.removed)
            entry["circuits_added"] += len(plan.added)
            entry["dark_s"] += dark
            lg, when = new, when + dark
        if steps:
            heapq.heappush(self._events, (when, len(self._events), "moved", lg))
            self._moving = True
            self.reconfigurations.append(entry)

    def _phase_check(self, t):
        """Circuits that follow the schedule's phases: once every flow of the current
        phase has been received (and no move is under way), move to the plan of the next
        phase that still has flows to receive."""
        from fabric import optical
        ph = self._phases
        if ph is None or self._moving:
            return
        j = optical.next_phase(ph["left"], ph["current"])
        if j is None:
            return
        ph["current"] = j
        steps = optical.staged_reconfigure(self._circuits_lg, ph["circuits"][j], ph["pairs"][j])
        self._move(t, steps, lambda plan: plan.reconfiguration_ms * ph["per_ms"], j)

    def _index_links(self, scale, delay_scale):
        g = self._wired
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
        self.switch_ports = {}   # dpid -> [(port, lid)] of links it transmits on
        for lid, at in enumerate(self.port_of):
            if at is not None:
                self.switch_ports.setdefault(self.dpid[at[0]], []).append((at[1], lid))
        self.sw_lid = {(self.dpid[a], self.dpid[b]): i for (a, b), i in self.lid.items()
                       if a in self.dpid and b in self.dpid}
        # The event loop's view: switches by index (dpid order), links between them.
        self.sw_dpids = sorted(self.dpid.values())
        self.sw_index = {d: i for i, d in enumerate(self.sw_dpids)}
        n_sw = len(self.sw_dpids)
        self.swlid = np.full((n_sw, n_sw), -1, dtype=np.int32)
        for (a, b), lid in self.sw_lid.items():
            self.swlid[self.sw_index[a], self.sw_index[b]] = lid

    def _make_flows(self, seed, given):
        """The flows as arrays: fabric host of each end, source port (drawn from the seed,
        traffic/ports.py, or given), Open vSwitch's hash."""
        g = self.g
        try:
            hosts, cols, hmap = fabric_codes(g, self.schedule)
        except ScheduleError as e:
            raise TwinError(f"{g.graph['name']}: {e}") from None
        self.cols = cols
        self.hosts = hosts
        self.host_ip = [g.nodes[h]["ip"] for h in hosts]
        host_sw = [model.host_switch(g, h)[0] for h in hosts]
        self.h_dpid = [self.dpid[s] for s in host_sw]
        self.h_sw = np.array([self.sw_index[d] for d in self.h_dpid], dtype=np.int32)
        self.h_up = np.array([self.lid[(h, s)] for h, s in zip(hosts, host_sw)], dtype=np.int32)
        self.h_down = np.array([self.lid[(s, h)] for h, s in zip(hosts, host_sw)],
                               dtype=np.int32)
        if (hmap == np.arange(len(hmap))).all():   # the schedule's hosts are the fabric's
            self.f_src, self.f_dst = cols.src, cols.dst
        else:
            self.f_src, self.f_dst = hmap[cols.src], hmap[cols.dst]
        n = len(cols)
        self._given = {}                       # flow index -> FlowKey (replayed connections)
        for fid, value in given.items():
            fi = self.index.get(fid)
            if fi is None:
                continue
            key = FlowKey.of(value)
            if (key.ipv4_src, key.ipv4_dst) != (self.host_ip[self.f_src[fi]],
                                                self.host_ip[self.f_dst[fi]]):
                raise TwinError(f"flow {fid!r}: connection {list(key)} is not between "
                                f"{hosts[self.f_src[fi]]} and {hosts[self.f_dst[fi]]}")
            self._given[fi] = key
        self._draw_ports(seed)
        self.dport = np.full(n, AGENT_PORT, dtype=np.uint16)
        self.proto = np.full(n, IP_PROTO_TCP, dtype=np.uint8)
        for fi, key in self._given.items():
            self.dport[fi], self.proto[fi] = key.tp_dst, key.ip_proto
        ip_int = np.array([int(ipaddress.IPv4Address(ip)) for ip in self.host_ip],
                          dtype=np.uint64)
        self.hash = np.empty(n, dtype=np.uint32)
        for lo in range(0, n, HASH_CHUNK):   # in chunks: its temporaries are 64-bit
            part = slice(lo, lo + HASH_CHUNK)
            self.hash[part] = ovs_dp_hash_tcp4(ip_int[self.f_src[part]],
                                               ip_int[self.f_dst[part]], self.sport[part],
                                               AGENT_PORT)
        for fi, key in self._given.items():   # its own ports, or another protocol
            self.hash[fi] = ovs_dp_hash(dict(key.match()))
        self.mac = {h: g.nodes[h]["mac"] for h in hosts}
        self.host_at = {ip: i for i, ip in enumerate(self.host_ip)}
        # Each flow's source host and port, which name it among the flows (ports are
        # distinct per host), sorted, so pins by 5-tuple find their flows in one search.
        code = self.f_src.astype(np.int64) << 16 | self.sport
        self._by_code = np.argsort(code, kind="stable")
        self._codes = code[self._by_code]
        self._pins_cache = None
        self._pin_rows_cache = None
        self._learned_at_setup = None   # setup() done: the flows the core learned

    def _draw_ports(self, seed):
        """Source ports drawn from the seed as the emulation's agents bind them
        (traffic/ports.py), a replayed connection keeping its own."""
        try:
            self.sport = source_ports(
                self.f_src, len(self.hosts), seed, host_names=self.hosts,
                given={fi: key.tp_src for fi, key in self._given.items()})
        except PortError as e:
            raise TwinError(str(e)) from None

    @property
    def index(self):
        """``{flow id: flow index}`` (built on first use: it needs every flow's id)."""
        if getattr(self, "_index", None) is None:
            self._index = {f.id: i for i, f in enumerate(self.schedule.flows)}
        return self._index

    def key(self, fi):
        """The 5-tuple of flow ``fi``."""
        key = self._given.get(fi)
        return key if key is not None else FlowKey(
            *self._agent_key(self.f_src[fi], self.f_dst[fi], int(self.sport[fi])))

    def _agent_key(self, s, d, sport):
        """The plain 5-tuple an agent's connection from host index s to d has (no 5-tuple
        given for it)."""
        return (self.host_ip[s], self.host_ip[d], IP_PROTO_TCP, sport, AGENT_PORT)

    @property
    def keys(self):
        """Every flow's 5-tuple, in schedule order (built on first use)."""
        if getattr(self, "_keys", None) is None:
            self._keys = [self.key(fi) for fi in range(len(self.f_src))]
        return self._keys

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
        """The policy's own pins (collective intents) per flow: ``(pin_of, paths)``, flow
        index -> index in ``paths`` of the switch path its pin gives it, -1 for none. A pin
        by 5-tuple beats one by host pair, as its priority does in the switches. Kept until
        the policy's pins change (``pins_version``)."""
        core = self.core
        if self._pins_cache is not None and self._pins_cache[0] == core.pins_version:
            return self._pins_cache[1]
        n = len(self.f_src)
        at = self.host_at
        parts, by_pair, by_key = [], [], []
        offset = 0
        for table, path_of, table_paths in core.pinned_tables():
            rows = np.flatnonzero(path_of >= 0)
            pid = path_of[rows].astype(np.int64) + offset
            parts.append(table_paths)
            offset += len(table_paths)
            keyed = table.proto[rows] >= 0
            # A host pair's pin matches its hosts' addresses now; a 5-tuple's, the ones it
            # was announced with.
            now_at = np.array([at.get(h.ip, -1) for h in table.hosts], dtype=np.int64)
            r = rows[~keyed]
            s, d = now_at[table.src[r]], now_at[table.dst[r]]
            ok = (s >= 0) & (d >= 0)
            by_pair.append((s[ok], d[ok], pid[~keyed][ok]))
            was_at = np.array([at.get(ip, -1) for ip in table.ips], dtype=np.int64)
            r = rows[keyed]
            # A table made from the twin's own flows lists flow i as row i.
            by_key.append((self._index_rows(was_at[table.src[r]], was_at[table.dst[r]],
                                            table.proto[r], table.sport[r], table.dport[r],
                                            guess=r),
                           pid[keyed]))
        pin_of = np.full(n, -1, dtype=index_dtype(offset))
        n_hosts = len(self.hosts)
        if by_pair and sum(len(p) for _, _, p in by_pair):
            s, d, p = (np.concatenate(c) for c in zip(*by_pair))
            # The last pin of a pair wins, as in a dict of them.
            codes, last = np.unique((s * n_hosts + d)[::-1], return_index=True)
            paths_of = p[::-1][last]
            flow_code = self.f_src.astype(np.int64) * n_hosts + self.f_dst
            pos = np.minimum(_search(codes, flow_code), len(codes) - 1)
            hit = codes[pos] == flow_code
            pin_of[hit] = paths_of[pos[hit]]
        for fi, p in by_key:   # after the pairs: a 5-tuple's pin outranks its pair's
            pin_of[fi[fi >= 0]] = p[fi >= 0]
        pins = (pin_of, _PinPaths(parts))
        self._pins_cache = (core.pins_version, pins)
        return pins

    def _indices(self, keys):
        """The index of the flow each 5-tuple of ``keys`` is, -1 for none (see
        :meth:`_index_rows`)."""
        at = self.host_at
        rows = np.array([(at.get(k[0], -1), at.get(k[1], -1), k[2], k[3], k[4]) for k in keys],
                        dtype=np.int64).reshape(-1, 5)
        return self._index_rows(*rows.T)

    def _index_rows(self, s, d, proto, sport, dport, guess=None):
        """The index of the flow each row of 5-tuple columns names (source and destination
        as host indices, -1 for none), -1 for none, found in one search over the flows'
        (source host, source port), which name them. ``guess`` (a flow index per row, e.g.
        the row's own number when the rows were made from the twin's flows in order) is
        checked first; only the rows it misses are searched."""
        n = len(self.f_src)
        s = np.asarray(s, dtype=np.int64)
        if n == 0:
            return np.full(len(s), -1, dtype=np.int64)
        sport, dport, proto = (np.asarray(c, dtype=np.int64) for c in (sport, dport, proto))
        out = np.full(len(s), -1, dtype=np.int64)
        todo = np.arange(len(s))
        if guess is not None:
            g = np.clip(np.asarray(guess, dtype=np.int64), 0, n - 1)
            hit = self._names(g, s, d, proto, sport, dport) & (np.asarray(guess) < n)
            out[hit] = g[hit]
            todo = np.flatnonzero(~hit)
            del g, hit
        if len(todo):
            s, d, proto, sport, dport = (c[todo] for c in (s, np.asarray(d), proto, sport,
                                                           dport))
            code = s << 16 | sport
            pos = np.minimum(_search(self._codes, code), n - 1)
            fi = self._by_code[pos]
            hit = (self._codes[pos] == code) & self._names(fi, s, d, proto, sport, dport)
            out[todo[hit]] = fi[hit]
        return out

    def _names(self, fi, s, d, proto, sport, dport):
        """Whether flow ``fi`` is the 5-tuple (host indices, protocol, ports), per row."""
        return ((s >= 0) & (self.f_src[fi] == s) & (self.sport[fi] == sport)
                & (self.f_dst[fi] == d) & (self.dport[fi] == dport) & (self.proto[fi] == proto))

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
        return select_index(weights, int(self.hash[fi]),
                            lambda: ovs_symmetric_l4_hash(dict(self.key(fi).match())))

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

    def _policy_path(self, fi, pins):
        """The switch path the policy gives flow ``fi`` (a pin, else its learned flow's), or
        None."""
        p = pins[0][fi]
        if p >= 0:
            return pins[1][p]
        flow = self.core.flows.get(self.key(fi))
        return None if flow is None else flow.path

    def _route(self, fi, pins, path=False):
        """The directed links flow ``fi`` crosses now, or None if no live path leads on
        (``path``: the policy's path if already looked up)."""
        hs, hd = int(self.f_src[fi]), int(self.f_dst[fi])
        s, d = self.h_dpid[hs], self.h_dpid[hd]
        links = [int(self.h_up[hs])]
        if path is False:
            path = self._policy_path(fi, pins)
        prev = None
        if path is not None and path[0] == s:
            for a, b in zip(path, path[1:]):
                if not self._live(a, b):
                    break
                links.append(self.sw_lid[(a, b)])
                prev, s = a, b
        for _ in range(MAX_WALK):
            if s == d:
                links.append(int(self.h_down[hd]))
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

    def _tables(self):
        """The forwarding the event loop walks on a fabric whose links are all up: next hops
        toward every destination switch, the slot table of each SELECT group (-1 where
        Open vSwitch falls back to highest-random-weight, which Python decides)."""
        core = self.core
        n_sw = len(self.sw_dpids)
        dests = sorted(set(self.h_sw.tolist()))
        dcol = np.full(n_sw, -1, dtype=np.int32)
        dcol[dests] = np.arange(len(dests), dtype=np.int32)
        hops_of = core.path_service.hops
        widest = max((len(h) for d in hops_of.values() for h in d.values()), default=1)
        nh = np.full((len(dests), n_sw, widest), -1, dtype=np.int32)
        nhc = np.zeros((len(dests), n_sw), dtype=np.int32)
        tids = np.full((len(dests), n_sw), -2, dtype=np.int32)
        tables, table_id = [], {}
        weights_of = core.render.weights
        ix = self.sw_index
        for c, d_i in enumerate(dests):
            d = self.sw_dpids[d_i]
            for s, hops in hops_of.get(d, {}).items():
                si = ix[s]
                nhc[c, si] = len(hops)
                nh[c, si, :len(hops)] = [ix[h] for h in hops]
                if len(hops) > 1:
                    wmap = weights_of.get((s, d))
                    weights = tuple(wmap.get(h, 1) for h in hops) if wmap else (1,) * len(hops)
                    tid = table_id.get(weights)
                    if tid is None:
                        slots = select_slots(weights)
                        tid = table_id[weights] = -1 if slots is None else len(tables)
                        if slots is not None:
                            tables.append(slots)
                    tids[c, si] = tid
        width = max((len(t) for t in tables), default=1)
        slots = np.zeros((max(len(tables), 1), width), dtype=np.int64)
        smask = np.zeros(max(len(tables), 1), dtype=np.int64)
        for i, t in enumerate(tables):
            slots[i, :len(t)] = t
            smask[i] = len(t) - 1
        return dcol, nh, nhc, tids, slots, smask

    def _overrides(self, todo, pins):
        """The routes of the flows not started (``todo``, a mask) that the policy routes
        itself (a pin or a learned flow's path), as ``(ov_row, ov_links, pp, pmap)`` for
        :func:`_walk`: ``ov_row[fi]`` >= 0 is row ``pp[ov_row[fi]]`` of a pin's switch links
        (mapped to links by ``pmap``, whose last entry, -1, is padding), between the flow's
        hosts' links; <= -2 is a whole route, row ``-2 - ov_row[fi]`` of ``ov_links``; -1 is
        none (the SELECT groups route it). While every link is up, the pins' rows are the
        intents' own path columns (nothing per flow but ``ov_row``: tens of millions of
        flows at k=32); otherwise each flow's route is walked (:meth:`_route`)."""
        core = self.core
        pin_of, pin_paths = pins
        none_pp = np.zeros((1, 1), dtype=np.int32), np.full(1, -1, dtype=np.int32)
        if not (core.learns_flows or (pin_of >= 0).any()):
            # No flow of its own: the loop routes every flow by the SELECT groups.
            return (np.full(1, -1, dtype=np.int32), np.full((1, 1), -1, dtype=np.int32)
                    ) + none_pp
        ov_row = np.full(len(self.f_src), -1, dtype=pin_of.dtype)
        routes = []   # whole routes, host link to host link

        def route(fi, links):
            ov_row[fi] = -2 - len(routes)
            routes.append(links)

        if not self.up.all():
            for fi in np.flatnonzero(todo).tolist():
                path = self._policy_path(fi, pins)
                if path is None:
                    continue
                links = self._route(fi, pins, path)
                if links is not None:
                    route(fi, links)
            return (ov_row, _padded(routes)) + none_pp
        pp, pmap, bad = self._pin_rows(pin_paths)
        # Pins: a flow whose hosts sit where its path starts and ends takes the path's row;
        # others (a host moved) are walked.
        fis = np.flatnonzero(todo & (pin_of >= 0))
        pid = pin_of[fis]
        fit = np.zeros(len(fis), dtype=bool)
        h_dpid = np.asarray(self.h_dpid, dtype=np.int64)
        for part, lo in zip(pin_paths.parts, pin_paths.offsets):
            mine = np.flatnonzero((pid >= lo) & (pid < lo + len(part)))
            first, last = part.ends(pid[mine] - lo)
            fit[mine] = ((first == h_dpid[self.f_src[fis[mine]]])
                         & (last == h_dpid[self.f_dst[fis[mine]]]))
        if bad is not None:
            fit &= ~bad[pid]
        ov_row[fis[fit]] = pid[fit]
        for fi, p in zip(fis[~fit].tolist(), pid[~fit].tolist()):
            links = self._route(fi, pins, pin_paths[p])
            if links is not None:
                route(fi, links)
        del fis, pid, fit
        if core.learns_flows and core.load.pinned_rows:
            # Learned flows' paths (none pinned: hedera's learned flows all follow the
            # groups until adapt), each path's links made once.
            fis = np.flatnonzero(todo & (pin_of < 0))
            made = {}
            for fi, flow in zip(fis.tolist(), self._learned(fis)):
                if flow is None or flow.path is None:
                    continue
                path = flow.path
                hs, hd = int(self.f_src[fi]), int(self.f_dst[fi])
                mid = made.get(path)
                if mid is None:
                    mid = made[path] = [self.sw_lid.get(hop) for hop in zip(path, path[1:])]
                if None in mid or path[0] != h_dpid[hs] or path[-1] != h_dpid[hd]:
                    links = self._route(fi, pins, path)
                    if links is not None:
                        route(fi, links)
                    continue
                route(fi, [int(self.h_up[hs])] + mid + [int(self.h_down[hd])])
        return ov_row, _padded(routes), pp, pmap

    def _pin_rows(self, pin_paths):
        """``(pp, pmap, bad)``: the pins' path rows, in the pins' numbering, the map of
        their entries to links (see :meth:`_overrides`), and the rows crossing a link the
        twin does not know (walked by Python; None if none does), kept with the pins. With
        one intent, its own rows (no copy: a quarter of a billion entries at k=32); with
        several, their rows mapped to links, one after another."""
        cache = self._pin_rows_cache
        if cache is not None and cache[0] is pin_paths:
            return cache[1]
        unknown = -2
        maps = [np.array([self.sw_lid.get(link, unknown) for link in part.links] + [-1],
                         dtype=np.int32) for part in pin_paths.parts]
        bad = None
        if len(maps) == 1:
            pp, pmap = pin_paths.parts[0].rows, maps[0]
            if (pmap == unknown).any():
                bad = (pmap[pp] == unknown).any(axis=1)
        elif maps:
            depth = max(x.rows.shape[1] for x in pin_paths.parts)
            pp = np.full((max(1, len(pin_paths)), depth), -1, dtype=np.int32)
            for part, m, lo in zip(pin_paths.parts, maps, pin_paths.offsets):
                pp[lo:lo + len(part), :part.rows.shape[1]] = m[part.rows]
            # Entries are links already (pmap[-1]: padding); rows with an unknown link are
            # never walked by the loop.
            pmap = np.append(np.arange(len(self.caps), dtype=np.int32), -1)
            if any((m == unknown).any() for m in maps):
                bad = (pp == unknown).any(axis=1)
        else:
            pp, pmap = np.zeros((1, 1), dtype=np.int32), np.full(1, -1, dtype=np.int32)
        self._pin_rows_cache = (pin_paths, (pp, pmap, bad))
        return pp, pmap, bad

    def _unlearned(self, mask, pins):
        """The flows of ``mask`` whose first packet would reach the controller of a policy
        that learns flows: neither pinned by the policy (a pin outranks the rule that sends
        new flows to the controller) nor learned yet."""
        cand = mask & (pins[0] < 0)
        idx = np.flatnonzero(cand)
        if not self.core.flows or not len(idx):
            return cand
        out = np.zeros(len(cand), dtype=np.bool_)
        out[idx[[flow is None for flow in self._learned(idx)]]] = True
        return out

    def _learned(self, fis):
        """The core's learned flow of each flow index of ``fis`` (None where it has none),
        looked up by 5-tuples made from plain lists: a million at k=16, where making each
        a FlowKey, or finding the index of each of the core's two million flows (both
        directions), cost seconds."""
        get = self.core.flows.get
        return [get(key) for _, _, key in self._plain_keys(fis)]

    def _plain_keys(self, fis):
        """``(source host, destination host, plain 5-tuple)`` of each flow index of ``fis``,
        from plain lists (a million flows' keys made from numpy scalars cost more than the
        learning they feed)."""
        given, agent_key = self._given, self._agent_key
        for fi, s, d, sport in zip(fis.tolist(), self.f_src[fis].tolist(),
                                   self.f_dst[fis].tolist(), self.sport[fis].tolist()):
            key = given.get(fi)
            yield s, d, (key if key is not None else agent_key(s, d, sport))

    def _intent_requests(self):
        """The intents a run under ``collective`` announces, as the runner does
        (traffic/jobs.py ``intent_requests``: one intent, or one per job in job order);
        for a schedule without jobs, the flows' columns as they are
        (controllers/intents.py ``IntentColumns``: a million flows at k=16, no item each)."""
        try:
            depths = None if self.schedule.meta.get("jobs") else self.cols.depths()
        except ScheduleError:   # a dependency listed after its flow: the schedule's walk
            depths = None
        if depths is None:
            tuples = {f.id: self.key(fi) for fi, f in enumerate(self.schedule.flows)}
            return jobs.intent_requests(self.schedule, "run", tuples)
        # The 5-tuple columns are the agents' connections (replayed ones keep theirs).
        return [("run", IntentColumns(self.host_ip, self.f_src, self.f_dst, self.cols.bytes,
                                      self.proto, self.sport, self.dport, depths))]

    def setup(self):
        """The connections before the clock, as the agents and the runner make them:
        ``collective`` announces every flow first (:meth:`_intent_requests`), then a policy
        that learns flows learns every flow no pin covers, and its ACK direction. A flow an
        intent pins never reaches the controller (the pin outranks the rule that sends new
        flows there); its ACK direction is not learned either: the twin carries no ACKs, and
        with every data flow pinned no learned flow can move a byte. Returns the number of
        flows the core learned. Done once per twin: :meth:`run_columns` calls it, and a call
        before (to time it apart) is not repeated, as the connections are made once."""
        if self._learned_at_setup is not None:
            return self._learned_at_setup
        core, mac, hosts = self.core, self.mac, self.hosts
        if core.policy == "collective":
            for intent_id, body in self._intent_requests():
                core.submit_intent(intent_id, body, 0.0)
        if core.learns_flows:
            pins = self._pins()

            def connections():
                host_mac = [mac[h] for h in hosts]
                for s, d, key in self._plain_keys(np.flatnonzero(pins[0] < 0)):
                    yield key, host_mac[s], host_mac[d]
                    yield FlowKey.reverse(key), host_mac[d], host_mac[s]
            core.flows_seen(connections(), 0.0)
        core.flush(0.0)
        self._learned_at_setup = core.counters.get("flows_learned", 0)
        return self._learned_at_setup

    # -- the run ---------------------------------------------------------------------------
    def run(self):
        """Execute the schedule; returns ``(records, info)``: one flow record per started
        flow (traffic/metrics.py's format) and what the run counted."""
        recs, info = self.run_columns()
        records = []
        starts, ends, got = recs.start_s.tolist(), recs.end_s.tolist(), recs.bytes_received
        for fi, f in enumerate(self.schedule.flows):
            if math.isnan(starts[fi]):
                continue
            done = not math.isnan(ends[fi])
            records.append({"id": f.id, "src": f.src, "dst": f.dst, "bytes": f.bytes,
                            "start_s": starts[fi], "end_s": ends[fi] if done else None,
                            "bytes_received": int(got[fi])})
        return records, info

    def run_columns(self, compiled=None):
        """Execute the schedule; returns ``(records, info)`` with the records as
        :class:`~traffic.metrics.FlowRecords` (arrays in schedule order), for schedules of
        millions of flows. ``compiled`` forces the event loop compiled (True) or in Python
        (False); by default it is compiled from :data:`COMPILED_FLOWS` flows."""
        t_wall, c_start = time.monotonic(), time.process_time()
        core, cols = self.core, self.cols
        n = len(cols)
        compiled = n >= COMPILED_FLOWS if compiled is None else compiled
        kernel = _kernel(compiled)
        learned_at_setup = self.setup()
        pins, pins_version = self._pins(), core.pins_version
        cptr, cidx = cols.children()
        waiting = np.diff(cols.dep_ptr).astype(np.int32)
        start_out = np.full(n, np.nan)
        end_out = np.full(n, np.nan)
        self._final_sent = sent_final = np.zeros(n)
        needs_py = np.zeros(n, dtype=np.bool_)
        nbytes, floor, delay = cols.bytes, cols.start_s, cols.delay_s
        first = np.flatnonzero(waiting == 0)
        heap_size = max(64, 2 * len(first))
        st_t, st_f = np.empty(heap_size), np.empty(heap_size, dtype=np.int64)
        order = np.lexsort((first, floor[first]))
        st_t[:len(first)], st_f[:len(first)] = floor[first][order], first[order]  # sorted: a heap
        ar_t, ar_f = np.empty(heap_size), np.empty(heap_size, dtype=np.int64)
        act = _Rows(width=2, n_links=len(self.caps))   # grows to the longest route
        stalled = set()
        fs = np.array([0.0, self.stats_interval_s, np.inf,
                       np.inf if self.max_time_s is None else float(self.max_time_s),
                       self.resolution, self.epoch])
        si = np.zeros(18, dtype=np.int64)
        used = np.zeros(len(self.caps))
        si[I_STARTS] = len(first)
        si[I_DIRTY] = 1
        si[I_FAST_FAILOVER] = bool(self.fast_failover)
        si[I_MULTIPATH] = bool(core.render.multipath)
        si[I_MAX_CHILDREN] = int(np.diff(cptr).max(initial=0))
        state = {}

        def refresh():
            """After the core or the links changed: the tables the loop walks, the policy's
            routes of the flows not started, which starts Python must take."""
            todo = np.isnan(start_out)
            state["tables"] = self._tables()
            state["ov"] = self._overrides(todo, pins)
            needs_py[:] = self._unlearned(todo, pins) if core.learns_flows else False
            si[I_ALL_UP] = bool(self.up.all())

        def reroute_all():
            for r in np.flatnonzero(act.alive).tolist():
                fi = int(act.fid[r])
                links = self._route(fi, pins)
                if links is None:
                    if fi not in stalled:
                        stalled.add(fi)
                        act.set_links(r, (), self.link_bytes)
                        si[I_DIRTY] = 1
                        self.counters["stalled"] += 1
                    continue
                stalled.discard(fi)
                if tuple(links) != act.current(r):
                    act.set_links(r, links, self.link_bytes)
                    self.counters["reroutes"] += 1
                    si[I_DIRTY] = 1

        def after_core(now):
            nonlocal pins, pins_version
            core.flush(now)
            if core.pins_version != pins_version:
                pins, pins_version = self._pins(), core.pins_version
            reroute_all()

        def start_in_python(t):
            """The first start due, taken by Python: relearned if the core forgot it, routed
            through a failed fabric, or to a policy route the tables cannot walk."""
            fi = int(st_f[0])
            si[I_STARTS] = _hpop(st_t, st_f, int(si[I_STARTS]))
            start_out[fi] = t
            if core.learns_flows and pins[0][fi] < 0 and self.key(fi) not in core.flows:
                # Forgotten while idle: its first packet is a packet-in again.
                key, src, dst = self.key(fi), self.hosts[self.f_src[fi]], self.hosts[
                    self.f_dst[fi]]
                core.flow_seen(key, self.mac[src], self.mac[dst], 0, t)
                core.flow_seen(key.reverse(), self.mac[dst], self.mac[src], 0, t)
                # Placing one flow pins only it; the others move only if the policy's own
                # pins changed.
                core.flush(t)
                if core.pins_version != pins_version:
                    after_core(t)
                    refresh()
            needs_py[fi] = False
            links = self._route(fi, pins)
            act.add(fi, links or (), nbytes[fi], t)
            if links is None:
                stalled.add(fi)
                self.counters["stalled"] += 1
            si[I_ACTIVE] += 1
            si[I_DIRTY] = 1

        ph = self._phases
        phase_of = ph["of"] if ph is not None else np.zeros(0, dtype=np.int32)
        phase_left = ph["left"] if ph is not None else np.zeros(1, dtype=np.int64)
        refresh()
        timed_out = False
        # What the run costs before its first event (the set-up, the columns' children, the
        # tables): once per run, whatever its length.
        prepare_cpu_s = time.process_time() - c_start
        while True:
            fs[F_NEXT_EVENT] = self._events[0][0] if self._events else np.inf
            si[I_STATS_ALWAYS] = bool(self._events) or core.learns_flows
            si[I_FREE] = act.n_free
            dcol, nh, nhc, tids, slots, smask = state["tables"]
            ov_row, ov_links, pp, pmap = state["ov"]
            if max(ov_links.shape[1], pp.shape[1] + 2) > act.links.shape[1]:
                act.grow(len(act.left), max(ov_links.shape[1], pp.shape[1] + 2))
            walk = np.full(act.links.shape[1], -1, dtype=np.int32)
            kernel(fs, si, self.f_src, self.f_dst, nbytes, floor, delay, cptr, cidx, waiting,
                   start_out, end_out, sent_final, self.hash, needs_py, ov_row, ov_links,
                   pp, pmap,
                   self.h_sw, self.h_up, self.h_down, dcol, nh, nhc, tids, slots, smask,
                   self.swlid, self.live_caps, self.delay, self.serialize, self.link_bytes,
                   act.links, act.left, act.rate, act.sent, act.base, act.t0, act.alive,
                   act.fid, act.free, st_t, st_f, ar_t, ar_f, walk, act.on_cnt, act.on,
                   act.on_start, act.pos, phase_of, phase_left, act.tref, act.pend,
                   act.fin_t, act.fin_r, used)
            act.n_free = int(si[I_FREE])
            status, t = int(si[I_STATUS]), float(fs[F_T])
            if status == DONE:
                break
            if status == TIMED_OUT:
                timed_out = True
                break
            if status == GROW_ROWS:
                act.grow()
                continue
            if status == GROW_INDEX:
                act.grow_index()
                continue
            if status == GROW_HEAPS:
                size = 2 * (len(st_t) + int(si[I_ARRIVALS] + si[I_ACTIVE]) * max(
                    1, int(si[I_MAX_CHILDREN])))
                st_t, st_f = np.append(st_t, np.empty(size)), np.append(
                    st_f, np.empty(size, dtype=np.int64))
                ar_t, ar_f = np.append(ar_t, np.empty(size)), np.append(
                    ar_f, np.empty(size, dtype=np.int64))
                continue
            if status == PY_START:
                start_in_python(t)
                continue
            # STOP: a phase received (the circuits may move), link events and the
            # statistics round due now.
            self._phase_check(t)
            changed = False
            while self._events and self._events[0][0] <= t:
                _, _, kind, arg = heapq.heappop(self._events)
                self._link_event(kind, arg, t)
                if kind in ("phys", "dark"):
                    reroute_all()
                else:
                    after_core(t)
                si[I_DIRTY] = 1
                changed = True
            if t >= fs[F_NEXT_STATS]:
                self._stats_round(act, t)
                core.adapt(t)
                after_core(t)
                fs[F_NEXT_STATS] = t + self.stats_interval_s
                self.counters["stats_rounds"] += 1
                changed = True
            if changed:
                refresh()
        self.counters["events"] += int(si[I_EVENTS])
        self.counters["rate_solves"] += int(si[I_SOLVES])
        alive = np.flatnonzero(act.alive)
        sent_final[act.fid[alive]] = act.sent[alive]
        got = np.where(np.isnan(end_out), sent_final.astype(np.int64), nbytes)
        got[np.isnan(start_out)] = 0
        records = FlowRecords(start_s=start_out, end_s=end_out, bytes_received=got)
        info = dict(self.counters, timed_out=timed_out, simulated_s=float(fs[F_T]),
                    wall_s=round(time.monotonic() - t_wall, 3),
                    prepare_cpu_s=round(prepare_cpu_s, 3),
                    flows_learned_at_setup=learned_at_setup,
                    stalled_at_end=len(stalled & set(act.fid[alive].tolist())),
                    compiled=bool(compiled))
        return records, info

    def _circuit_event(self, kind, arg, t):
        """A step of a make-before-break reconfiguration (see :meth:`_plan_reconfiguration`)."""
        core = self.core
        removed, added, new = arg
        if kind == "drain":
            core.drain_links([link for _, link in removed], t)
            return
        pairs, up = ((removed, False) if kind == "dark" else (added, True))
        for (u, v), _link in pairs:
            for lid in (self.lid[(u, v)], self.lid[(v, u)]):
                self.up[lid] = up
                self.live_caps[lid] = self.caps[lid] if up else 0.0
        if kind == "commit":
            core.link_capacity_bps.update(link_capacities(new, self.capacity_scale))
            core.commit_links([link for _, link in removed], [link for _, link in added], t)

    def _link_event(self, kind, arg, t):
        core = self.core
        if kind in ("drain", "dark", "commit"):
            return self._circuit_event(kind, arg, t)
        if kind == "moved":   # the last step of a move committed: the next may start
            self._circuits_lg, self._moving = arg, False
            return self._phase_check(t)
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
        total = act.port_bytes(self.link_bytes)
        for dpid, ports in self.switch_ports.items():
            counters = {}
            for p, lid in ports:   # a port an OCS moved carries two links' bytes
                counters[p] = counters.get(p, 0) + int(total[lid])
            core.port_stats(dpid, counters, t)
        if not core.learns_flows:
            return
        sent = {int(act.fid[r]): float(act.sent[r]) for r in np.flatnonzero(act.alive)}
        hosts, mac = self.hosts, self.mac
        keys = list(core.flows)
        if not keys:
            return
        fis = self._indices(keys)
        back = np.flatnonzero(fis < 0)
        rev = np.full(len(keys), -1, dtype=np.int64)
        rev[back] = self._indices([FlowKey.reverse(keys[i]) for i in back.tolist()])
        for key, fi, fi_rev in zip(keys, fis.tolist(), rev.tolist()):
            reverse = fi < 0
            if reverse:
                fi = fi_rev
                if fi < 0:
                    continue
            b = sent[fi] if fi in sent else self._final_sent[fi]
            src, dst = hosts[self.f_src[fi]], hosts[self.f_dst[fi]]
            if reverse:
                core.flow_seen(key, mac[dst], mac[src], int(b * ACK_BYTES_PER_BYTE), t)
            else:
                core.flow_seen(key, mac[src], mac[dst], int(b), t)
