"""Optical circuit switches (OCS) in the topology model: the physical fabric and its circuits.

An OCS is a mirror array, not a packet switch: it joins its ports in pairs (circuits) and
forwards light from one to the other, whatever it carries. Fabrics with an OCS layer have two
graphs:

- the **physical** graph: hosts, packet switches and OCS nodes (``role="ocs"``, ``ports``: its
  port count, ``reconfiguration_ms``: how long a circuit change leaves the changed ports
  dark), with fibers from packet switches to OCS ports made by :func:`fabric.model.add_link`
  (so ports, lengths and transceivers follow the model's conventions). Its
  ``graph["blocks"]`` says, for topology engineering, which uplinks each block has, in
  rounds: ``{block: [[switch, ocs, ocs port], ...]}``, uplink ``r`` of every block on the
  same OCS (controllers/topoeng.py).
- the **logical** graph (:func:`logical_graph`): what the routing core, the twin and the
  emulation's controller route on. OCS nodes are gone; each circuit ``(ocs, p, q)`` becomes
  one link between the switches cabled to ``p`` and ``q``, on those switches' fiber ports,
  with the smaller of the two fibers' capacities and the sum of their lengths and delays. It
  is an ordinary fabric (fabric/model.py) and carries its physical graph and circuits in
  ``graph["optical"]`` (JSON-able), so a run can reconfigure it.

Circuits are ``{ocs: [(p, q), ...]}``; :func:`check_circuits` makes sure they are a matching of
cabled ports of that OCS that links distinct switch pairs. Pure data: no Mininet, no clock.
"""

import networkx as nx

from controllers import topoeng
from fabric import model
from fabric.model import OCS, TopologyError


class CircuitError(TopologyError):
    """Circuits that are not a matching of an OCS's cabled ports, or link what cannot be."""


def add_ocs(g, name, ports, reconfiguration_ms):
    """Add optical circuit switch ``name`` with ``ports`` ports to physical fabric ``g``.

    Parameters
    ----------
    g : networkx.Graph
        The physical fabric.
    name : str
        Node name (short, like every node's).
    ports : int
        Port count, >= 2.
    reconfiguration_ms : float
        Time in ms a changed circuit is dark while the OCS moves its mirrors, >= 0 (MEMS
        OCSes as in Jupiter take milliseconds to tens of milliseconds).

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    TopologyError
        If the name is taken or malformed, or a value is out of range.
    """
    model._check_name(g, name)
    if not (isinstance(ports, int) and not isinstance(ports, bool) and ports >= 2):
        raise TopologyError(f"OCS {name!r}: ports must be an integer >= 2, got {ports!r}")
    try:
        reconfiguration_ms = float(reconfiguration_ms)
    except (TypeError, ValueError):
        reconfiguration_ms = float("nan")
    if not reconfiguration_ms >= 0:
        raise TopologyError(f"OCS {name!r}: reconfiguration_ms must be a number >= 0")
    index = len(ocs_nodes(g)) + 1
    g.add_node(name, role=OCS, ports=ports, reconfiguration_ms=reconfiguration_ms, index=index)
    return name


def ocs_nodes(g):
    """OCS names of physical fabric ``g``, in the order they were added."""
    return sorted((n for n, r in g.nodes(data="role") if r == OCS),
                  key=lambda n: g.nodes[n]["index"])


def fibers(g):
    """``{(ocs, ocs port): (switch, switch port, fiber data)}`` of physical fabric ``g``."""
    out = {}
    for o in ocs_nodes(g):
        for _, sw, d in g.edges(o, data=True):
            out[(o, d["ports"][o])] = (sw, d["ports"][sw], d)
    return out


