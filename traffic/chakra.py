"""Import Chakra execution traces (MLCommons) as flow schedules.

A Chakra execution trace (ET) is one protobuf file per rank: a ``GlobalMetadata`` message,
then ``Node`` messages (compute, communication, memory) with control and data dependencies,
durations and attributes. Reading the files needs the optional extra ``mlc-chakra`` (``pip
install mlc-chakra``, which brings protobuf); converting does not: :func:`convert` works on
plain node dicts, so it is tested without the extra. This module never runs traffic; it only
translates.

Conversion
----------
- ``COMM_SEND_NODE`` (attributes ``comm_dst``, ``comm_size``, ``comm_tag``) becomes one flow
  from its rank's host to ``comm_dst``'s host; the k-th ``COMM_RECV_NODE`` on rank d with
  ``comm_src`` s and tag t completes when the k-th send from s to d with tag t is received.
- ``COMM_COLL_NODE`` (``comm_type``, ``comm_size``, optional ``pg_name``) on every rank of its
  process group (the k-th of that group on each rank) becomes one collective of
  traffic/collectives.py among their hosts, ``comm_size`` taken as NCCL-tests' S (the largest
  any rank reports). Supported: all-reduce, all-gather, reduce-scatter, all-to-all.
- Every other node (compute, memory, metadata) takes its ``duration_micros`` and passes
  dependencies through.

Timing follows traffic/training.py: a flow depends on the nearest communication its rank's
node waited for (through any chain of compute), its ``delay_s`` is the shortest compute
chain since then (the compute is never counted twice), and its ``start_s`` is the time it
would start with an infinitely fast network (the trace's compute durations only, ranks
synchronised by their communication). A collective's first sends on a rank get that rank's
dependencies and compute-only start (no delay).
"""

import networkx as nx

from traffic import collectives
from traffic.moe import _check_hosts
from traffic.schedule import Flow, Schedule

EXTRA = "mlc-chakra"
INSTALL = f"pip install {EXTRA}"
NODE_TYPES = ("INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE",
              "COMP_NODE", "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE")
COMM_TYPES = ("ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER", "BROADCAST",
              "ALL_TO_ALL", "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK", "BARRIER")
SUPPORTED = {"ALL_REDUCE": "allreduce", "ALL_GATHER": "allgather",
             "REDUCE_SCATTER": "reducescatter", "ALL_TO_ALL": "alltoall"}
SEND, RECV, COLL = "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE"


class ChakraUnavailable(ImportError):
    """The optional extra ``mlc-chakra`` is not installed."""


class ChakraError(ValueError):
    """A Chakra trace cannot be converted into a valid schedule."""


def _protobuf():
    """The Chakra protobuf classes and reader, or ChakraUnavailable naming the extra."""
    try:
        from chakra.schema.protobuf import et_def_pb2
        from chakra.src.third_party.utils.protolib import decodeMessage, openFileRd
    except ImportError as e:
        raise ChakraUnavailable(
            f"reading Chakra execution traces needs the optional extra {EXTRA!r}; install it "
            f"with `{INSTALL}` (import failed: {e})") from None
    return et_def_pb2, decodeMessage, openFileRd


def _attr_value(attr):
    field = attr.WhichOneof("value")
    value = getattr(attr, field) if field else None
    return list(value.values) if hasattr(value, "values") else value


def read_et(path):
    """Nodes of one rank's Chakra ET file as plain dicts (the form :func:`convert` takes).

    Returns
    -------
    list of dict
        ``id``, ``name``, ``type`` (a :data:`NODE_TYPES` name), ``ctrl_deps``, ``data_deps``,
        ``duration_micros`` and ``attr`` (name -> value).

    Raises
    ------
    ChakraUnavailable
        If ``mlc-chakra`` is not installed; the message says how to install it.
    """
    pb, decode, open_rd = _protobuf()
    stream = open_rd(str(path))
    try:
        decode(stream, pb.GlobalMetadata())
        nodes = []
        node = pb.Node()
        while decode(stream, node):
            nodes.append({"id": int(node.id), "name": node.name,
                          "type": pb.NodeType.Name(node.type),
                          "ctrl_deps": [int(d) for d in node.ctrl_deps],
                          "data_deps": [int(d) for d in node.data_deps],
                          "duration_micros": int(node.duration_micros),
                          "attr": {a.name: _attr_value(a) for a in node.attr}})
            node = pb.Node()
    finally:
        stream.close()
    return nodes


def _type(rank, node):
    t = node.get("type")
    if isinstance(t, int) and 0 <= t < len(NODE_TYPES):
        return NODE_TYPES[t]
    if t not in NODE_TYPES:
        raise ChakraError(f"rank {rank} node {node.get('id')!r}: unknown type {t!r}")
    return t


