"""Traces: a run's schedule with its measured timings, recorded and replayed on any fabric.

This module reads and writes trace files and rewrites schedules onto other hosts; it never
runs traffic, reads a clock or touches a network. Reading is all or nothing: the whole file is
parsed and checked before anything is returned, so a bad trace never runs half-way.

Format (JSON lines)
-------------------
A trace is a schedule file (traffic/schedule.py) with optional measurements, so every
schedule file is a trace without them::

    {"schedule": "allreduce-ring", "meta": {...}, "trace": {"version": 1, "time_scale": 0.001,
     "topology": {"name": "fattree", ...}}}
    {"id": "f1", "src": "h1", "dst": "h2", "bytes": 1000, "deps": [], "start_s": 0.0,
     "tags": {"phase": "reduce_scatter"}, "measured": {"start_s": 0.012, "end_s": 0.020,
     "bytes_received": 1000}}

- line 1, the header: ``schedule`` (name), ``meta`` (how the schedule was made), and
  ``trace`` (optional): ``version``, ``time_scale`` (nominal seconds per measured second) and
  ``topology`` (the fabric it ran on, as :func:`fabric.model.summary` writes it);
- every other line, one flow: ``id``, ``src``, ``dst``, ``bytes``, ``deps`` (flow ids that
  must be completely received first), ``start_s`` (earliest start), ``delay_s`` (optional,
  after the deps), ``tags``; and optionally ``measured``, the flow's record from the run:
  ``start_s`` and ``sent_s`` (sender), ``end_s`` (receiver; null if it never completed) and
  ``bytes_received``, in measured seconds since the run's clock started.

Every line is checked against the models :class:`fabric.config.TraceHeader` and
:class:`fabric.config.TraceFlow` (their JSON Schema: docs/schema/trace.json). A malformed
line is reported as ``<path>:<line>: <what is wrong>``; a trace whose flows do
not form a valid DAG, or whose measurements contradict its flows, as ``<path>: ...``.

Replay
------
:func:`replay` moves a trace onto other hosts, by an explicit mapping or by order (the
trace's ``meta["hosts"]`` if it lists them all, else its hosts sorted naturally, onto the
target hosts in order), keeping either the dependencies (``timing="deps"``, the same DAG) or
the measured start times (``timing="measured"``, every flow at its measured start, no
dependencies: an open-loop copy of what happened).
"""

import json
from collections import namedtuple

from fabric.config import Measured, TraceFlow, TraceHeader, ValidationError, explain
from traffic.metrics import _natural_key, flow_table
from traffic.moe import _check_hosts
from traffic.schedule import Flow, Schedule, ScheduleError, iter_jsonl

VERSION = 1
MEASURED_KEYS = tuple(Measured.model_fields)
TIMINGS = ("deps", "measured")

Trace = namedtuple("Trace", "schedule records info")
Trace.__doc__ = """A read trace: the Schedule, its flow records (``[]`` if none) and the
header's ``trace`` object (``{}`` if none)."""