def check_circuits(g, circuits):
    """``circuits`` checked against physical fabric ``g``, normalised.

    Parameters
    ----------
    g : networkx.Graph
        The physical fabric.
    circuits : dict
        ``{ocs: [(p, q), ...]}``; OCSes not named hold no circuits.

    Returns
    -------
    dict
        ``{ocs: ((p, q), ...)}`` for every OCS of ``g``, each pair with ``p < q``, sorted.

    Raises
    ------
    CircuitError
        Naming the OCS and circuit, if an OCS is unknown, a port is out of range, uncabled or
        in two circuits, or two circuits (or a circuit and a fixed link) join the same two
        switches. (A switch has one fiber per OCS, so no circuit joins a switch to itself.)
    """
    if not isinstance(circuits, dict):
        raise CircuitError(f"circuits must be a mapping ocs -> [(port, port), ...], "
                           f"got {circuits!r}")
    at = fibers(g)
    out = {o: () for o in ocs_nodes(g)}
    joined = {}
    for o, pairs in circuits.items():
        if o not in out:
            raise CircuitError(f"circuits: {o!r} is not an OCS of {g.graph.get('name')!r}")
        used, norm = set(), []
        for c in pairs:
            try:
                p, q = c
            except (TypeError, ValueError):
                raise CircuitError(f"OCS {o}: circuit {c!r} is not a pair of ports") from None
            for x in (p, q):
                if not (isinstance(x, int) and not isinstance(x, bool)
                        and 1 <= x <= g.nodes[o]["ports"]):
                    raise CircuitError(f"OCS {o}: circuit {c!r}: port {x!r} is not one of "
                                       f"1..{g.nodes[o]['ports']}")
                if (o, x) not in at:
                    raise CircuitError(f"OCS {o}: circuit {c!r}: port {x} has no fiber")
                if x in used:
                    raise CircuitError(f"OCS {o}: circuit {c!r}: port {x} is in two circuits "
                                       "(circuits must be a matching)")
                used.add(x)
            u, v = at[(o, p)][0], at[(o, q)][0]
            if g.has_edge(u, v):
                raise CircuitError(f"OCS {o}: circuit {c!r} duplicates the fixed link {u}-{v}")
            key = frozenset((u, v))
            if key in joined:
                raise CircuitError(f"OCS {o}: circuit {c!r} links {u}-{v}, which circuit "
                                   f"{joined[key]} already links (one link per switch pair)")
            joined[key] = f"{o} {tuple(sorted((p, q)))}"
            norm.append((min(p, q), max(p, q)))
        out[o] = tuple(sorted(norm))
    return out


def logical_graph(g, circuits):
    """The fabric the routing core sees when physical fabric ``g`` holds ``circuits``.

    Parameters
    ----------
    g : networkx.Graph
        The physical fabric (hosts, packet switches, OCS nodes, fibers).
    circuits : dict
        ``{ocs: [(p, q), ...]}`` (see :func:`check_circuits`).

    Returns
    -------
    networkx.Graph
        A validated fabric (fabric/model.py): ``g`` without its OCS nodes and fibers, plus
        one link per circuit between the switches at its two ports, on their fiber ports,
        capacity the smaller fiber's, length and delay the sum of both, transceiver the first
        fiber's, with ``ocs`` and ``ocs_ports`` naming the circuit. ``graph["optical"]``
        holds ``physical`` (``g`` as JSON-able lists) and ``circuits``.

    Raises
    ------
    CircuitError
        If the circuits are not valid on ``g``.
    TopologyError
        If the circuits leave the fabric disconnected.

    Examples
    --------
    >>> from topologies.railocs import rail_ocs
    >>> lg = rail_ocs(servers=2, gpus_per_server=4, ocses=2)
    >>> lg.edges["r1", "r4"]["ocs"], lg.edges["r1", "r4"]["ocs_ports"]
    ('o1', [1, 4])
    """
    circuits = check_circuits(g, circuits)
    lg = model.new_fabric(g.graph.get("name"), **g.graph.get("params", {}))
    for n, d in g.nodes(data=True):
        if d["role"] != OCS:
            lg.add_node(n, **d)
    for u, v, d in g.edges(data=True):
        if u in lg and v in lg:
            lg.add_edge(u, v, **d)
    at = fibers(g)
    for o, pairs in circuits.items():
        for p, q in pairs:
            (u, pu, du), (v, pv, dv) = at[(o, p)], at[(o, q)]
            lg.add_edge(u, v, capacity_gbps=min(du["capacity_gbps"], dv["capacity_gbps"]),
                        medium="optical", length_km=du["length_km"] + dv["length_km"],
                        delay_us=du["delay_us"] + dv["delay_us"],
                        transceiver=du["transceiver"], ports={u: pu, v: pv}, ocs=o,
                        ocs_ports=[p, q])
    lg.graph["optical"] = {
        # Plain lists, not networkx's node-link format: its keywords differ between the
        # networkx of the virtualenv and the one `mn --custom` runs under.
        "physical": {"graph": dict(g.graph), "nodes": [[n, d] for n, d in g.nodes(data=True)],
                     "edges": [[u, v, d] for u, v, d in g.edges(data=True)]},
        "circuits": {o: [list(c) for c in pairs] for o, pairs in circuits.items()},
    }
    return model.validate(lg)


