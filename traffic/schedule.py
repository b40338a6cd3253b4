"""The flow schedule: a DAG of flows, the contract between generators, agents and metrics.

Generators (traffic/moe.py and friends) build a :class:`Schedule`; the agent inside each
emulated host (traffic/agent.py) and the flow-level simulator execute it; the metrics
(traffic/metrics.py) compare what happened with it. This module is pure data: it never opens a
socket, sleeps, reads a clock or knows which backend runs the flows.

Semantics
---------
A :class:`Flow` moves ``bytes`` bytes from host ``src`` to host ``dst``. It starts at the later
of ``start_s`` seconds after the clock starts and ``delay_s`` seconds after the moment every
flow named in ``deps`` has been completely received at its destination (the clock start if it
has no deps)::

    start = max(start_s, max(end of each dep, default 0) + delay_s)

``delay_s`` is how a generator says "compute for this long once the inputs are there" (an
expert's forward pass, a model server's prefill); ``start_s`` is a time the flow can never
start before (an arrival, a compute-only timeline). ``tags`` carry what the flow is for
(``collective``, ``phase``, ``round``, ``layer``, ...); no executor reads them.

Times are seconds of whatever clock executes the schedule; generators write nominal seconds
and :meth:`Schedule.scale_times` converts them for a slowed-down emulation.

File format (JSON lines)
------------------------
The first line is a header object ``{"schedule": name, "meta": {...}}``; every further line is
one flow as :meth:`Flow.to_dict` writes it, in schedule order::

    {"schedule": "moe-alltoall", "meta": {"seed": 0}}
    {"id": "a2a-h1-h2", "src": "h1", "dst": "h2", "bytes": 8192, "deps": [], "start_s": 0.0,
     "tags": {"collective": "alltoall"}}

``delay_s`` is written only when it is not 0, so schedules without compute gaps keep the
format above, and a reader older than ``delay_s`` rejects a file that uses it (unknown key)
rather than running it with the gaps left out.

Columns
-------
At data-center scale (a million flows and more) Python objects per flow do not fit:
:meth:`Schedule.columns` gives any schedule as arrays (:class:`Columns`: host indices, bytes,
start floors, delays, dependencies as compressed rows), and a :class:`ColumnarSchedule` is
*held* as those arrays, building its :class:`Flow` objects only if someone asks for
``flows``. Executors and metrics that must scale read the columns only.
"""

import json
import math
import string
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

FLOW_KEYS = ("id", "src", "dst", "bytes", "deps", "start_s", "tags", "delay_s")
REQUIRED_FLOW_KEYS = ("id", "src", "dst", "bytes")


class ScheduleError(ValueError):
    """A schedule, a flow or a schedule file does not describe a valid DAG of flows."""


