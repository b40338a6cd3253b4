"""Measured load: smoothed rates of switch ports and of flows, from cumulative byte counters.

Bookkeeping for the routing core. OpenFlow port and flow statistics arrive as cumulative
counters at whatever times the app polls; this turns them into rates (bit/s) smoothed by an
exponentially weighted moving average with time constant ``tau_s``, so the smoothing does not
depend on the polling period. It must not decide anything, send anything or read a clock:
every call takes ``now``.

A placement decision changes a link's load before its counters can show it.
:meth:`PortLoads.shift` records such an expected change; it fades as ``exp(-age / tau_s)``,
the rate at which the moving average itself catches up, so a decision is neither forgotten
before the measurements show it nor counted twice once they do.
"""

import collections
import dataclasses
import heapq
import math

import numpy as np

from controllers.rules import FlowKey

# How far a host's flow count may move before the demand estimates of its other flows are
# redone (see LoadModel._refresh_ends).
REFRESH_FRACTION = 0.1
# A host with more pinned flows than this has their estimates redone in vector operations;
# below, a loop over them costs less than the vector operations' own overhead.
SWEEP_VECTOR_ROWS = 48


def ewma_weight(dt, tau_s):
    """Weight of a new sample taken ``dt`` seconds after the previous one."""
    return 1.0 - math.exp(-dt / tau_s) if tau_s > 0 else 1.0


class RateMeter:
    """Rate of one cumulative byte counter.

    A counter that goes backwards (a rule or switch was replaced) starts a new baseline
    instead of producing a negative rate.
    """

    __slots__ = ("bytes", "at", "rate_bps")

    def __init__(self):
        self.bytes = None
        self.at = None
        self.rate_bps = None

    def update(self, total, now, tau_s, smooth=True):
        """Take a counter reading; return the bytes it grew by since the previous one.
        With ``smooth`` false the rate becomes this interval's alone (as the first is)."""
        if self.at is None or total < self.bytes:
            self.bytes, self.at = total, now
            return 0
        dt = now - self.at
        if dt <= 0:
            return 0
        grown = total - self.bytes
        inst = grown * 8.0 / dt
        if self.rate_bps is None or not smooth:
            self.rate_bps = inst
        else:
            self.rate_bps += ewma_weight(dt, tau_s) * (inst - self.rate_bps)
        self.bytes, self.at = total, now
        return grown


class PortLoads:
    """Smoothed transmit rate of switch ports, plus the expected effect of recent decisions.

    Parameters
    ----------
    tau_s : float
        Time constant of the moving average and of the fading of shifts, in seconds.
    """

    # A shift this faded no longer matters; dropping it keeps the lists short.
    _FADED = 0.01

    def __init__(self, tau_s):
        self.tau_s = tau_s
        self._meters = {}   # (dpid, port) -> RateMeter
        self._shifts = {}   # (dpid, port) -> [(bps, at)]

    def sample(self, dpid, port, tx_bytes, now):
        """Feed the cumulative ``tx_bytes`` counter of a port, read at ``now``; returns its
        smoothed rate (None before two samples)."""
        meter = self._meters.get((dpid, port))
        if meter is None:
            meter = self._meters[(dpid, port)] = RateMeter()
        meter.update(tx_bytes, now, self.tau_s)
        return meter.rate_bps

    def shifted(self):
        """Ports with expected changes still counting: ``{(dpid, port): [(bps, at)]}``."""
        return self._shifts

    def measured_bps(self, dpid, port):
        """The smoothed measured rate of a port (0 before two samples)."""
        meter = self._meters.get((dpid, port))
        return 0.0 if meter is None or meter.rate_bps is None else meter.rate_bps

    def shift(self, dpid, port, bps, now):
        """Expect the port's rate to change by ``bps`` from ``now`` (negative: less load)."""
        self._shifts.setdefault((dpid, port), []).append((bps, now))

    def rate_bps(self, dpid, port, now):
        """Measured rate plus the expected changes not yet visible in it, never negative."""
        meter = self._meters.get((dpid, port))
        rate = 0.0 if meter is None or meter.rate_bps is None else meter.rate_bps
        shifts = self._shifts.get((dpid, port))
        if shifts:
            kept = []
            for bps, at in shifts:
                left = math.exp(-max(0.0, now - at) / self.tau_s) if self.tau_s > 0 else 0.0
                if left > self._FADED:
                    kept.append((bps, at))
                    rate += bps * left
            if kept:
                self._shifts[(dpid, port)] = kept
            else:
                del self._shifts[(dpid, port)]
        return max(0.0, rate)

    def forget(self, dpid):
        """Drop everything about a switch (it disconnected; its counters restart)."""
        for table in (self._meters, self._shifts):
            for key in [k for k in table if k[0] == dpid]:
                del table[key]


# eq=False: a flow is equal only to itself, as when it held its own meter object (two
# flows' fields can match: the same 5-tuple learned by two cores).
@dataclasses.dataclass(slots=True, eq=False)
class Flow(RateMeter):
    """What the core knows about one learned IPv4 flow.

    ``path`` is the switch path it is pinned to, or None while it follows the destination's
    groups (ECMP). ``started`` turns true once it has sent more than a handshake; before that
    its rate says nothing about its demand. A flow is the meter of its own rule's byte
    counter (``rate_bps``, :meth:`RateMeter.update`) rather than holding one: one Python
    object less per learned flow for the cyclic collector to traverse. The estimated demand
    it counts on its links is kept by the load model, in its row (:meth:`LoadModel.estimate`).
    """

    # Its 5-tuple as a plain tuple, equal to its FlowKey (same hash, found by one in every
    # dict): the cyclic collector stops tracking a plain tuple of strings and ints, and the
    # tuples and dicts holding only such, but tracks a FlowKey (a tuple subclass) as long as
    # it lives, and with it every container of FlowKeys, at every full collection.
    key: tuple
    src: str                    # MAC of the sending host
    dst: str                    # MAC of the receiving host
    seen_at: float
    active_at: float
    sent_bytes: int = 0
    started: bool = False
    path: tuple = None
    placed_at: float = None
    elephant: bool = False
    demand_bps: float = None
    fresh: bool = False         # started at the last reading: the next one is unsmoothed
    nic_bps: tuple = (0.0, 0.0)  # NIC rates of its sender and receiver
    lids: tuple = ()            # dense indices of its path's links (see LoadModel)
    row: int = -1               # its row in the load model's columns, while it is tracked

    def __post_init__(self):
        RateMeter.__init__(self)
        self.key = tuple(self.key)