def write_trace(path, schedule, records=(), time_scale=1.0, topology=None):
    """Write ``schedule`` and the measured ``records`` of its run as a trace.

    Parameters
    ----------
    path : str or path-like
    schedule : Schedule
    records : iterable of dict
        Flow records as the agents report them (traffic/metrics.py); flows without one are
        written without ``measured``.
    time_scale : float
        Nominal seconds per measured second, for the header.
    topology : dict, optional
        Description of the fabric (:func:`fabric.model.summary`).

    Raises
    ------
    ValueError
        If a record contradicts the schedule (:func:`traffic.metrics.flow_table`); nothing is
        written then.
    """
    records = list(records)
    flow_table(schedule, records, time_scale)      # checks records against the schedule
    by_id = {r["id"]: r for r in records}
    info = {"version": VERSION, "time_scale": time_scale}
    if topology is not None:
        info["topology"] = topology
    lines = [json.dumps({**schedule.header(), "trace": info})]
    for f in schedule.flows:
        d = f.to_dict()
        if f.id in by_id:
            d["measured"] = {k: by_id[f.id][k] for k in MEASURED_KEYS if k in by_id[f.id]}
        lines.append(json.dumps(d))
    with open(path, "w", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")


def _check(model, obj):
    """``obj`` validated as ``model`` (fabric/config.py: the format's one definition)."""
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise ScheduleError(explain(e, model, obj, quote=False)) from None


def read_trace(path):
    """Read a trace (or a schedule file) completely and check it.

    Returns
    -------
    Trace
        ``(schedule, records, info)``.

    Raises
    ------
    ScheduleError
        ``"<path>:<line>: ..."`` for a malformed line, ``"<path>: ..."`` for an empty file,
        an invalid DAG or measurements that contradict their flows.
    """
    header, info, flows, records = None, {}, [], []
    for lineno, obj in iter_jsonl(path):
        try:
            if header is None:
                header = Schedule.header_from_obj(obj)
                _check(TraceHeader, obj)
                info = obj.get("trace") or {}
                continue
            if not isinstance(obj, dict):
                raise ScheduleError(f"a flow must be a JSON object, got {type(obj).__name__}")
            try:
                line = _check(TraceFlow, obj)
            except ScheduleError as e:
                raise ScheduleError(f"flow {obj.get('id')!r}: {e}") from None
            flow = Flow.from_dict({k: v for k, v in obj.items() if k != "measured"})
            if line.measured is not None:
                # The values as written: a record keeps an integer byte count an integer.
                records.append({"id": flow.id, **obj["measured"]})
            flows.append(flow)
        except ScheduleError as e:
            raise ScheduleError(f"{path}:{lineno}: {e}") from None
    if header is None:
        raise ScheduleError(f"{path}: empty file, expected a header line")
    schedule = Schedule(flows, name=header.name, meta=header.meta)
    try:
        schedule.validate()
        flow_table(schedule, records, info.get("time_scale", 1.0))
    except ValueError as e:
        raise ScheduleError(f"{path}: {e}") from None
    return Trace(schedule, records, info)


def host_mapping(schedule, hosts, mapping=None):
    """Where each host of ``schedule`` goes among ``hosts``.

    Parameters
    ----------
    schedule : Schedule
    hosts : sequence of str
        Target hosts.
    mapping : dict or None
        Trace host -> target host; None maps by order (see the module docstring).

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        If the trace has more hosts than the target, a trace host is not mapped, a target is
        unknown, or two trace hosts map to one target.
    """
    hosts = _check_hosts(hosts)
    used = schedule.hosts()
    if mapping is None:
        listed = schedule.meta.get("hosts")
        if isinstance(listed, (list, tuple)) and set(used) <= set(listed):
            order = list(listed)
        else:
            order = sorted(used, key=_natural_key)
        if len(order) > len(hosts):
            raise ValueError(f"mapping: the trace has {len(order)} hosts, the fabric only "
                             f"{len(hosts)}")
        return dict(zip(order, hosts))
    if not isinstance(mapping, dict):
        raise ValueError(f"mapping: must be a dict or None, got {type(mapping).__name__}")
    missing = [h for h in used if h not in mapping]
    if missing:
        raise ValueError(f"mapping: trace host(s) {', '.join(missing)} are not mapped")
    unknown = sorted({v for v in mapping.values() if v not in hosts})
    if unknown:
        raise ValueError(f"mapping: target host(s) {', '.join(map(str, unknown))} are not "
                         "hosts of the fabric")
    targets = [mapping[h] for h in used]
    if len(set(targets)) != len(targets):
        raise ValueError("mapping: two trace hosts map to the same fabric host")
    return dict(mapping)


def replay(schedule, hosts, mapping=None, timing="deps", records=(), time_scale=1.0):
    """``schedule`` moved onto ``hosts``, ready to run.

    Parameters
    ----------
    schedule : Schedule
    hosts : sequence of str
        The target fabric's hosts.
    mapping : dict, optional
        See :func:`host_mapping`.
    timing : {"deps", "measured"}
        Keep the DAG, or start every flow at its measured start without dependencies.
    records : iterable of dict
        The trace's records; needed for ``"measured"``.
    time_scale : float
        Nominal seconds per measured second (the trace header's): measured starts become
        nominal ``start_s``, like every generator's times.

    Returns
    -------
    Schedule
        Same flow ids, bytes and tags; ``meta`` is the trace's plus ``replay`` (mapping,
        timing, source name) and ``hosts`` (the mapped host list).

    Raises
    ------
    ValueError
        For a bad mapping, an unknown timing, or ``"measured"`` with a flow that has no
        measured start.
    """
    if timing not in TIMINGS:
        raise ValueError(f"timing: must be one of {TIMINGS}, got {timing!r}")
    where = host_mapping(schedule, hosts, mapping)
    started = {r["id"]: r.get("start_s") for r in records}
    flows = []
    for f in schedule.flows:
        if timing == "measured":
            if started.get(f.id) is None:
                raise ValueError(f"timing: flow {f.id!r} has no measured start_s")
            deps, start_s, delay_s = (), float(started[f.id]) * time_scale, 0.0
        else:
            deps, start_s, delay_s = f.deps, f.start_s, f.delay_s
        flows.append(Flow(f.id, where[f.src], where[f.dst], f.bytes, deps=deps,
                          start_s=start_s, tags=f.tags, delay_s=delay_s))
    old_hosts = schedule.meta.get("hosts")
    meta = {**schedule.meta,
            "replay": {"source": schedule.name, "timing": timing,
                       "mapping": {h: where[h] for h in schedule.hosts()}}}
    if isinstance(old_hosts, (list, tuple)):
        meta["hosts"] = [where.get(h, h) for h in old_hosts if h in where]
    return Schedule(flows, name=schedule.name, meta=meta).validate(hosts)


def trace_replay(hosts, path, mapping=None, timing="deps", seed=0):
    """Registry entry: read the trace at ``path`` and :func:`replay` it onto ``hosts``.

    Parameters
    ----------
    hosts : sequence of str
        The target fabric's hosts.
    path : str or path-like
        A trace or schedule file (JSON lines, see the module docstring).
    mapping : dict, optional
        Trace host -> fabric host; by default by order (see :func:`host_mapping`).
    timing : {"deps", "measured"}
        Keep the DAG, or start every flow at its measured start without dependencies.
    seed : int
        Recorded only (a replay draws nothing).
    """
    trace = read_trace(path)
    s = replay(trace.schedule, hosts, mapping, timing, trace.records,
               trace.info.get("time_scale", 1.0))
    s.meta["replay"].update(path=str(path), seed=seed)
    return s