def iter_jsonl(path):
    """Yield ``(line number, object)`` for every non-blank line of a JSON-lines file.

    Raises
    ------
    ScheduleError
        ``"<path>:<lineno>: not valid JSON (...)"`` for a line that does not parse.
    """
    with open(path, encoding="utf-8") as src:
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ScheduleError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def _freeze(value):
    """JSON lists become tuples so that a flow read back from a file equals the one written."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


@dataclass(frozen=True)
class Flow:
    """One flow of a schedule: ``bytes`` bytes from ``src`` to ``dst``.

    ``deps`` may be given as any sequence of flow ids and ``tags`` as a mapping; both are
    stored as tuples so flows stay hashable and comparable. ``delay_s`` is the time between
    the last dependency's completion and the start (see the module docstring).
    """

    id: str
    src: str
    dst: str
    bytes: int
    deps: tuple[str, ...] = ()
    start_s: float = 0.0
    tags: tuple[tuple[str, object], ...] = ()
    delay_s: float = 0.0

    def __post_init__(self):
        if isinstance(self.deps, str):
            raise ScheduleError(f"flow {self.id!r}: deps must be a sequence of flow ids, "
                                f"not the string {self.deps!r}")
        tags = self.tags.items() if isinstance(self.tags, Mapping) else self.tags
        # Frozen dataclass: normalising in place is the documented way.
        object.__setattr__(self, "deps", tuple(self.deps))
        object.__setattr__(self, "tags", tuple(tuple(t) for t in tags))

    def start_time(self, dep_ends):
        """When the flow starts, given the end times of its dependencies (any iterable; empty
        for none): the rule of the module docstring, which every executor follows."""
        return max(self.start_s, max(dep_ends, default=0.0) + self.delay_s)

    def tag(self, name, default=None):
        """Value of tag ``name``, or ``default`` if the flow has no such tag."""
        for key, value in self.tags:
            if key == name:
                return value
        return default

    def to_dict(self):
        """A JSON-able dict of the flow; tags become a JSON object, ``delay_s`` is left out
        when it is 0."""
        d = {"id": self.id, "src": self.src, "dst": self.dst, "bytes": self.bytes,
             "deps": list(self.deps), "start_s": self.start_s, "tags": dict(self.tags)}
        if self.delay_s:
            d["delay_s"] = self.delay_s
        return d

    @classmethod
    def from_dict(cls, d):
        """Build a flow from a dict as :meth:`to_dict` writes it.

        Only the structure is checked here (keys, types of ``deps`` and ``tags``); values are
        checked by :meth:`Schedule.validate`.

        Raises
        ------
        ScheduleError
            If ``d`` is not a dict, lacks a required key, has an unknown key, or its ``deps``
            or ``tags`` have the wrong shape.
        """
        if not isinstance(d, dict):
            raise ScheduleError(f"a flow must be a JSON object, got {type(d).__name__}")
        fid = d.get("id")
        missing = [k for k in REQUIRED_FLOW_KEYS if k not in d]
        if missing:
            raise ScheduleError(f"flow {fid!r}: missing key(s) {', '.join(missing)}")
        unknown = sorted(set(d) - set(FLOW_KEYS))
        if unknown:
            raise ScheduleError(f"flow {fid!r}: unknown key(s) {', '.join(unknown)}")
        deps = d.get("deps", [])
        if not isinstance(deps, list) or not all(isinstance(x, str) for x in deps):
            raise ScheduleError(f"flow {fid!r}: deps must be a list of flow ids")
        tags = d.get("tags", {})
        if not isinstance(tags, dict):
            raise ScheduleError(f"flow {fid!r}: tags must be a JSON object")
        return cls(id=fid, src=d["src"], dst=d["dst"], bytes=d["bytes"], deps=deps,
                   start_s=d.get("start_s", 0.0),
                   tags={k: _freeze(v) for k, v in tags.items()}, delay_s=d.get("delay_s", 0.0))


def _is_int(x):
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_real(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True, eq=False)
class Columns:
    """A schedule's flows as arrays, one entry per flow in schedule order.

    ``src`` and ``dst`` index ``hosts``; flow ``i`` depends on the flows
    ``dep_idx[dep_ptr[i]:dep_ptr[i + 1]]`` (flow indices, compressed rows).
    """

    hosts: tuple
    src: np.ndarray       # int32
    dst: np.ndarray       # int32
    bytes: np.ndarray     # int64
    start_s: np.ndarray   # float64
    delay_s: np.ndarray   # float64
    dep_ptr: np.ndarray   # int64, flows + 1
    dep_idx: np.ndarray   # int64

    def __len__(self):
        return len(self.src)

    def children(self):
        """The dependents of every flow as compressed rows ``(ptr, idx)``: flow ``i``'s
        are ``idx[ptr[i]:ptr[i + 1]]``, in schedule order."""
        n = len(self)
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.dep_ptr))
        order = np.argsort(self.dep_idx, kind="stable")
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.dep_idx, minlength=n), out=ptr[1:])
        return ptr, owner[order]

    def depths(self):
        """Depth of every flow in the dependency DAG (0 for a flow that waits for nothing),
        as an int64 array; needs every dependency to come before its flow (generators that
        build columns write them so)."""
        n = len(self)
        depth = np.zeros(n, dtype=np.int64)
        ptr, idx = self.dep_ptr, self.dep_idx
        if len(idx) and not (idx < np.repeat(np.arange(n), np.diff(ptr))).all():
            raise ScheduleError("columns: a dependency does not come before its flow")
        if n >= COMPILED_DEPTHS:
            # Compiled: a Python loop over 67 million flows (k=32) takes minutes and its
            # lists several GB.
            global _depth_loop
            if not hasattr(_depth_loop, "py_func"):
                import numba
                _depth_loop = numba.njit(cache=True)(_depth_loop)
            _depth_loop(ptr, idx, depth)
            return depth
        ptr_l, idx_l, out = ptr.tolist(), idx.tolist(), [0] * n
        for i in range(n):
            if ptr_l[i + 1] > ptr_l[i]:
                out[i] = 1 + max(out[j] for j in idx_l[ptr_l[i]:ptr_l[i + 1]])
        depth[:] = out
        return depth


# Flows from which ColumnarSchedule.depths runs compiled (below: loading numba costs more).
COMPILED_DEPTHS = 1 << 18


def _depth_loop(ptr, idx, depth):
    """Each flow's depth, 1 + its deepest dependency's, dependencies coming first."""
    for i in range(depth.shape[0]):
        d = 0
        for k in range(ptr[i], ptr[i + 1]):
            if depth[idx[k]] + 1 > d:
                d = depth[idx[k]] + 1
        depth[i] = d


def _host_codes(names, hosts):
    index = {h: i for i, h in enumerate(hosts)}
    return np.fromiter((index[h] for h in names), dtype=np.int32, count=len(names))


class Schedule:
    """A named, ordered DAG of :class:`Flow` objects with free-form ``meta`` for results files.

    The constructor does not validate (so a broken schedule can be built and inspected); call
    :meth:`validate`. Generators and :meth:`from_jsonl` return validated schedules.

    Parameters
    ----------
    flows : iterable of Flow
    name : str
    meta : dict, optional
        JSON-able description of how the schedule was made (generator parameters, seed...).
    """

    def __init__(self, flows, name="schedule", meta=None):
        self.flows = tuple(flows)
        self.name = name
        self.meta = dict(meta or {})

    def __len__(self):
        return len(self.flows)

    def __iter__(self):
        return iter(self.flows)

    def __eq__(self, other):
        if not isinstance(other, Schedule):
            return NotImplemented
        return (self.name, self.meta, self.flows) == (other.name, other.meta, other.flows)

    __hash__ = None

    def __repr__(self):
        return f"Schedule({self.name!r}, {len(self.flows)} flows, {self.total_bytes()} bytes)"

    def flow(self, fid):
        """The flow with id ``fid``; raises KeyError if there is none."""
        for f in self.flows:
            if f.id == fid:
                return f
        raise KeyError(fid)

    def dag(self):
        """The dependency graph: an ``nx.DiGraph`` on flow ids with an edge dep -> flow."""
        import networkx as nx  # not at import: every agent reads a schedule, none needs this
        d = nx.DiGraph()
        d.add_nodes_from(f.id for f in self.flows)
        d.add_edges_from((dep, f.id) for f in self.flows for dep in f.deps)
        return d

    def validate(self, hosts=None):
        """Check every flow and the DAG; return the schedule.

        Parameters
        ----------
        hosts : iterable of str, optional
            If given, every ``src`` and ``dst`` must be one of them.

        Returns
        -------
        Schedule
            ``self``, so that ``Schedule(...).validate()`` can be returned.

        Raises
        ------
        ScheduleError
            Naming the first bad flow and what is wrong with it: an empty or repeated id, a
            flow to itself, an unknown host, ``bytes`` not a positive int, ``start_s`` or
            ``delay_s`` not a finite number >= 0, a dependency that does not exist, bad tags,
            or a cycle.
        """
        known = None if hosts is None else set(hosts)
        ids = set()
        for f in self.flows:
            if not isinstance(f.id, str) or not f.id:
                raise ScheduleError(f"flow {f.id!r}: id must be a non-empty string")
            if f.id in ids:
                raise ScheduleError(f"flow {f.id!r}: id is used by more than one flow")
            ids.add(f.id)
            for end in ("src", "dst"):
                host = getattr(f, end)
                if not isinstance(host, str) or not host:
                    raise ScheduleError(f"flow {f.id!r}: {end} must be a non-empty host name")
                if known is not None and host not in known:
                    raise ScheduleError(f"flow {f.id!r}: {end} {host!r} is not a known host")
            if f.src == f.dst:
                raise ScheduleError(f"flow {f.id!r}: src and dst are both {f.src!r}")
            if not _is_int(f.bytes) or f.bytes <= 0:
                raise ScheduleError(f"flow {f.id!r}: bytes must be an int > 0, got {f.bytes!r}")
            for name in ("start_s", "delay_s"):
                t = getattr(f, name)
                if not _is_real(t) or not math.isfinite(t) or t < 0:
                    raise ScheduleError(
                        f"flow {f.id!r}: {name} must be a finite number >= 0, got {t!r}")
            names = [t[0] if len(t) == 2 else None for t in f.tags]
            if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
                raise ScheduleError(f"flow {f.id!r}: tags must be (name, value) pairs "
                                    "with distinct string names")
        for f in self.flows:
            for dep in f.deps:
                if dep not in ids:
                    raise ScheduleError(f"flow {f.id!r}: dependency {dep!r} does not exist")
        cycle = self._cycle()
        if cycle:
            raise ScheduleError(f"flow {cycle[0]!r}: dependency cycle "
                                f"{' -> '.join(cycle + [cycle[0]])}")
        return self

    def _cycle(self):
        """A dependency cycle as a list of flow ids (each depends on the one before it,
        the first on the last), or None. Kahn's algorithm, then a walk in what is left."""
        waiting = {f.id: len(set(f.deps)) for f in self.flows}
        users = {f.id: [] for f in self.flows}
        for f in self.flows:
            for dep in set(f.deps):
                users[dep].append(f.id)
        ready = [fid for fid, n in waiting.items() if n == 0]
        while ready:
            fid = ready.pop()
            for user in users[fid]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
        left = {fid for fid, n in waiting.items() if n > 0}
        if not left:
            return None
        deps = {f.id: [d for d in f.deps if d in left] for f in self.flows if f.id in left}
        walk, seen = [min(left)], {}
        while walk[-1] not in seen:
            seen[walk[-1]] = len(walk) - 1
            walk.append(deps[walk[-1]][0])
        return list(reversed(walk[seen[walk[-1]]:-1]))

    def columns(self):
        """The flows as :class:`Columns`, hosts in order of first appearance.

        Raises
        ------
        ScheduleError
            If a dependency names no flow of the schedule.
        """
        cached = getattr(self, "_columns", None)
        if cached is not None:
            return cached
        flows = self.flows
        hosts = tuple(self.hosts())
        index = {f.id: i for i, f in enumerate(flows)}
        try:
            dep_idx = np.fromiter((index[d] for f in flows for d in f.deps), dtype=np.int64)
        except KeyError as e:
            raise ScheduleError(f"dependency {e.args[0]!r} does not exist") from None
        dep_ptr = np.zeros(len(flows) + 1, dtype=np.int64)
        np.cumsum([len(f.deps) for f in flows], out=dep_ptr[1:])
        self._columns = Columns(
            hosts=hosts, src=_host_codes([f.src for f in flows], hosts),
            dst=_host_codes([f.dst for f in flows], hosts),
            bytes=np.fromiter((f.bytes for f in flows), dtype=np.int64, count=len(flows)),
            start_s=np.fromiter((f.start_s for f in flows), dtype=np.float64,
                                count=len(flows)),
            delay_s=np.fromiter((f.delay_s for f in flows), dtype=np.float64,
                                count=len(flows)),
            dep_ptr=dep_ptr, dep_idx=dep_idx)
        return self._columns

    def sending(self, host):
        """Flows whose ``src`` is ``host``, in schedule order."""
        return [f for f in self.flows if f.src == host]

    def receiving(self, host):
        """Flows whose ``dst`` is ``host``, in schedule order."""
        return [f for f in self.flows if f.dst == host]

    def hosts(self):
        """Every host that sends or receives, in order of first appearance."""
        return list(dict.fromkeys(h for f in self.flows for h in (f.src, f.dst)))

    def total_bytes(self):
        """Sum of the bytes of all flows."""
        return sum(f.bytes for f in self.flows)

    def bytes_matrix(self, hosts):
        """Bytes from ``hosts[i]`` to ``hosts[j]`` summed over flows, as an n x n int64 array.

        Raises
        ------
        ScheduleError
            If a flow's ``src`` or ``dst`` is not in ``hosts``.
        """
        index = {h: i for i, h in enumerate(hosts)}
        m = np.zeros((len(index), len(index)), dtype=np.int64)
        for f in self.flows:
            if f.src not in index or f.dst not in index:
                raise ScheduleError(f"flow {f.id!r}: {f.src!r} -> {f.dst!r} leaves the "
                                    "given hosts")
            m[index[f.src], index[f.dst]] += f.bytes
        return m

    def ideal_times(self, transfer_s=None):
        """Start and end of every flow as the semantics above define them.

        This is the reference executor of the module docstring's rule, with transfer times
        given instead of measured: it tells what a generator's timing means (the
        compute-only timeline when ``transfer_s`` is None) and what an executor must do.

        Parameters
        ----------
        transfer_s : callable, optional
            ``transfer_s(flow) -> seconds`` from start to complete reception; default 0 (an
            infinitely fast network).

        Returns
        -------
        dict
            Flow id -> ``(start_s, end_s)``.

        Raises
        ------
        ScheduleError
            If the schedule is not a valid DAG.
        """
        self.validate()
        flows = {f.id: f for f in self.flows}
        times = {}
        import networkx as nx
        for fid in nx.topological_sort(self.dag()):
            f = flows[fid]
            start = f.start_time(times[d][1] for d in f.deps)
            times[fid] = (start, start + (transfer_s(f) if transfer_s else 0.0))
        return times

    def depths(self):
        """``{flow id: depth}`` in the dependency DAG: 0 for a flow that waits for nothing,
        else one more than its deepest dependency. Flows of one depth may be in flight
        together (the first ``channels`` rounds of a pairwise-shift all-to-all, then the
        next)."""
        try:
            depth = self.columns().depths().tolist()
        except ScheduleError:   # a dependency listed after its flow: walk the graph
            import networkx as nx
            generations = nx.topological_generations(self.dag())
            return {fid: depth for depth, ids in enumerate(generations) for fid in ids}
        return dict(zip((f.id for f in self.flows), depth))

    def scale_times(self, factor):
        """A copy with every ``start_s`` and ``delay_s`` multiplied by ``factor``.

        An emulation that runs the network ``1 / time_scale`` times slower than nominal must
        stretch compute gaps and arrival times by the same factor (``factor = 1 /
        time_scale``) so that the ratio of compute to transfer time stays nominal.

        ``meta["time_factor"]`` records the product of the factors applied so far.

        Raises
        ------
        ValueError
            If ``factor`` is not a finite number > 0.
        """
        if not _is_real(factor) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"factor: must be a finite number > 0, got {factor!r}")
        flows = [replace(f, start_s=f.start_s * factor, delay_s=f.delay_s * factor)
                 for f in self.flows]
        meta = {**self.meta, "time_factor": self.meta.get("time_factor", 1.0) * factor}
        return Schedule(flows, name=self.name, meta=meta)

    def header(self):
        """The header object of the JSON forms: ``{"schedule": name, "meta": meta}``."""
        return {"schedule": self.name, "meta": self.meta}

    def to_json_obj(self):
        """The whole schedule as one JSON-able object: the header plus a ``flows`` list."""
        return {**self.header(), "flows": [f.to_dict() for f in self.flows]}

    @classmethod
    def from_json_obj(cls, obj):
        """Inverse of :meth:`to_json_obj`; the result is validated.

        Raises
        ------
        ScheduleError
            If the object is malformed or the schedule it describes is invalid.
        """
        if not isinstance(obj, dict) or not isinstance(obj.get("flows"), list):
            raise ScheduleError("a schedule must be a JSON object with a 'flows' list")
        return cls._from_parts(obj, [Flow.from_dict(d) for d in obj["flows"]]).validate()

    @classmethod
    def header_from_obj(cls, obj):
        """An empty schedule carrying the name and meta of a header object.

        Raises
        ------
        ScheduleError
            If ``obj`` is not a dict with a ``schedule`` key or its ``meta`` is not a dict.
        """
        if not isinstance(obj, dict) or "schedule" not in obj:
            raise ScheduleError("the first line must be a header object with a 'schedule' key")
        return cls._from_parts(obj, [])

    @classmethod
    def _from_parts(cls, header, flows):
        meta = header.get("meta", {})
        if not isinstance(meta, dict):
            raise ScheduleError("schedule meta must be a JSON object")
        return cls(flows, name=header.get("schedule", "schedule"), meta=meta)

    def to_jsonl(self, path):
        """Write the schedule as JSON lines: the header, then one flow per line."""
        with open(path, "w", encoding="utf-8") as out:
            out.write(json.dumps(self.header()) + "\n")
            for f in self.flows:
                out.write(json.dumps(f.to_dict()) + "\n")

    @classmethod
    def from_jsonl(cls, path):
        """Read a schedule written by :meth:`to_jsonl` and validate it.

        Blank lines are ignored.

        Raises
        ------
        ScheduleError
            ``"<path>:<lineno>: <what is wrong>"`` for a malformed line, or
            ``"<path>: <what is wrong>"`` if the file is empty or the schedule is invalid.
        """
        header, flows = None, []
        for lineno, obj in iter_jsonl(path):
            try:
                if header is None:
                    header = cls.header_from_obj(obj)
                else:
                    flows.append(Flow.from_dict(obj))
            except ScheduleError as e:
                raise ScheduleError(f"{path}:{lineno}: {e}") from None
        if header is None:
            raise ScheduleError(f"{path}: empty file, expected a header line")
        schedule = cls(flows, name=header.name, meta=header.meta)
        try:
            return schedule.validate()
        except ScheduleError as e:
            raise ScheduleError(f"{path}: {e}") from None


