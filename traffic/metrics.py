"""Run metrics from flow records and the topology model, the same for every backend.

Inputs are the :class:`~traffic.schedule.Schedule` that was run, the fabric graph
(fabric/model.py, nominal units) and one flow record per flow as the backend logged it. This
module never runs traffic, reads a clock, talks to Mininet or the controller, or guesses what
a backend meant: a record that contradicts its schedule is an error.

Flow records
------------
A dict with ``id``, ``start_s``, ``end_s`` (emulated seconds since the clock started; ``end_s``
is None until the flow has been completely received) and ``bytes_received``; ``src``, ``dst``
and ``bytes`` may be repeated and must then match the schedule. A flow with no record has not
started. A backend that runs millions of flows gives :class:`FlowRecords` instead (arrays in
schedule order); :func:`summarize` reads either.

Units
-----
Bounds come from the model and are nominal. Emulated times convert with ``time_scale``:
``nominal_s = emulated_s * time_scale`` (e.g. 400 Gbit/s links emulated at 0.4 Gbit/s give
``time_scale = 0.001``). Every key says its unit: ``_s`` nominal seconds, ``_emulated_s``
emulated seconds, ``_gbps`` nominal Gbit/s.

Bounds
------
- per NIC: no host can send or receive faster than its link,
  ``max(bytes sent, bytes received) * 8 / rate``;
- cuts: for every group of nodes sharing a ``leaf``, ``pod`` or ``site`` tag, and for the two
  halves of the sorted groups, traffic leaving (entering) the group must cross the links
  leaving it, each direction at full capacity.

Both ignore dependencies and ``start_s`` offsets: they bound the volume, not the critical path.
They read the schedule's columns (traffic/schedule.py ``Columns``) and sum bytes per host and
per group with bincounts: no host-by-host matrix, so they hold at 8,192 hosts.
"""

import csv
import json
import math
import re
from dataclasses import dataclass

import numpy as np

from fabric.model import host_rate_gbps, hosts as fabric_hosts
from traffic.schedule import ScheduleError

CUT_TAGS = ("leaf", "pod", "site")
FCT_PERCENTILES = (50, 95, 99)
# Collectives whose bandwidth-optimal algorithms send busbw_factor * S bytes per rank, so S can
# be read off the schedule; others need meta["size_bytes"].
SIZE_FROM_TRAFFIC = ("allreduce", "allgather", "reducescatter", "alltoall")
FLOW_CSV_COLUMNS = ("id", "src", "dst", "bytes", "bytes_received", "start_s", "end_s", "fct_s",
                    "completed", "fct_nominal_s", "tags")


def _transfer_s(nbytes, capacity_gbps):
    """Seconds to move ``nbytes`` at ``capacity_gbps``; inf if bytes must cross no capacity."""
    if nbytes == 0:
        return 0.0
    if capacity_gbps <= 0:
        return math.inf
    return float(nbytes) * 8 / (capacity_gbps * 1e9)


@dataclass(frozen=True, eq=False)
class FlowRecords:
    """Flow records as arrays, one entry per flow of the schedule, in its order.

    ``start_s`` and ``end_s`` are NaN where the flow did not start or was not completely
    received; ``bytes_received`` is 0 for a flow that did not start.
    """

    start_s: np.ndarray
    end_s: np.ndarray
    bytes_received: np.ndarray


def fabric_codes(g, schedule):
    """The schedule's columns and, for each of its hosts, its index among the fabric's
    hosts; raises ScheduleError naming a flow whose end is not a host of ``g``."""
    hs = fabric_hosts(g)
    index = {h: i for i, h in enumerate(hs)}
    cols = schedule.columns()
    codes = np.array([index.get(h, -1) for h in cols.hosts], dtype=np.int32)
    if (codes < 0).any():
        unknown = np.flatnonzero(codes < 0)
        fi = int(np.flatnonzero(np.isin(cols.src, unknown) | np.isin(cols.dst, unknown))[0])
        f = schedule.flows[fi]
        raise ScheduleError(f"flow {f.id!r}: {f.src!r} -> {f.dst!r} leaves the given hosts")
    return hs, cols, codes


def host_bytes(g, schedule):
    """Bytes each host of ``g`` sends and receives, as two arrays in ``hosts(g)`` order."""
    hs, cols, codes = fabric_codes(g, schedule)
    w = cols.bytes.astype(np.float64)
    sent = np.bincount(codes[cols.src], weights=w, minlength=len(hs))
    received = np.bincount(codes[cols.dst], weights=w, minlength=len(hs))
    return sent, received