def is_optical(lg):
    """Does fabric ``lg`` come from a physical fabric with OCSes?"""
    return "optical" in lg.graph


def physical(lg):
    """The physical fabric behind logical fabric ``lg``."""
    data = lg.graph["optical"]["physical"]
    g = nx.Graph(**data["graph"])
    g.add_nodes_from((n, d) for n, d in data["nodes"])
    g.add_edges_from((u, v, d) for u, v, d in data["edges"])
    return g


def circuits_of(lg):
    """The circuits logical fabric ``lg`` was made with: ``{ocs: ((p, q), ...)}``."""
    return {o: tuple(tuple(c) for c in pairs)
            for o, pairs in lg.graph["optical"]["circuits"].items()}


def circuit_set(circuits):
    """Circuits as a set of ``(ocs, p, q)``."""
    return {(o, p, q) for o, pairs in circuits.items() for p, q in pairs}


def _uplinks(g):
    """(switch_of, group_of) of physical fabric ``g`` for controllers/topoeng.py."""
    blocks = g.graph["blocks"]
    first = next(iter(blocks.values()))
    return ({b: [sw for sw, _o, _p in slots] for b, slots in blocks.items()},
            [o for _sw, o, _p in first])


def circuits_from_plan(g, plan):
    """Circuits of physical fabric ``g`` from a topology engineering plan, circuits
    ``((block, uplink), (block, uplink))`` (controllers/topoeng.py)."""
    blocks = g.graph["blocks"]
    out = {o: [] for o in ocs_nodes(g)}
    for (a, ra), (b, rb) in plan:
        (_sa, o, pa), (_sb, ob, pb) = blocks[a][ra], blocks[b][rb]
        if o != ob:
            raise CircuitError(f"circuit {a}:{ra}-{b}:{rb}: the uplinks land on different "
                               f"OCSes ({o}, {ob})")
        out[o].append((min(pa, pb), max(pa, pb)))
    return {o: tuple(sorted(c)) for o, c in out.items()}


def uniform_circuits(g):
    """The uniform plan of physical fabric ``g``: every block pair direct-connected as
    evenly as its uplinks allow."""
    try:
        return circuits_from_plan(g, topoeng.uniform(*_uplinks(g)))
    except topoeng.EngineeringError as e:
        raise CircuitError(f"topology {g.graph.get('name')!r}: {e}") from None


def block_of(lg):
    """``{host: block}`` of a logical (or physical) fabric: the block of each host's switch."""
    return {h: lg.nodes[model.host_switch(lg, h)[0]]["block"] for h in model.hosts(lg)}