class LoadModel:
    """Learned flows and the load of every directed switch link, for placement decisions.

    A link's load is its measured rate (:class:`PortLoads`, with the fading shifts of recent
    moves) plus the estimated demand of the flows pinned across it whose rate the counters
    cannot show yet (see :meth:`measured`). Those estimates are kept summed per link and
    corrected only for the flows an event touches: a new or forgotten flow changes the
    estimates of the flows sharing its sender or receiver, a measurement changes its own (and
    its reverse direction's), and a flow's estimate lapses ``tau_s`` after it was learned (a
    heap of due times). So a link's load costs O(1) to read and an event costs what it
    touches, not the number of flows. :meth:`flows_on` finds the flows pinned across a link
    from a per-link list of rows that pinning only appends to (stale entries are dropped when
    the list is read, or once they outnumber the live ones): O(flows on that link).

    Each tracked flow has a row in columns (its estimate, its links, its ends' NIC rates and
    hosts) and each host the rows of its flows in the order they were learned, so that
    redoing the estimates of a host's flows is a few vector operations over its rows, adding
    the changes to the links in the same order, one flow after another, as a loop would.

    Parameters
    ----------
    tau_s : float
        Time constant of the moving averages (s), and how long an unstarted flow's estimate
        counts once it has a rate.
    young_bytes : int
        A flow has *started* once it has sent this many bytes.
    adj : dict
        ``{u: {v: port of u toward v}}``, the topology state's adjacency (read only).
    nic_bps : callable
        ``nic_bps(mac)``: NIC rate of a host, bit/s.
    capacity : callable
        ``capacity(u, v)``: bit/s of the directed link u->v.
    """

    def __init__(self, tau_s, young_bytes, adj, nic_bps, capacity):
        self.tau_s = tau_s
        self.young_bytes = young_bytes
        self.ports = PortLoads(tau_s)
        self.flows = {}
        # Per directed link, by a dense index: estimated demand on it, its measured rate and
        # its capacity, so placement reads a candidate set's loads in one vector operation.
        self._lid = {}                                 # (u, v) -> index
        self.links = []                                # index -> (u, v)
        self._port_lid = {}                            # (u, port) -> index
        self._est = np.zeros(256)
        # Single links' estimates change through a memoryview: nearly as cheap as a list
        # item, with no copy to bring the array up to date before a vector read.
        self._est_mv = memoryview(self._est)
        self._meas = np.zeros(256)
        self._cap = np.ones(256)
        self._extra = np.zeros(256)  # scratch of loads_at, all zero between calls
        # mac -> {key: flow} of the flows it sends / receives, in the order they were learned.
        self._from = collections.defaultdict(dict)
        self._to = collections.defaultdict(dict)
        # Rows of the tracked flows (see Flow.row): the estimate each counts on its links
        # (written through a memoryview, as _est), its links' dense indices (-1 past its
        # path: a row with no links has -1 first), whether it has a measured rate, its ends'
        # NIC rates and host numbers; the flow of each row; rows free for reuse.
        self._rows = 0
        self._r_lids = np.full((0, 4), -1, dtype=np.int32)
        for name, dtype in (("_r_est", np.float64), ("_r_rated", np.bool_),
                            ("_r_src_bps", np.float64), ("_r_dst_bps", np.float64),
                            ("_r_src_h", np.int32), ("_r_dst_h", np.int32)):
            setattr(self, name, np.zeros(0, dtype=dtype))
            setattr(self, name + "_mv", memoryview(getattr(self, name)))
        self._r_flow = []
        self._free = []
        # mac -> host number; flows sent and received per host number; (side, mac) ->
        # [rows of its pinned sent (side 0) or received (1) flows, the same as an array
        # once a sweep needed one (None after a removal)].
        self._hid = {}
        self._n_from = np.zeros(0, dtype=np.int64)
        self._n_to = np.zeros(0, dtype=np.int64)
        self._n_from_mv, self._n_to_mv = memoryview(self._n_from), memoryview(self._n_to)
        self._host_rows = {}
        # Link index -> [rows pinned across it, possibly stale or repeated (a row unpinned
        # or re-pinned), how many rows cross it now]: appending is all a pin costs.
        self._on = {}
        self._due = []                                 # heap of (seen_at + tau_s, key)
        self._refreshed_at = {}                        # (side, mac) -> flow count then
        # (side, mac) -> how many of its flows have links to count an estimate on: a sweep
        # of a host with none changes nothing (hedera learns a million unpinned flows).
        self._counted = collections.Counter()
        self._adj = adj
        self._nic_bps = nic_bps
        self._nic_pairs = {}
        self._capacity = capacity

    # -- flows -----------------------------------------------------------------------------
    def add(self, flow, now, nic_bps=None):
        """Start tracking a newly learned flow (not pinned yet); ``nic_bps``, the NIC rates
        of its sender and receiver if the caller has them."""
        key = flow.key
        self.flows[key] = flow
        # One tuple per pair of NIC rates, shared (a fabric has a handful): the sweep reads
        # it for every flow of a host, and a shared one stays in cache.
        pair = nic_bps or (self._nic_bps(flow.src), self._nic_bps(flow.dst))
        flow.nic_bps = self._nic_pairs.setdefault(pair, pair)
        src, dst, hid = flow.src, flow.dst, self._hid
        self._from[src][key] = flow
        self._to[dst][key] = flow
        # The hosts' flow counts, as the sweeps read them (the same as len(_from[mac])).
        h = hid.get(src)
        if h is None:
            h = self._host(src)   # before the view is read: it may grow the columns
        self._n_from_mv[h] += 1
        h = hid.get(dst)
        if h is None:
            h = self._host(dst)
        self._n_to_mv[h] += 1
        heapq.heappush(self._due, (flow.seen_at + self.tau_s, key))
        self._refresh_ends(flow, now)

    def learn_least_loaded(self, flows, matrix_of, matrices, now):
        """Learn ``flows`` (new :class:`Flow` objects, not tracked yet, in order) and pin
        each to its least-loaded candidate path, at ``now``: the same, bit for bit, as
        :meth:`add` then the least-loaded choice (``policies.Congestion.place``) then
        :meth:`set_path` for each flow in turn, every estimate redone as each host's flow
        count grows (:meth:`_refresh_ends`), each choice seeing the estimates of the flows
        placed before it. One compiled loop (:func:`_least_loaded`); what it changes is
        written back to the columns, the per-host and per-link rows and the flows.

        Parameters
        ----------
        flows : list
            The flows, with ``nic_bps`` set (their ends' NIC rates).
        matrix_of : sequence of int
            Per flow, its candidate paths' index in ``matrices``, or -1: no path (the flow
            is learned and stays unpinned).
        matrices : list
            ``(src_dpid, idx)``: the paths from switch ``src_dpid`` as dense link indices,
            row j the paths' j-th links, one column per path in their order (what
            ``RoutingCore.host_path_matrix`` gives; no rows for a path within one switch).
        now : float
            The instant they are learned.

        Returns
        -------
        int
            How many flows were pinned.
        """
        n = len(flows)
        matrix_of = np.asarray(matrix_of, dtype=np.int64).reshape(n)
        hid, host, pairs = self._hid, self._host, self._nic_pairs
        fh = np.empty((n, 2), dtype=np.int64)
        index_from, index_to = self._from, self._to
        due = self._due
        for j, flow in enumerate(flows):
            key, src, dst = flow.key, flow.src, flow.dst
            pair = flow.nic_bps
            flow.nic_bps = pairs.setdefault(pair, pair)
            self.flows[key] = flow
            index_from[src][key] = flow
            index_to[dst][key] = flow
            h = hid.get(src)
            fh[j, 0] = host(src) if h is None else h
            h = hid.get(dst)
            fh[j, 1] = host(dst) if h is None else h
            due.append((flow.seen_at + self.tau_s, key))
        heapq.heapify(due)
        pinned = np.flatnonzero(matrix_of >= 0)
        # Rows, as _add_row hands them out: freed ones first (last freed first), then new.
        rows = np.full(n, -1, dtype=np.int64)
        take = min(len(self._free), len(pinned))
        reused = self._free[len(self._free) - take:][::-1]
        del self._free[len(self._free) - take:]
        first = self._new_rows(len(pinned) - take)
        rows[pinned] = np.concatenate([np.asarray(reused, dtype=np.int64),
                                       np.arange(first, self._rows, dtype=np.int64)])
        hops = max([idx.shape[0] for _, idx in matrices], default=0)
        if hops > self._r_lids.shape[1]:
            wide = np.full((len(self._r_lids), hops), -1, dtype=np.int32)
            wide[:, :self._r_lids.shape[1]] = self._r_lids
            self._r_lids = wide
        prow = rows[pinned]
        ph = fh[pinned]
        self._r_est[prow] = 0.0
        self._r_rated[prow] = False
        self._r_lids[prow] = -1
        self._r_src_h[prow], self._r_dst_h[prow] = ph[:, 0], ph[:, 1]
        self._r_src_bps[prow] = np.fromiter((flows[j].nic_bps[0] for j in pinned.tolist()),
                                            dtype=np.float64, count=len(pinned))
        self._r_dst_bps[prow] = np.fromiter((flows[j].nic_bps[1] for j in pinned.tolist()),
                                            dtype=np.float64, count=len(pinned))
        # A host's flows as marks (side, host number): sent (0) and received (1), as the
        # rows of _host_rows, old rows first, then this batch's in order (CSR).
        hosts = len(hid)
        mac_of = list(hid)
        fmark = fh + np.array([0, hosts], dtype=np.int64)
        involved = np.unique(fmark)
        old_mark, old_rows = [], []
        for m in involved.tolist():
            entry = self._host_rows.get((0 if m < hosts else 1, mac_of[m % hosts]))
            if entry is not None:
                old_mark.append(np.full(len(entry[0]), m, dtype=np.int64))
                old_rows.append(np.asarray(entry[0], dtype=np.int64))
        old_mark = np.concatenate(old_mark) if old_mark else np.zeros(0, dtype=np.int64)
        old_rows = np.concatenate(old_rows) if old_rows else np.zeros(0, dtype=np.int64)
        marks = np.concatenate([old_mark, fmark[pinned, 0], fmark[pinned, 1]])
        order = np.argsort(marks, kind="stable")
        mark_rows = np.concatenate([old_rows, prow, prow])[order]
        mark_ptr = np.zeros(2 * hosts + 1, dtype=np.int64)
        np.cumsum(np.bincount(marks, minlength=2 * hosts), out=mark_ptr[1:])
        mark_len = np.bincount(old_mark, minlength=2 * hosts).astype(np.int64)
        refreshed = np.full(2 * hosts, -1, dtype=np.int64)
        counted = np.zeros(2 * hosts, dtype=np.int64)
        for (side, mac), v in self._refreshed_at.items():
            refreshed[side * hosts + hid[mac]] = v
        for (side, mac), v in self._counted.items():
            counted[side * hosts + hid[mac]] = v
        # Whether an old row's measured rate stands for its load: fixed within the batch
        # (a flow learned now has no rate and has not started).
        measured = np.zeros(len(self._r_est), dtype=np.bool_)
        if len(old_rows):
            rated = np.unique(old_rows[self._r_rated[old_rows]])
            for r in rated.tolist():
                measured[r] = self.measured(self._r_flow[r], now)
        # The links' measured rates with the fading shifts, as loads_at reads them.
        base = self._meas.copy()
        shifts = self.ports.shifted()
        if shifts:
            extra = np.zeros(len(base))
            for (dpid, port) in list(shifts):
                i = self._port_lid.get((dpid, port))
                if i is not None:
                    extra[i] = self.ports.rate_bps(dpid, port, now) - self._meas[i]
            base += extra
            np.maximum(base, 0.0, out=base)
        m_hops = np.array([idx.shape[0] for _, idx in matrices], dtype=np.int64)
        m_paths = np.array([idx.shape[1] for _, idx in matrices], dtype=np.int64)
        m_off = np.zeros(len(matrices) + 1, dtype=np.int64)
        np.cumsum(m_hops * m_paths, out=m_off[1:])
        m_links = (np.concatenate([idx.ravel() for _, idx in matrices]).astype(np.int64)
                   if matrices else np.zeros(0, dtype=np.int64))
        choice = np.full(n, -1, dtype=np.int64)
        _kernels()(fh, matrix_of, rows, fmark, m_off, m_hops, m_paths, m_links,
                   self._n_from, self._n_to, mark_ptr, mark_rows, mark_len, refreshed,
                   counted, self._r_lids, self._r_est, self._r_src_bps, self._r_dst_bps,
                   self._r_src_h, self._r_dst_h, measured, self._est, base, self._cap,
                   REFRESH_FRACTION, choice)
        # Written back: the marks' refresh counts and counted flows, their rows, the
        # flows' paths and links, the per-link rows.
        for m in involved.tolist():
            mark = (0 if m < hosts else 1, mac_of[m % hosts])
            self._refreshed_at[mark] = int(refreshed[m])
            if counted[m]:
                self._counted[mark] = int(counted[m])
        host_rows = self._host_rows
        new_marks = np.concatenate([fmark[pinned, 0], fmark[pinned, 1]])
        order = np.argsort(new_marks, kind="stable")
        grouped = np.concatenate([prow, prow])[order]
        bounds = np.cumsum(np.bincount(new_marks, minlength=2 * hosts)).tolist()
        start = 0
        for m, end in enumerate(bounds):
            if end > start:
                mark = (0 if m < hosts else 1, mac_of[m % hosts])
                entry = host_rows.get(mark)
                if entry is None:
                    host_rows[mark] = [grouped[start:end].tolist(), None]
                else:
                    entry[0].extend(grouped[start:end].tolist())
                start = end
        del grouped, order, new_marks
        # The per-link rows, each link's in the flows' order (as pinning appends them).
        lids = self._r_lids[prow]
        on_link = lids >= 0
        link_of = lids[on_link]
        order = np.argsort(link_of, kind="stable")
        link_rows = np.broadcast_to(prow[:, None], lids.shape)[on_link][order]
        link_of = link_of[order]
        cuts = np.flatnonzero(np.diff(link_of)) + 1
        on = self._on
        for i, part in zip(link_of[np.concatenate([[0], cuts])].tolist() if len(link_of)
                           else [], np.split(link_rows, cuts)):
            entry = on.get(i)
            if entry is None:
                on[i] = [part.tolist(), len(part)]
                continue
            entry[0].extend(part.tolist())
            entry[1] += len(part)
            if len(entry[0]) > 2 * entry[1] + 32:
                self._live_on(i, entry)
        del lids, on_link, link_of, link_rows, order
        # The flows' rows, links and paths (one tuple per path chosen, shared).
        links, r_flow = self.links, self._r_flow
        made = {}
        step = 1 << 16
        for lo in range(0, len(pinned), step):
            for j, r, m, c in zip(pinned[lo:lo + step].tolist(), prow[lo:lo + step].tolist(),
                                  matrix_of[pinned[lo:lo + step]].tolist(),
                                  choice[pinned[lo:lo + step]].tolist()):
                flow = flows[j]
                flow.row = r
                r_flow[r] = flow
                got = made.get((m, c))
                if got is None:
                    src, idx = matrices[m]
                    lids = tuple(idx[:, c].tolist())
                    got = made[(m, c)] = (lids, (src,) + tuple([links[i][1] for i in lids]))
                flow.lids, flow.path = got
        return len(pinned)

    def _host(self, mac):
        h = self._hid[mac] = len(self._hid)
        if h == len(self._n_from):
            grow = max(64, h)
            self._n_from = np.concatenate([self._n_from, np.zeros(grow, dtype=np.int64)])
            self._n_to = np.concatenate([self._n_to, np.zeros(grow, dtype=np.int64)])
            self._n_from_mv, self._n_to_mv = memoryview(self._n_from), memoryview(self._n_to)
        return h

    def _add_row(self, flow):
        """Give a flow pinned for the first time its row (it keeps it until forgotten, so
        its host's rows stay in the order their flows were first pinned: under
        ``congestion``, the order they were learned)."""
        row = self._free.pop() if self._free else self._new_row()
        flow.row = row
        self._r_flow[row] = flow
        self._r_est_mv[row] = 0.0
        self._r_src_bps_mv[row], self._r_dst_bps_mv[row] = flow.nic_bps
        self._r_src_h_mv[row] = self._hid[flow.src]
        self._r_dst_h_mv[row] = self._hid[flow.dst]
        self._r_rated_mv[row] = flow.rate_bps is not None
        host_rows = self._host_rows
        for mark in ((0, flow.src), (1, flow.dst)):
            rows = host_rows.get(mark)
            if rows is None:
                host_rows[mark] = [[row], None]
            else:
                rows[0].append(row)

    def _new_row(self):
        row = self._rows
        if row == len(self._r_est):
            grow = max(64, row)
            self._r_lids = np.concatenate(
                [self._r_lids, np.full((grow, self._r_lids.shape[1]), -1, dtype=np.int32)])
            for name in ("_r_est", "_r_rated", "_r_src_bps", "_r_dst_bps",
                         "_r_src_h", "_r_dst_h"):
                col = getattr(self, name)
                col = np.concatenate([col, np.zeros(grow, dtype=col.dtype)])
                setattr(self, name, col)
                # Single rows change through memoryviews, as _est does.
                setattr(self, name + "_mv", memoryview(col))
            self._r_flow.extend([None] * grow)
        self._rows = row + 1
        return row

    def _new_rows(self, count):
        """Add ``count`` rows at once (as many :meth:`_new_row`); returns the first."""
        first = self._rows
        while first + count > len(self._r_est):
            self._rows = len(self._r_est)
            self._new_row()   # grows every column
        self._rows = first + count
        return first

    def _drop_row(self, flow):
        row = flow.row
        for mark in ((0, flow.src), (1, flow.dst)):
            rows = self._host_rows[mark]
            rows[0].remove(row)
            rows[1] = None
            if not rows[0]:
                del self._host_rows[mark]
        self._r_flow[row] = None
        self._free.append(row)
        flow.row = -1

    @property
    def pinned_rows(self):
        """How many tracked flows have a row (have been pinned): 0 means no flow has a path."""
        return self._rows - len(self._free)

    def estimate(self, flow):
        """The estimated demand (bit/s) ``flow`` counts on its path's links now (0 once its
        measured rate stands for its load, or while it is not pinned)."""
        return self._r_est_mv[flow.row] if flow.row >= 0 else 0.0

    def remove(self, key, now):
        """Forget a flow; returns it (None if unknown)."""
        flow = self.flows.pop(key, None)
        if flow is None:
            return None
        self._place(flow, None)
        for index, mac in ((self._from, flow.src), (self._to, flow.dst)):
            keys = index[mac]
            keys.pop(key, None)
            if not keys:
                del index[mac]
        self._n_from_mv[self._hid[flow.src]] -= 1
        self._n_to_mv[self._hid[flow.dst]] -= 1
        if flow.row >= 0:
            self._drop_row(flow)
        self._refresh_ends(flow, now)
        return flow

    def clear(self):
        """Forget every flow (measured port rates stay)."""
        for flow in self.flows.values():
            flow.row = -1
            flow.lids = ()
        self.flows.clear()
        self._est[:] = 0.0
        self._from.clear()
        self._to.clear()
        self._rows = 0
        self._r_flow = [None] * len(self._r_flow)
        self._r_lids[:] = -1
        self._r_est[:] = 0.0
        self._free = []
        self._n_from[:] = 0
        self._n_to[:] = 0
        self._host_rows.clear()
        self._on.clear()
        self._due = []
        self._refreshed_at.clear()
        self._counted.clear()

    def set_path(self, flow, path, now):
        """Pin a flow to ``path`` (a tuple of dpids) or let it follow the groups (None)."""
        self._place(flow, None)
        flow.path = None if path is None else tuple(path)
        self._place(flow, flow.path)
        self.refresh(flow, now)

    def _place(self, flow, path):
        row = flow.row
        if path is None:
            if flow.path is not None:
                self._add_est(flow.lids, -self._r_est_mv[row])
                self._r_est_mv[row] = 0.0
                if flow.lids:
                    self._counted[(0, flow.src)] -= 1
                    self._counted[(1, flow.dst)] -= 1
                    on = self._on
                    for i in flow.lids:
                        on[i][1] -= 1
                    self._r_lids[row] = -1
                flow.lids = ()
            return
        if row < 0:
            self._add_row(flow)
            row = flow.row
        links = list(zip(path, path[1:]))
        lid = self._lid
        try:
            flow.lids = tuple([lid[link] for link in links])
        except KeyError:  # a link not indexed yet
            flow.lids = tuple([self.link_index(link) for link in links])
        if flow.lids:
            self._counted[(0, flow.src)] += 1
            self._counted[(1, flow.dst)] += 1
            width = self._r_lids.shape[1]
            if len(flow.lids) > width:
                wide = np.full((len(self._r_lids), len(flow.lids)), -1, dtype=np.int32)
                wide[:, :width] = self._r_lids
                self._r_lids = wide
            self._r_lids[row, :len(flow.lids)] = flow.lids
            on = self._on
            for i in flow.lids:
                entry = on.get(i)
                if entry is None:
                    on[i] = [[row], 1]
                    continue
                entry[0].append(row)
                entry[1] += 1
                if len(entry[0]) > 2 * entry[1] + 32:   # stale ones dropped: bounded memory
                    self._live_on(i, entry)

    def flows_on(self, link):
        """The flows pinned across the directed link ``(u, v)``, in the order of their rows:
        O(flows on the link), whatever the number of flows elsewhere."""
        i = self._lid.get(link)
        entry = None if i is None else self._on.get(i)
        if not entry or not entry[1]:
            return []
        flow_of = self._r_flow
        return [flow_of[r] for r in self._live_on(i, entry)]

    def _live_on(self, i, entry):
        """The rows crossing link ``i`` now, sorted, once each; the entry keeps only them."""
        rows = np.unique(np.asarray(entry[0], dtype=np.int64))
        rows = rows[(self._r_lids[rows] == i).any(axis=1)].tolist()
        entry[0] = rows
        return rows

    def pinned_counts(self):
        """``{(u, v): flows pinned across it}`` of every link some pinned flow crosses."""
        return {self.links[i]: n for i, (_, n) in self._on.items() if n}

    def _add_est(self, lids, bps):
        if bps:
            est = self._est_mv
            for i in lids:
                est[i] += bps

    # -- the dense link index --------------------------------------------------------------
    def link_index(self, link):
        """The dense index of a directed link (assigned on first use)."""
        i = self._lid.get(link)
        if i is None:
            i = self._lid[link] = len(self._lid)
            self.links.append(link)
            if i >= len(self._est):
                grow = len(self._est)
                self._est = np.concatenate([self._est, np.zeros(grow)])
                self._est_mv = memoryview(self._est)
                self._meas = np.concatenate([self._meas, np.zeros(grow)])
                self._cap = np.concatenate([self._cap, np.ones(grow)])
            self._bind(link, i)
        return i

    def _bind(self, link, i):
        u, v = link
        port = self._adj.get(u, {}).get(v)
        if port is None:
            return
        self._port_lid[(u, port)] = i
        self._meas[i] = self.ports.measured_bps(u, port)
        self._cap[i] = self._capacity(u, v)

    def relink(self, pairs):
        """The ports of these switch pairs changed: rebind their links' rates and capacities
        (every pair, for None)."""
        if pairs is None:
            self._port_lid = {}
            links = list(self._lid)
        else:
            links = [link for a, b in pairs for link in ((a, b), (b, a)) if link in self._lid]
        for link in links:
            self._bind(link, self._lid[link])

    def sample(self, dpid, port, tx_bytes, now):
        """Feed a port's cumulative transmit counter, read at ``now``."""
        rate = self.ports.sample(dpid, port, tx_bytes, now)
        i = self._port_lid.get((dpid, port))
        if i is not None and rate is not None:
            self._meas[i] = rate

    def forget_switch(self, dpid):
        """A switch disconnected: its counters restart."""
        self.ports.forget(dpid)
        for (u, port), i in self._port_lid.items():
            if u == dpid:
                self._meas[i] = 0.0

    def loads_at(self, idx, now):
        """Projected bit/s (as :meth:`link_load`) of the links at dense indices ``idx``
        (a numpy integer array of any shape); a new array the caller may change."""
        # take(), not fancy indexing: it converts the int32 indices without a copy.
        load = self._meas.take(idx)
        shifts = self.ports.shifted()
        if shifts:
            # Expected changes of recent moves, on the few ports that have them: set in a
            # scratch array, read at idx, and cleared again (never a pass over every link).
            extra = self._extra
            if len(extra) != len(self._meas):
                extra = self._extra = np.zeros(len(self._meas))
            marked = []
            for (dpid, port) in list(shifts):
                i = self._port_lid.get((dpid, port))
                if i is not None:
                    extra[i] = self.ports.rate_bps(dpid, port, now) - self._meas[i]
                    marked.append(i)
            load += extra.take(idx)
            np.maximum(load, 0.0, out=load)
            extra[marked] = 0.0
        # Estimates at or below the threshold are rounding residue of additions and
        # removals (as in link_load).
        est = self._est.take(idx)
        est[est <= 1e-6] = 0.0
        est += load
        return est

    def capacities_at(self, idx):
        """Capacities (bit/s) of the links at dense indices ``idx``."""
        return self._cap.take(idx)

    def flows_of(self, mac):
        """Keys of the flows a host sends."""
        return self._from.get(mac, ())

    def flows_to(self, mac):
        """Keys of the flows a host receives."""
        return self._to.get(mac, ())

    def count_from(self, mac):
        return len(self._from.get(mac, ()))

    def count_to(self, mac):
        return len(self._to.get(mac, ()))

    # -- measurement -----------------------------------------------------------------------
    def measure(self, flow, bytes_total, now):
        """Feed a flow's cumulative byte counter; returns the bytes it grew by.

        A started flow's rate averages only the time it has been sending. A connection
        opened ahead of its transfer is read idle for a while, and an average begun from
        those zeros would take ``tau_s`` to show what it sends (at ``tau_s`` 2 s, a tenth of
        its rate after a quarter-second round: hot links and elephants went unseen for half
        of a one-second transfer). So the reading that sees it start sets its rate to that
        interval's alone, and the next, all of it sending, replaces that again (the interval
        it started in holds idle time too), topping up the expected change on its links
        (:meth:`shift`) by the difference. The links' averages took that interval in too
        (the ports are read in the same round), with the weight a sample ``dt`` after the
        last gets (:func:`ewma_weight`): the change is expected only for the part they have
        not shown, ``exp(-dt / tau_s)`` of it, which then fades as they catch up, so average
        plus change is the rate. Shifted whole, a link carrying one flow at line rate read
        1.2-1.6 of its capacity for a second (emulation, k=4 random permutation), and no
        move off a hot link looked better by ``move_margin``. A flow that has not started
        (an idle connection, the ACK direction of a transfer) is averaged as before."""
        fresh, before, read_at = flow.fresh, flow.rate_bps, flow.at
        grown = flow.update(bytes_total, now, self.tau_s, smooth=not fresh)
        if flow.row >= 0 and flow.rate_bps is not None:
            self._r_rated_mv[flow.row] = True
        if fresh and flow.at != read_at:   # a reading, not a repeat of the last instant
            flow.fresh = False
            if flow.path is not None and before is not None and flow.rate_bps != before:
                self.shift(flow.path, (flow.rate_bps - before) * self._unseen(read_at, now),
                           now)
        if grown > 0:
            flow.active_at = now
            flow.sent_bytes += grown
            if not flow.started and flow.sent_bytes >= self.young_bytes:
                flow.started = flow.fresh = True
                if read_at is not None and now > read_at:
                    flow.rate_bps = grown * 8.0 / (now - read_at)
                # Its estimate stops counting; the link averages have not caught up yet.
                if flow.path is not None and flow.rate_bps:
                    self.shift(flow.path, flow.rate_bps * self._unseen(read_at, now), now)
                other = self.flows.get(FlowKey.reverse(flow.key))
                if other is not None:
                    self.refresh(other, now)
        self.refresh(flow, now)
        return grown

    def _unseen(self, read_at, now):
        """The part of a rate new since ``read_at`` that the links' averages, sampled at
        ``now`` too, do not show yet (see :meth:`measure`)."""
        if read_at is None or now <= read_at:
            return 1.0
        return 1.0 - ewma_weight(now - read_at, self.tau_s)

    def measured(self, flow, now):
        """Whether a flow's measured rate stands for its load: once it has started (sent
        ``young_bytes``); once the other direction of its connection has started and it has
        not (it carries that transfer's ACKs); or once it has been measured for ``tau_s``
        without starting (a connection opened ahead of use). Its load is then what it
        sends, which the port counters already show."""
        if flow.rate_bps is None:
            return False
        if flow.started or now - flow.seen_at >= self.tau_s:
            return True
        other = self.flows.get(FlowKey.reverse(flow.key))
        return other is not None and other.started

    def flow_rate(self, flow, now):
        """A flow's load for placement: its measured rate once :meth:`measured`, else an
        estimate: the sender's NIC rate shared by its learned flows, capped likewise at the
        receiver (the first step of Hedera's demand estimation)."""
        if self.measured(flow, now):
            return flow.rate_bps
        src_bps, dst_bps = flow.nic_bps
        return min(src_bps / max(1, len(self._from.get(flow.src, ()))),
                   dst_bps / max(1, len(self._to.get(flow.dst, ()))))

    def refresh(self, flow, now):
        """Bring a flow's share of its links' estimated load up to date."""
        if flow.path is None:
            return  # unpinned flows carry no estimate (see _place)
        if self.measured(flow, now):
            want = 0.0
        else:
            src_bps, dst_bps = flow.nic_bps
            want = min(src_bps / max(1, len(self._from.get(flow.src, ()))),
                       dst_bps / max(1, len(self._to.get(flow.dst, ()))))
        est = self._r_est_mv
        had = est[flow.row]
        if want != had:
            self._add_est(flow.lids, want - had)
            est[flow.row] = want

    def _refresh_ends(self, flow, now):
        """Estimates of the flows sharing ``flow``'s sender or receiver, whose shares moved.

        The flow itself is always brought up to date. The others are, for a host whose flow
        count has moved by more than :data:`REFRESH_FRACTION` since they last were (and
        always for a host with few flows): each estimate stays within that fraction of its
        exact value, and a burst of n new flows at one host costs O(n) in all, not O(n^2).
        """
        self.refresh(flow, now)
        refreshed_at = self._refreshed_at
        for side, flows, mac in ((0, self._from.get(flow.src, ()), flow.src),
                                 (1, self._to.get(flow.dst, ()), flow.dst)):
            mark = (side, mac)
            last = refreshed_at.get(mark)
            n = len(flows)
            if last is not None and abs(n - last) < REFRESH_FRACTION * last:
                continue
            if n:
                if self._counted.get(mark):
                    self._sweep(mark, n, now)
                refreshed_at[mark] = n
            else:
                refreshed_at.pop(mark, None)

    def _sweep(self, mark, n, now):
        """:meth:`refresh` of every flow of one host (``mark``: ``(side, mac)``, its sent
        flows for side 0, received for 1, ``n`` of them), over the rows of its pinned ones
        at once: this is the hot loop of flow setup. The host's own share is the same for
        all its flows, so only the other end's count is looked up per flow; only a flow
        with a measured rate needs a look of its own (:meth:`measured`). The changes reach
        the links one flow after another, in the order of the rows, as a loop of
        :meth:`refresh` would add them."""
        side = mark[0]
        entry = self._host_rows[mark]
        listed, rows = entry
        if len(listed) <= SWEEP_VECTOR_ROWS:
            self._sweep_rows(side, listed, n, now)
            return
        if rows is None:
            rows = entry[1] = np.array(listed, dtype=np.int64)
        elif len(rows) < len(listed):   # rows were only added since: convert the new ones
            rows = entry[1] = np.concatenate(
                [rows, np.array(listed[len(rows):], dtype=np.int64)])
        rows = rows[self._r_lids[rows, 0] >= 0]   # those with links
        if not len(rows):
            return  # unpinned, or pinned within one switch: no link to count it on
        src_bps, dst_bps = self._r_src_bps[rows], self._r_dst_bps[rows]
        if side == 0:
            mine, other = src_bps / n, dst_bps / self._n_to[self._r_dst_h[rows]]
        else:
            mine, other = dst_bps / n, src_bps / self._n_from[self._r_src_h[rows]]
        want = np.minimum(mine, other)
        rated = self._r_rated[rows]
        if rated.any():
            measured, flow_of = self.measured, self._r_flow
            for j in np.flatnonzero(rated).tolist():
                if measured(flow_of[rows[j]], now):
                    want[j] = 0.0
        delta = want - self._r_est[rows]
        changed = delta != 0.0
        if not changed.any():
            return
        rows, delta = rows[changed], delta[changed]
        self._r_est[rows] = want[changed]
        lids = self._r_lids[rows]
        on = lids >= 0
        # np.add.at adds unbuffered, element by element in order: the same sums, bit for
        # bit, as a loop over the flows and their links.
        np.add.at(self._est, lids[on], np.broadcast_to(delta[:, None], lids.shape)[on])

    def _sweep_rows(self, side, rows, n, now):
        """:meth:`_sweep` for a host with few pinned flows (``rows``), one at a time: the
        same arithmetic in the same order."""
        flow_of, est_of, est, measured = self._r_flow, self._r_est_mv, self._est_mv, self.measured
        # The other end's count: the receiver's for sent flows, the sender's for received.
        counts = self._to if side == 0 else self._from
        for row in rows:
            f = flow_of[row]
            lids = f.lids
            if not lids:
                continue
            if f.rate_bps is not None and measured(f, now):
                want = 0.0
            else:
                src_bps, dst_bps = f.nic_bps
                if side == 0:
                    mine, other = src_bps / n, dst_bps / len(counts[f.dst])
                else:
                    mine, other = dst_bps / n, src_bps / len(counts[f.src])
                want = mine if mine < other else other
            delta = want - est_of[row]
            if delta:
                est_of[row] = want
                for i in lids:
                    est[i] += delta

    def advance(self, now):
        """Let the estimates that have lapsed by ``now`` stop counting."""
        due = self._due
        while due and due[0][0] <= now:
            _, key = heapq.heappop(due)
            flow = self.flows.get(key)
            if flow is not None:
                self.refresh(flow, now)

    # -- links -----------------------------------------------------------------------------
    def shift(self, path, bps, now):
        """Expect the links of ``path`` to carry ``bps`` more (less, if negative) from now."""
        for u, v in zip(path, path[1:]):
            self.ports.shift(u, self._adj[u][v], bps, now)

    def link_load(self, u, v, now):
        """Projected bit/s on the directed link u->v (call :meth:`advance` first)."""
        i = self._lid.get((u, v))
        est = 0.0 if i is None else self._est_mv[i]
        return self.ports.rate_bps(u, self._adj[u][v], now) + (est if est > 1e-6 else 0.0)