class ColumnarSchedule(Schedule):
    """A :class:`Schedule` held as :class:`Columns`, for schedules of millions of flows.

    Its :class:`Flow` objects are built only when ``flows`` is first read (then kept), so
    everything a :class:`Schedule` offers works, and an executor or metric that reads
    :meth:`columns` never pays for them.

    Parameters
    ----------
    columns : Columns
        Every dependency must come before its flow.
    name : str
    meta : dict, optional
    id_format : str
        Flow ids, ``str.format``-ed with ``src``, ``dst`` (host names) and the tag columns;
        must make every id distinct.
    tags : dict, optional
        Tags every flow carries, in order, before the tag columns.
    tag_columns : dict, optional
        Per-flow tags: an integer array, or ``(labels, codes)`` for a tag whose value is
        ``labels[code]``.
    """

    def __init__(self, columns, name="schedule", meta=None, id_format="{src}-{dst}",
                 tags=None, tag_columns=None):
        self._columns = columns
        self.name = name
        self.meta = dict(meta or {})
        self.id_format = id_format
        self.common_tags = dict(tags or {})
        self.tag_columns = dict(tag_columns or {})
        self._flows = None

    @property
    def flows(self):
        """The :class:`Flow` objects, built on first use and kept."""
        if self._flows is None:
            c = self._columns
            names = [c.hosts[i] for i in c.src.tolist()], [c.hosts[i] for i in c.dst.tolist()]
            cols = {k: [v[0][x] for x in v[1].tolist()] if isinstance(v, tuple) else v.tolist()
                    for k, v in self.tag_columns.items()}
            fmt = self.id_format.format
            ids = [fmt(src=s, dst=d, **{k: v[i] for k, v in cols.items()})
                   for i, (s, d) in enumerate(zip(*names))]
            ptr, idx = c.dep_ptr.tolist(), c.dep_idx.tolist()
            nbytes, start, delay = c.bytes.tolist(), c.start_s.tolist(), c.delay_s.tolist()
            self._flows = tuple(
                Flow(id=ids[i], src=names[0][i], dst=names[1][i], bytes=nbytes[i],
                     deps=tuple(ids[j] for j in idx[ptr[i]:ptr[i + 1]]), start_s=start[i],
                     tags={**self.common_tags, **{k: v[i] for k, v in cols.items()}},
                     delay_s=delay[i])
                for i in range(len(ids)))
        return self._flows

    def __len__(self):
        return len(self._columns)

    def __repr__(self):
        return f"Schedule({self.name!r}, {len(self)} flows, {self.total_bytes()} bytes)"

    def columns(self):
        return self._columns

    def total_bytes(self):
        return int(self._columns.bytes.sum())

    def hosts(self):
        c = self._columns
        both = np.empty(2 * len(c), dtype=np.int32)
        both[0::2], both[1::2] = c.src, c.dst
        first = np.full(len(c.hosts), len(both))
        # Repeated indices: the last assignment wins, so in reverse it is the first use.
        first[both[::-1]] = np.arange(len(both) - 1, -1, -1)
        seen = np.flatnonzero(first < len(both))
        return [c.hosts[i] for i in seen[np.argsort(first[seen])].tolist()]

    def validate(self, hosts=None):
        """:meth:`Schedule.validate` on the columns: the same checks, the same messages
        (naming the first bad flow), without building the flows unless one is bad."""
        c = self._columns
        n = len(c)
        bad = np.zeros(n, dtype=bool)
        bad |= c.src == c.dst
        bad |= (c.src < 0) | (c.src >= len(c.hosts)) | (c.dst < 0) | (c.dst >= len(c.hosts))
        bad |= c.bytes <= 0
        for t in (c.start_s, c.delay_s):
            bad |= ~np.isfinite(t) | (t < 0)
        if hosts is not None:
            unknown = np.array([h not in set(hosts) for h in c.hosts], dtype=bool)
            if unknown.any():
                bad |= unknown[c.src] | unknown[c.dst]
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(c.dep_ptr))
        late = (c.dep_idx < 0) | (c.dep_idx >= owner)
        if late.any():
            bad[owner[late]] = True
        named = {f for _, f, _, _ in string.Formatter().parse(self.id_format) if f}
        keys = [c.src, c.dst] + [v[1] if isinstance(v, tuple) else v
                                 for k, v in self.tag_columns.items() if k in named]
        # Ids are distinct if their fields are: one int64 code per flow when they fit in
        # one (a sort of ints), else a sort of the rows.
        spans = [int(k.max(initial=0)) + 1 for k in keys]
        if all(k.min(initial=0) >= 0 for k in keys) and math.prod(spans) < 2 ** 62:
            code = np.zeros(n, dtype=np.int64)
            for k, span in zip(keys, spans):
                code = code * span + k
            code.sort()
            repeated = bool((code[1:] == code[:-1]).any())
        else:
            order = np.lexsort(keys[::-1])
            same = np.ones(max(n - 1, 0), dtype=bool)
            for k in keys:
                same &= k[order][1:] == k[order][:-1]
            repeated = bool(same.any())
        if repeated or bad.any():
            # Name the first bad flow exactly as an object schedule would.
            Schedule(self.flows, self.name, self.meta).validate(hosts)
        return self

    def scale_times(self, factor):
        if not _is_real(factor) or not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"factor: must be a finite number > 0, got {factor!r}")
        c = self._columns
        cols = replace(c, start_s=c.start_s * factor, delay_s=c.delay_s * factor)
        meta = {**self.meta, "time_factor": self.meta.get("time_factor", 1.0) * factor}
        return ColumnarSchedule(cols, self.name, meta, self.id_format, self.common_tags,
                                self.tag_columns)