def block_demand(lg, schedule, flows=None):
    """Bytes the flows of ``schedule`` (or only the flow indices ``flows``) send between
    blocks: ``{(a, b): bytes}``, a < b.

    Read from the schedule's columns (no host-by-host matrix)."""
    cols = schedule.columns()
    blk = block_of(lg)
    code = [blk[h] for h in cols.hosts]
    out = {}
    src, dst, nbytes = cols.src, cols.dst, cols.bytes
    if flows is not None:
        src, dst, nbytes = src[flows], dst[flows], nbytes[flows]
    for s, d, n in zip(src.tolist(), dst.tolist(), nbytes.tolist()):
        a, b = code[s], code[d]
        if a != b:
            key = (a, b) if a < b else (b, a)
            out[key] = out.get(key, 0) + n
    return out


def engineered_circuits(g, demand):
    """Circuits of physical fabric ``g`` that serve ``demand`` (``{(block, block): volume}``)
    directly, by controllers/topoeng.py's repeated max-weight matchings."""
    try:
        return circuits_from_plan(g, topoeng.engineer(demand, *_uplinks(g)))
    except topoeng.EngineeringError as e:
        raise CircuitError(f"topology {g.graph.get('name')!r}: {e}") from None


def direct_share(lg, demand):
    """Fraction of ``demand`` between blocks that logical fabric ``lg``'s circuits serve
    directly (at one unit per circuit, see controllers/topoeng.py); 1.0 with no demand."""
    g = physical(lg)
    circuits = circuits_of(lg)
    owner = {}
    for b, slots in g.graph["blocks"].items():
        for _sw, o, p in slots:
            owner[(o, p)] = b
    counts = {}
    for o, pairs in circuits.items():
        for p, q in pairs:
            a, b = sorted((owner[(o, p)], owner[(o, q)]))
            counts[(a, b)] = counts.get((a, b), 0) + 1
    total = sum(demand.values())
    if not total:
        return 1.0
    uplinks = {b: len(s) for b, s in g.graph["blocks"].items()}
    return topoeng.served(counts, demand, topoeng.demand_unit(demand, uplinks)) / total


def reconfigure(lg, circuits):
    """Logical fabric ``lg`` with ``circuits`` instead of its own, and the make-before-break
    plan between them.

    Returns
    -------
    (networkx.Graph, controllers.topoeng.ReconfigurationPlan)
        The plan's circuits are ``(ocs, p, q)``; its time is the slowest changed OCS's.
    """
    g = physical(lg)
    new = logical_graph(g, circuits)
    plan = topoeng.plan_reconfiguration(
        circuit_set(circuits_of(lg)), circuit_set(circuits_of(new)),
        {o: g.nodes[o]["reconfiguration_ms"] for o in ocs_nodes(g)})
    return new, plan


def circuit_link(lg, circuit):
    """The link of logical fabric ``lg`` (or of the fabric it becomes) that circuit
    ``(ocs, p, q)`` makes: ``((switch, port), (switch, port))`` from the physical fibers."""
    at = fibers(physical(lg))
    o, p, q = circuit
    (u, pu, _), (v, pv, _) = at[(o, p)], at[(o, q)]
    return (u, pu), (v, pv)


# The tag whose values are a schedule's phases: its jobs when it has several, else the
# workload's own ``phase`` tag (traffic/schedule.py).
PHASE_TAGS = ("job", "phase")


def phases(schedule):
    """A schedule's phases, for circuits that follow them (``circuits: phased``).

    A phase is the flows with one value of the schedule's phase tag: ``job`` for a schedule
    of several jobs (traffic/jobs.py), else ``phase``; flows without the tag form one phase
    (so a schedule without the tag is one phase). Phases are ordered by the shallowest
    dependency depth of their flows, then by their first flow in schedule order.

    Returns
    -------
    (str, list of str, numpy.ndarray)
        The tag, the phase labels in order, and the phase of every flow (int32, schedule
        order).
    """
    # Imported here: topology files import this module under Mininet's own Python (`mn
    # --custom`), which has networkx but no numpy.
    import numpy as np
    tag = PHASE_TAGS[0] if len(schedule.meta.get("jobs") or ()) > 1 else PHASE_TAGS[1]
    flows = schedule.flows
    depth = schedule.depths()
    label_of = ["" if f.tag(tag) is None else str(f.tag(tag)) for f in flows]
    shallowest, first = {}, {}
    for i, (f, label) in enumerate(zip(flows, label_of)):
        shallowest[label] = min(shallowest.get(label, depth[f.id]), depth[f.id])
        first.setdefault(label, i)
    labels = sorted(first, key=lambda x: (shallowest[x], first[x]))
    index = {x: k for k, x in enumerate(labels)}
    return tag, labels, np.array([index[x] for x in label_of], dtype=np.int32)