# -- the batch placement, compiled -------------------------------------------------------------
def _sweep_mark(k, n, side, mark_ptr, mark_rows, mark_len, r_lids, r_est, r_src_bps,
                r_dst_bps, r_src_h, r_dst_h, measured, n_from, n_to, est):
    """LoadModel._sweep of mark ``k`` (``n`` flows) over its rows in order."""
    start = mark_ptr[k]
    for q in range(start, start + mark_len[k]):
        r = mark_rows[q]
        if r_lids[r, 0] < 0:
            continue
        if measured[r]:
            want = 0.0
        else:
            if side == 0:
                mine = r_src_bps[r] / n
                other = r_dst_bps[r] / n_to[r_dst_h[r]]
            else:
                mine = r_dst_bps[r] / n
                other = r_src_bps[r] / n_from[r_src_h[r]]
            want = mine if mine < other else other
        delta = want - r_est[r]
        if delta != 0.0:
            r_est[r] = want
            for c in range(r_lids.shape[1]):
                i = r_lids[r, c]
                if i < 0:
                    break
                est[i] += delta


def _least_loaded(fh, matrix_of, rows, fmark, m_off, m_hops, m_paths, m_links, n_from, n_to,
                  mark_ptr, mark_rows, mark_len, refreshed, counted, r_lids, r_est, r_src_bps,
                  r_dst_bps, r_src_h, r_dst_h, measured, est, base, cap, fraction, choice):
    """The loop of LoadModel.learn_least_loaded: per flow in order, its ends' counts grow
    and their flows' estimates are redone as _refresh_ends does; then the candidate whose
    most utilized link (then the sum over its links) is least with the flow's estimate on
    it, the first of equals (as Congestion.place's lexsort); then it is pinned there and its
    estimate counted on its links (set_path)."""
    for j in range(len(matrix_of)):
        s = fh[j, 0]
        d = fh[j, 1]
        n_from[s] += 1
        n_to[d] += 1
        for side in range(2):
            k = fmark[j, side]
            n = n_from[s] if side == 0 else n_to[d]
            last = refreshed[k]
            if last >= 0 and abs(n - last) < fraction * last:
                continue
            if counted[k] > 0:
                _sweep_mark(k, n, side, mark_ptr, mark_rows, mark_len, r_lids, r_est,
                            r_src_bps, r_dst_bps, r_src_h, r_dst_h, measured, n_from, n_to,
                            est)
            refreshed[k] = n
        m = matrix_of[j]
        if m < 0:
            continue
        r = rows[j]
        a = r_src_bps[r] / n_from[s]
        b = r_dst_bps[r] / n_to[d]
        want = b if b < a else a
        hops = m_hops[m]
        paths = m_paths[m]
        off = m_off[m]
        best = 0
        best_peak = 0.0
        best_sum = 0.0
        if hops > 0:
            for p in range(paths):
                peak = 0.0
                total = 0.0
                for h in range(hops):
                    i = m_links[off + h * paths + p]
                    e = est[i]
                    if e <= 1e-6:
                        e = 0.0
                    u = ((e + base[i]) + want) / cap[i]
                    if h == 0:
                        peak = u
                        total = u
                    else:
                        total += u
                        if u > peak:
                            peak = u
                if p == 0 or peak < best_peak or (peak == best_peak and total < best_sum):
                    best, best_peak, best_sum = p, peak, total
        choice[j] = best
        mark_len[fmark[j, 0]] += 1
        mark_len[fmark[j, 1]] += 1
        for h in range(hops):
            r_lids[r, h] = m_links[off + h * paths + best]
        if hops > 0:
            counted[fmark[j, 0]] += 1
            counted[fmark[j, 1]] += 1
        had = r_est[r]
        if want != had:
            for h in range(hops):
                est[r_lids[r, h]] += want - had
            r_est[r] = want


_LEAST_LOADED = None


def _kernels():
    """The batch placement compiled with numba (from its on-disk cache after the first
    time), made once per process."""
    global _LEAST_LOADED, _sweep_mark
    if _LEAST_LOADED is None:
        import numba
        jit = numba.njit(cache=True)
        _sweep_mark = jit(_sweep_mark)
        _LEAST_LOADED = jit(_least_loaded)
    return _LEAST_LOADED