def per_nic_bound_s(g, schedule):
    """Nominal time the busiest NIC needs: max over hosts of max(sent, received) / rate.

    For a uniform all-to-all of n ranks with ``S = n * per-pair bytes`` on NICs of rate ``B``
    this is ``(n - 1) / n * S / B``.

    Parameters
    ----------
    g : networkx.Graph
        The fabric (fabric/model.py).
    schedule : Schedule

    Returns
    -------
    float
        Seconds, nominal; 0.0 for an empty schedule.

    Raises
    ------
    ScheduleError
        If a flow's end is not a host of ``g``.
    """
    hs = fabric_hosts(g)
    load = np.maximum(*host_bytes(g, schedule))
    return max((_transfer_s(int(b), host_rate_gbps(g, h)) for h, b in zip(hs, load)),
               default=0.0)


def _natural_key(value):
    """Sort key putting ``e2`` before ``e10`` and 2 before 10."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t)
            for t in re.split(r"(\d+)", str(value)) if t]


def _cut(g, name, nodes, bytes_out, bytes_in):
    capacity = sum(d["capacity_gbps"] for u, v, d in g.edges(nodes, data=True)
                   if (u in nodes) != (v in nodes))
    return {"name": name, "capacity_gbps": float(capacity), "bytes_out": int(bytes_out),
            "bytes_in": int(bytes_in), "bound_s": _transfer_s(max(bytes_out, bytes_in),
                                                              capacity)}


def _crossing(label, src, dst, w, n_labels):
    """Bytes leaving and entering each label's hosts (label -1: in no group)."""
    ls, ld = label[src], label[dst]
    moves = ls != ld
    out = np.bincount(ls[moves & (ls >= 0)], weights=w[moves & (ls >= 0)], minlength=n_labels)
    into = np.bincount(ld[moves & (ld >= 0)], weights=w[moves & (ld >= 0)], minlength=n_labels)
    return out.round().astype(np.int64), into.round().astype(np.int64)


def cuts(g, schedule):
    """Every fabric cut the cut bound looks at, for reporting.

    For each tag in ``("leaf", "pod", "site")`` that some host carries, nodes (hosts and
    switches) are grouped by its value; nodes without the tag (core, spine) are in no group.
    Each group is one cut; with three or more groups, each half of the naturally sorted values
    that holds more than one group is another (a single-group half repeats that group's cut).

    Parameters
    ----------
    g : networkx.Graph
    schedule : Schedule

    Returns
    -------
    list of dict
        ``name`` (``"pod=1"``, ``"pod[0..1]"`` for a half), ``capacity_gbps`` of the links
        leaving the node set (per direction), ``bytes_out``, ``bytes_in`` and ``bound_s``
        (nominal; inf if bytes must leave a set that has no links out).

    Raises
    ------
    ScheduleError
        If a flow's end is not a host of ``g``.
    """
    hs, cols, codes = fabric_codes(g, schedule)
    src, dst = codes[cols.src], codes[cols.dst]
    w = cols.bytes.astype(np.float64)
    result = []
    for tag in CUT_TAGS:
        if not any(tag in g.nodes[h] for h in hs):
            continue
        groups = {}
        for node, value in g.nodes(data=tag):
            if value is not None:
                groups.setdefault(value, set()).add(node)
        values = sorted(groups, key=_natural_key)
        at = {v: i for i, v in enumerate(values)}
        label = np.array([at.get(g.nodes[h].get(tag), -1) for h in hs], dtype=np.int32)
        out, into = _crossing(label, src, dst, w, len(values))
        result.extend(_cut(g, f"{tag}={v}", groups[v], out[i], into[i])
                      for i, v in enumerate(values))
        if len(values) >= 3:
            half = len(values) // 2
            halves = np.where(label < 0, -1, (label >= half)).astype(np.int32)
            out, into = _crossing(halves, src, dst, w, 2)
            for i, part in enumerate((values[:half], values[half:])):
                if len(part) > 1:
                    nodes = set().union(*(groups[v] for v in part))
                    result.append(_cut(g, f"{tag}[{part[0]}..{part[-1]}]", nodes, out[i],
                                       into[i]))
    return result


def cut_bound_s(g, schedule):
    """The largest bound over :func:`cuts`, nominal seconds (0.0 if there are none)."""
    return max((c["bound_s"] for c in cuts(g, schedule)), default=0.0)


def lower_bound_s(g, schedule):
    """``max(per_nic_bound_s, cut_bound_s)``, nominal seconds."""
    return max(per_nic_bound_s(g, schedule), cut_bound_s(g, schedule))