def _attr(rank, node, name, default=None):
    value = node.get("attr", {}).get(name, default)
    if value is None:
        raise ChakraError(f"rank {rank} node {node['id']}: {node.get('type')} without "
                          f"attribute {name!r}")
    return value


def _comm_type(rank, node):
    t = _attr(rank, node, "comm_type")
    name = COMM_TYPES[t] if isinstance(t, int) and 0 <= t < len(COMM_TYPES) else t
    if name not in SUPPORTED:
        raise ChakraError(f"rank {rank} node {node['id']}: collective {name!r} is not "
                          f"supported (supported: {', '.join(SUPPORTED)})")
    return SUPPORTED[name]


def convert(traces, hosts, process_groups=None, name="chakra"):
    """A schedule from Chakra nodes per rank (see the module docstring).

    Parameters
    ----------
    traces : dict
        Rank (int) -> list of node dicts as :func:`read_et` returns them (``type`` may be a
        name or its enum number; missing ``deps``, ``duration_micros`` or ``attr`` are
        empty).
    hosts : sequence of str
        Host of rank r is ``hosts[r]``.
    process_groups : dict, optional
        ``pg_name`` -> list of ranks; a collective without ``pg_name``, or with one not
        listed, spans every rank of ``traces``.
    name : str
        Schedule name.

    Returns
    -------
    Schedule
        Send flows ``chakra-r<rank>-n<node id>``, collective flows
        ``chakra-<pg>-<k>-...``, all tagged ``workload="chakra"``, ``rank`` and ``node``
        (the Chakra node name).

    Raises
    ------
    ChakraError
        Naming the rank and node: unknown types or dependencies, a rank without a host,
        unmatched sends or receives, collectives that do not line up across ranks, or a
        dependency cycle.
    """
    hosts = _check_hosts(hosts)
    ranks = sorted(traces)
    if any(not isinstance(r, int) or r < 0 or r >= len(hosts) for r in ranks):
        raise ChakraError(f"ranks {ranks} need hosts 0..{max(ranks)}, got {len(hosts)} hosts")
    process_groups = process_groups or {}
    nodes, kind = {}, {}
    for r in ranks:
        for node in traces[r]:
            key = (r, node["id"])
            if key in nodes:
                raise ChakraError(f"rank {r}: node id {node['id']} appears twice")
            nodes[key], kind[key] = node, _type(r, node)

    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    parents = {}
    for (r, nid), node in nodes.items():
        deps = list(dict.fromkeys([*node.get("ctrl_deps", ()), *node.get("data_deps", ())]))
        for d in deps:
            if (r, d) not in nodes:
                raise ChakraError(f"rank {r} node {nid}: dependency {d} does not exist")
        parents[(r, nid)] = [(r, d) for d in deps]
        g.add_edges_from(((r, d), (r, nid)) for d in deps)

    if not nx.is_directed_acyclic_graph(g):
        raise ChakraError(f"dependency cycle through rank {nx.find_cycle(g)[0][0]}")
    # Program order on each rank: consistent with its dependencies, ties by node id.
    program = list(nx.lexicographical_topological_sort(g))

    # Point-to-point: the k-th recv (src, tag) on a rank is the k-th send to it with that tag.
    sends, matched = {}, {}
    for key in program:
        if kind[key] == SEND:
            dst = _attr(key[0], nodes[key], "comm_dst")
            tag = nodes[key]["attr"].get("comm_tag", 0)
            sends.setdefault((key[0], dst, tag), []).append(key)
    seen = {}
    for key in program:
        if kind[key] == RECV:
            src = _attr(key[0], nodes[key], "comm_src")
            channel = (src, key[0], nodes[key]["attr"].get("comm_tag", 0))
            k = seen[channel] = seen.get(channel, -1) + 1
            if k >= len(sends.get(channel, ())):
                raise ChakraError(f"rank {key[0]} node {key[1]}: receive from rank {src} "
                                  "has no matching send")
            matched[key] = sends[channel][k]
            g.add_edge(matched[key], key)
    unmatched = [k for ks in sends.values() for k in ks if k not in set(matched.values())]
    if unmatched:
        r, nid = unmatched[0]
        raise ChakraError(f"rank {r} node {nid}: send has no matching receive")

    # Collectives: the k-th of a process group on every member rank, synchronised by a
    # virtual node that every member's parents lead to.
    groups = {}
    for key in program:
        if kind[key] == COLL:
            pg = nodes[key].get("attr", {}).get("pg_name") or "world"
            groups.setdefault(pg, {}).setdefault(key[0], []).append(key)
    coll_of = {}
    for pg, by_rank in groups.items():
        members = sorted(process_groups.get(pg, ranks))
        counts = {r: len(by_rank.get(r, ())) for r in members}
        if len(set(counts.values())) != 1 or set(by_rank) - set(members):
            raise ChakraError(f"process group {pg!r}: ranks disagree on its collectives "
                              f"(count per rank: {counts})")
        for k in range(next(iter(counts.values()))):
            virtual = ("coll", pg, k)
            for r in members:
                key = by_rank[r][k]
                coll_of[key] = virtual
                g.add_edges_from((p, virtual) for p in parents[key])
                g.add_edge(virtual, key)
    if not nx.is_directed_acyclic_graph(g):
        raise ChakraError("sends, receives and collectives wait for each other in a cycle")

    end_us, frontier, exits, flows = {}, {}, {}, []

    def ids(r, comm_key):
        if kind[comm_key] == SEND:
            return (f"chakra-r{comm_key[0]}-n{comm_key[1]}",)
        if kind[comm_key] == RECV:
            return ids(r, matched[comm_key])
        return exits[coll_of[comm_key]].get(hosts[r], ())

    def inherited(key):
        merged = {}
        for p in parents[key]:
            if kind[p] in (SEND, RECV, COLL):
                items = {p: 0.0}.items()
            else:
                spent = nodes[p].get("duration_micros", 0)
                items = ((c, t + spent) for c, t in frontier[p].items())
            for c, t in items:
                merged[c] = max(merged.get(c, t), t)
        return merged

    def waits(r, front):
        deps = tuple(dict.fromkeys(i for c in front for i in ids(r, c)))
        return deps, min(front.values(), default=0.0) / 1e6

    for key in nx.topological_sort(g):
        ready = max((end_us[p] for p in g.predecessors(key)), default=0.0)
        if key[0] == "coll":
            members = [m for m, v in coll_of.items() if v == key]
            node0 = nodes[members[0]]
            size = max(int(_attr(m[0], nodes[m], "comm_size")) for m in members)
            entry = {}
            for m in members:
                front = inherited(m)
                entry[hosts[m[0]]] = (ready / 1e6, waits(m[0], front)[0])
            member_hosts = [hosts[m[0]] for m in sorted(members)]
            fl = [] if len(member_hosts) < 2 else collectives.collective_flows(
                _comm_type(members[0][0], node0), member_hosts, size,
                prefix=f"chakra-{key[1]}-{key[2]}",
                tags={"workload": "chakra", "node": node0.get("name", "")}, entry=entry)
            flows.extend(fl)
            exits[key] = collectives.exits(fl, member_hosts)
            end_us[key] = ready
            continue
        r, nid = key
        node = nodes[key]
        frontier[key] = inherited(key)
        if kind[key] == SEND:
            deps, delay_s = waits(r, frontier[key])
            dst = _attr(r, node, "comm_dst")
            if dst not in traces:
                raise ChakraError(f"rank {r} node {nid}: send to rank {dst}, which has no trace")
            flows.append(Flow(
                f"chakra-r{r}-n{nid}", hosts[r], hosts[dst], int(_attr(r, node, "comm_size")),
                deps=deps, start_s=ready / 1e6, delay_s=delay_s,
                tags={"workload": "chakra", "rank": r, "node": node.get("name", ""),
                      "collective": "p2p", "tag": node.get("attr", {}).get("comm_tag", 0)}))
        comm = kind[key] in (SEND, RECV, COLL)
        end_us[key] = ready + (0 if comm else node.get("duration_micros", 0))
    if not flows:
        raise ChakraError("the trace has no communication between different ranks")
    meta = {"workload": "chakra", "ranks": len(ranks), "hosts": [hosts[r] for r in ranks],
            "process_groups": {k: list(v) for k, v in process_groups.items()},
            "compute_only_s": max(end_us.values(), default=0.0) / 1e6}
    try:
        return Schedule(flows, name=name, meta=meta).validate(hosts)
    except ValueError as e:
        raise ChakraError(str(e)) from None


def chakra_trace(hosts, paths, process_groups=None, seed=0):
    """Registry entry: read one ET file per rank (``paths[r]`` for rank r) and convert it.

    Raises :class:`ChakraUnavailable` without ``mlc-chakra``.

    Parameters
    ----------
    hosts : sequence of str
        Ranks.
    paths : str or list of str
        Chakra execution trace files, one per rank in rank order (a string: rank 0 only).
    process_groups : dict, optional
        ``pg_name`` -> list of ranks; a collective without ``pg_name``, or with one not
        listed, spans every rank.
    seed : int
        Recorded only.
    """
    if isinstance(paths, str):
        paths = [paths]
    traces = {r: read_et(p) for r, p in enumerate(paths)}
    s = convert(traces, hosts, process_groups, name="chakra")
    s.meta.update(paths=[str(p) for p in paths], seed=seed)
    return s