def phase_plans(lg, schedule):
    """Circuits engineered for each phase of ``schedule`` (:func:`phases`) on logical fabric
    ``lg``, from the demand its flows send between blocks (what the schedule says, not what
    a run measured). A phase that sends nothing between blocks keeps the plan before it (the
    first such phase: ``lg``'s own).

    Returns
    -------
    dict
        ``tag``, ``labels``, ``phase_of`` (as :func:`phases`), ``demands`` (``{(a, b):
        bytes}`` per phase) and ``circuits`` (``{ocs: ((p, q), ...)}`` per phase).

    Raises
    ------
    CircuitError
        If topology engineering cannot serve a phase (see :func:`engineered_circuits`).
    """
    import numpy as np   # see phases()
    tag, labels, phase_of = phases(schedule)
    g = physical(lg)
    demands, plans = [], []
    circuits = circuits_of(lg)
    for k in range(len(labels)):
        demand = block_demand(lg, schedule, np.flatnonzero(phase_of == k))
        if any(demand.values()):
            circuits = engineered_circuits(g, demand)
        demands.append(demand)
        plans.append(circuits)
    return {"tag": tag, "labels": labels, "phase_of": phase_of, "demands": demands,
            "circuits": plans}


def staged_reconfigure(lg, circuits, pairs):
    """Logical fabric ``lg`` moved to ``circuits`` make-before-break in as few steps as keep
    the block pairs ``pairs`` connected while circuits are dark (one, or two:
    controllers/topoeng.py ``stage_reconfiguration``).

    Returns
    -------
    list of (networkx.Graph, controllers.topoeng.ReconfigurationPlan)
        The fabric after each step and the step's plan, in order; empty if nothing changes.
    """
    g = physical(lg)
    target = check_circuits(g, circuits)
    at = fibers(g)
    block = {port: g.nodes[sw].get("block") for port, (sw, _p, _d) in at.items()}
    switch = {port: sw for port, (sw, _p, _d) in at.items()}
    ms = {o: g.nodes[o]["reconfiguration_ms"] for o in ocs_nodes(g)}
    steps = topoeng.stage_reconfiguration(circuit_set(circuits_of(lg)), circuit_set(target),
                                          switch, block, pairs, ms)
    out = []
    for plan in steps:
        if not plan.changes:
            continue
        now = circuit_set(circuits_of(lg))
        nxt = (now - set(plan.removed)) | set(plan.added)
        lg = logical_graph(g, {o: sorted((p, q) for oo, p, q in nxt if oo == o)
                               for o in ocs_nodes(g)})
        out.append((lg, plan))
    return out


def next_phase(left, current):
    """The phase circuits that follow a schedule's phases move to: ``None`` while the
    ``current`` phase still has flows to receive (``left[k]``: flows of phase ``k`` not yet
    received), else the first later phase with flows left (``None`` if there is none). One
    rule for both backends (fabric/twin.py, fabric/runner.py).

    Examples
    --------
    >>> next_phase([0, 0, 3], 0), next_phase([1, 0, 3], 0), next_phase([0, 0], 0)
    (2, None, None)
    """
    if left[current] > 0:
        return None
    return next((k for k in range(current + 1, len(left)) if left[k] > 0), None)