def _canonical(collective):
    return str(collective).lower().replace("_", "").replace("-", "")


def busbw_factor(collective, n):
    """Bus bandwidth factor of NCCL-tests (PERFORMANCE.md): busbw = algbw * factor.

    Parameters
    ----------
    collective : str
        ``allreduce`` (2(n-1)/n); ``allgather``, ``reducescatter``, ``alltoall`` ((n-1)/n);
        ``broadcast``, ``reduce`` (1). Case, ``_`` and ``-`` are ignored.
    n : int
        Number of ranks (>= 1).

    Raises
    ------
    ValueError
        For an unknown collective or a bad ``n``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n: must be an int >= 1, got {n!r}")
    key = _canonical(collective)
    factors = {"allreduce": 2 * (n - 1) / n, "allgather": (n - 1) / n,
               "reducescatter": (n - 1) / n, "alltoall": (n - 1) / n,
               "broadcast": 1.0, "reduce": 1.0}
    if key not in factors:
        raise ValueError(f"collective: unknown collective {collective!r}, expected one of "
                         f"{sorted(factors)}")
    return factors[key]


def collective_bound_s(collective, n, size_bytes, rate_gbps):
    """Bandwidth lower bound of a collective on NICs of ``rate_gbps``, seconds.

    ``busbw_factor * S / B``: all-reduce ``2(n-1)/n * S / B``; all-gather, reduce-scatter and
    all-to-all ``(n-1)/n * S / B`` (README, "Results format"). Units follow the rate:
    nominal Gbit/s give nominal seconds.

    Parameters
    ----------
    collective : str
        A collective :func:`busbw_factor` knows.
    n : int
        Ranks.
    size_bytes : int or float
        NCCL-tests' S.
    rate_gbps : float
        NIC rate, Gbit/s (> 0).

    Examples
    --------
    >>> collective_bound_s("allreduce", 4, 1e9, 8.0)
    1.5
    """
    if isinstance(rate_gbps, bool) or not isinstance(rate_gbps, (int, float)) \
            or not rate_gbps > 0:
        raise ValueError(f"rate_gbps: must be a number > 0, got {rate_gbps!r}")
    return busbw_factor(collective, n) * _transfer_s(size_bytes, rate_gbps)


def percentiles(values, ps=FCT_PERCENTILES):
    """Percentiles of ``values`` as ``{"p50": ..., "p95": ..., "p99": ...}``.

    Linear interpolation (numpy's default); every value None when ``values`` is empty.
    """
    values = [float(v) for v in values]
    if not values:
        return {f"p{p}": None for p in ps}
    return {f"p{p}": float(v) for p, v in zip(ps, np.percentile(values, ps))}


def phase_breakdown(schedule, records, time_scale, tag="phase"):
    """Per value of tag ``tag``: how many flows and bytes, and when the group ran.

    Parameters
    ----------
    schedule : Schedule
    records : iterable of dict
        Flow records (see the module docstring).
    time_scale : float
        Nominal seconds per emulated second.
    tag : str
        Flows are grouped by this tag's value; flows without it form the group None.

    Returns
    -------
    list of dict
        In order of first appearance: ``tag`` (the value), ``flows``, ``flows_completed``,
        ``bytes``, ``start_emulated_s`` (first start), ``end_emulated_s`` (last end, None
        unless every flow of the group completed), ``span_s`` and ``span_emulated_s``.

    Raises
    ------
    ValueError
        As :func:`flow_table`.
    """
    scale = _check_time_scale(time_scale)
    groups = {}
    for row in flow_table(schedule, records, scale):
        groups.setdefault(row["tags"].get(tag), []).append(row)
    result = []
    for value, rows in groups.items():
        starts = [r["start_s"] for r in rows if r["start_s"] is not None]
        done = [r for r in rows if r["completed"]]
        start = min(starts, default=None)
        end = max(r["end_s"] for r in done) if len(done) == len(rows) else None
        span = None if start is None or end is None else end - start
        result.append({"tag": value, "flows": len(rows), "flows_completed": len(done),
                       "bytes": sum(r["bytes"] for r in rows), "start_emulated_s": start,
                       "end_emulated_s": end, "span_s": None if span is None else span * scale,
                       "span_emulated_s": span})
    return result


def _check_time_scale(time_scale):
    if isinstance(time_scale, bool) or not isinstance(time_scale, (int, float)) \
            or not math.isfinite(time_scale) or time_scale <= 0:
        raise ValueError(f"time_scale: must be a finite number > 0, got {time_scale!r}")
    return float(time_scale)


def flow_table(schedule, records, time_scale):
    """One row per flow of ``schedule`` (in its order) joining the flow and its record.

    Parameters
    ----------
    schedule : Schedule
    records : iterable of dict
        Flow records (see the module docstring); flows without one have not started.
    time_scale : float
        Nominal seconds per emulated second.

    Returns
    -------
    list of dict
        Keys :data:`FLOW_CSV_COLUMNS`; times emulated except ``fct_nominal_s``; ``tags`` a dict.

    Raises
    ------
    ValueError
        For a record of an unknown flow, a flow recorded twice, a record whose ``src``,
        ``dst`` or ``bytes`` contradict the schedule, or a completed record without
        ``start_s`` or with ``bytes_received`` other than the flow's bytes.
    """
    scale = _check_time_scale(time_scale)
    flows = {f.id: f for f in schedule.flows}
    by_id = {}
    for r in records:
        fid = r.get("id")
        if fid not in flows:
            raise ValueError(f"record {fid!r}: no such flow in schedule {schedule.name!r}")
        if fid in by_id:
            raise ValueError(f"record {fid!r}: flow recorded twice")
        for key in ("src", "dst", "bytes"):
            if key in r and r[key] != getattr(flows[fid], key):
                raise ValueError(f"record {fid!r}: {key} {r[key]!r} but the schedule says "
                                 f"{getattr(flows[fid], key)!r}")
        by_id[fid] = r
    rows = []
    for f in schedule.flows:
        r = by_id.get(f.id, {})
        start, end = r.get("start_s"), r.get("end_s")
        received = r.get("bytes_received") or 0
        completed = end is not None
        if completed and (start is None or received != f.bytes):
            raise ValueError(f"record {f.id!r}: completed (end_s={end!r}) with start_s={start!r}"
                             f" and {received} of {f.bytes} bytes received")
        fct = end - start if completed else None
        rows.append({"id": f.id, "src": f.src, "dst": f.dst, "bytes": f.bytes,
                     "bytes_received": received, "start_s": start, "end_s": end, "fct_s": fct,
                     "completed": completed,
                     "fct_nominal_s": None if fct is None else fct * scale,
                     "tags": dict(f.tags)})
    return rows


def _collective(schedule):
    """The schedule's collective: meta, else the flows' common tag, else ``"alltoall"``."""
    if schedule.meta.get("collective"):
        return schedule.meta["collective"]
    tagged = {f.tag("collective") for f in schedule.flows} - {None}
    if len(tagged) > 1:
        return "mixed"
    return tagged.pop() if tagged else "alltoall"


def _record_columns(schedule, records):
    """What :func:`summarize` needs from :class:`FlowRecords`: flows, flows completed,
    emulated completion time (None unless every flow completed), bytes received, FCTs of
    the completed flows; the same checks as :func:`flow_table`."""
    cols = schedule.columns()
    start, end = records.start_s, records.end_s
    got = np.asarray(records.bytes_received)
    if not len(start) == len(end) == len(got) == len(cols):
        raise ValueError(f"records: {len(start)} entries for the {len(cols)} flows of "
                         f"schedule {schedule.name!r}")
    done = ~np.isnan(end)
    bad = np.flatnonzero(done & (np.isnan(start) | (got != cols.bytes)))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"record {schedule.flows[i].id!r}: completed (end_s={end[i]!r}) with "
                         f"start_s={start[i]!r} and {got[i]} of {cols.bytes[i]} bytes received")
    n_done = int(done.sum())
    t_emulated = None
    if len(cols) and n_done == len(cols):
        t_emulated = float(end.max() - start.min())
    return len(cols), n_done, t_emulated, int(got.sum()), (end - start)[done]


def _fct_stats(fcts, suffix):
    if not len(fcts):
        values = [None] * (len(FCT_PERCENTILES) + 1)
    else:
        values = [float(v) for v in np.percentile(fcts, FCT_PERCENTILES)] + [float(np.max(fcts))]
    names = [f"p{p}" for p in FCT_PERCENTILES] + ["max"]
    return {f"fct_{name}{suffix}": v for name, v in zip(names, values)}


def summarize(g, schedule, records, time_scale):
    """Everything a run is judged by, from its schedule, fabric and flow records.

    Parameters
    ----------
    g : networkx.Graph
        The fabric, nominal units.
    schedule : Schedule
    records : iterable of dict
        Flow records (see the module docstring).
    time_scale : float
        Nominal seconds per emulated second.

    Returns
    -------
    dict
        ``flows_total``, ``flows_completed``, ``bytes_total``, ``bytes_received``;
        ``completion_time_s`` and ``completion_time_emulated_s`` (last end minus first start,
        None unless every flow completed); ``lower_bound_s``, ``lower_bound_emulated_s``,
        ``per_nic_bound_s``, ``cut_bound_s``; ``efficiency`` (lower bound / completion time);
        ``collective``, ``ranks``, ``size_bytes`` (NCCL's S), ``busbw_factor``,
        ``algbw_gbps`` (S / t) and ``busbw_gbps`` (algbw * factor), None where undefined;
        ``fct_p50_s``, ``fct_p95_s``, ``fct_p99_s``, ``fct_max_s`` over completed flows and
        the same with ``_emulated_s``; ``time_scale``.

    Notes
    -----
    ``size_bytes`` is ``meta["size_bytes"]`` if the generator set it; otherwise, for the
    collectives in :data:`SIZE_FROM_TRAFFIC`, the mean bytes sent per rank divided by the
    busbw factor (for all-to-all: mean sent * n / (n - 1), since NCCL counts the chunk a rank
    keeps). A uniform all-to-all finishing at its per-NIC bound then has busbw = NIC rate.

    Raises
    ------
    ValueError
        For a bad ``time_scale`` or records that contradict the schedule (see
        :func:`flow_table`).
    """
    scale = _check_time_scale(time_scale)
    if isinstance(records, FlowRecords):
        n_rows, n_done, t_emulated, received, fcts = _record_columns(schedule, records)
    else:
        rows = flow_table(schedule, records, scale)
        done = [r for r in rows if r["completed"]]
        n_rows, n_done, received = len(rows), len(done), sum(r["bytes_received"] for r in rows)
        t_emulated = None
        if rows and len(done) == len(rows):
            t_emulated = max(r["end_s"] for r in rows) - min(r["start_s"] for r in rows)
        fcts = np.array([r["fct_s"] for r in done], dtype=np.float64)
    t = None if t_emulated is None else t_emulated * scale
    nic, cut = per_nic_bound_s(g, schedule), cut_bound_s(g, schedule)
    bound = max(nic, cut)

    collective = _collective(schedule)
    n = len(schedule.hosts())
    try:
        factor = busbw_factor(collective, n)
    except ValueError:
        factor = None
    size = schedule.meta.get("size_bytes")
    if size is None and factor and _canonical(collective) in SIZE_FROM_TRAFFIC:
        size = schedule.total_bytes() / n / factor
    algbw = size * 8 / t / 1e9 if size is not None and t else None

    return {
        "flows_total": n_rows,
        "flows_completed": n_done,
        "bytes_total": schedule.total_bytes(),
        "bytes_received": received,
        "completion_time_s": t,
        "completion_time_emulated_s": t_emulated,
        "lower_bound_s": bound,
        "lower_bound_emulated_s": bound / scale,
        "per_nic_bound_s": nic,
        "cut_bound_s": cut,
        "efficiency": bound / t if t else None,
        "collective": collective,
        "ranks": n,
        "size_bytes": size,
        "busbw_factor": factor,
        "algbw_gbps": algbw,
        "busbw_gbps": None if algbw is None or factor is None else algbw * factor,
        **_fct_stats(fcts * scale, "_s"),
        **_fct_stats(fcts, "_emulated_s"),
        "time_scale": scale,
    }


def write_flows_csv(path, schedule, records, time_scale):
    """Write :func:`flow_table` as CSV: one row per flow, tags as a JSON column.

    Columns are :data:`FLOW_CSV_COLUMNS`; empty cells mean "did not happen" (no start, no end).
    """
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=FLOW_CSV_COLUMNS)
        writer.writeheader()
        for row in flow_table(schedule, records, time_scale):
            writer.writerow({**row, "tags": json.dumps(row["tags"], sort_keys=True)})


def median_min_max(values):
    """Median, min and max of repeated measurements (e.g. one per seed).

    Parameters
    ----------
    values : iterable of float

    Returns
    -------
    dict
        ``median``, ``min``, ``max`` and ``n``.

    Raises
    ------
    ValueError
        If there are no values or one is None (a run that did not complete must be reported,
        not averaged away).
    """
    values = list(values)
    if not values:
        raise ValueError("values: need at least one value")
    if any(v is None for v in values):
        raise ValueError("values: contains None (a run that did not complete?)")
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()),
            "n": int(arr.size)}
