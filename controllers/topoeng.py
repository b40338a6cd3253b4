"""Topology engineering: which circuits optical circuit switches should hold, and how to move.

Pure functions on opaque block ids (a block is what a demand matrix is written between: an
aggregation block of a Jupiter-like fabric, a rail of a GPU fabric). The fabric side
(fabric/optical.py) says which uplinks each block has, round by round, and turns the answer into
OCS circuits; this module knows nothing about OCS ports, graphs or time.

The problem: each block ``b`` has ``R`` uplinks, uplink ``r`` of every block lands on the same
OCS (a "round": the uplinks of round ``r`` can be matched in pairs). A plan is, for every round,
a matching of blocks; a matched pair ``(a, b)`` in round ``r`` is one circuit, linking the
switch behind ``a``'s uplink ``r`` with the switch behind ``b``'s. Rounds on the same OCS form
a group: uplinks a round leaves idle (an odd number of blocks leaves one) may then be matched
with idle uplinks of other rounds of the group. Two circuits may never link
the same two switches (the topology model has one link per switch pair), which caps how many
circuits a block pair can get. The objective is the traffic served directly,
``sum over pairs of min(demand, circuits * unit)``, where ``unit`` is the demand one circuit
carries (by default the busiest block's demand divided by its uplinks, so that block's
uplinks exactly fit what it sends).

The method is b-matching by repeated max-weight matchings (:func:`engineer`): round after
round, a maximum-weight matching (networkx's blossom algorithm) of the blocks, each pair
weighted by what one more circuit would add to the objective, plus a small preference for
pairs with fewer circuits so leftover uplinks spread evenly. It is greedy across rounds, not
optimal: tests/test_topoeng.py measures its gap against brute force on small cases. A plan
whose blocks are not all connected is repaired by 2-swaps on one OCS (``(a, b), (c, d)`` from
two components become ``(a, c), (b, d)``), which keeps every degree.

:func:`plan_reconfiguration` turns an old and a new set of circuits into a make-before-break
transaction: drain what changes (routes leave those links while they still carry), reconfigure
the OCS, commit (the routing core takes removed and added links as one change set), confirm.
"""

import dataclasses
import itertools

import networkx as nx

# Weight added per round to pairs with fewer circuits: far below any demand-driven gain
# (gains are scaled to 1 per unit of demand), so it only breaks ties.
SPREAD_WEIGHT = 1e-6


class EngineeringError(ValueError):
    """Demand or uplinks that cannot describe a topology engineering problem."""


def _pair(a, b):
    return (a, b) if a <= b else (b, a)


def demand_unit(demand, uplinks):
    """Demand one circuit carries: the busiest block's demand over its uplink count.

    Parameters
    ----------
    demand : dict
        ``{(a, b): volume}``, volume >= 0 (any unit: bytes, Gbit/s), a != b.
    uplinks : dict
        ``{block: number of uplinks}``.

    Returns
    -------
    float
        > 0; 1.0 if there is no demand at all.

    Examples
    --------
    >>> demand_unit({("a", "b"): 8.0, ("b", "c"): 4.0}, {"a": 2, "b": 2, "c": 2})
    6.0
    """
    per_block = {}
    for (a, b), v in demand.items():
        per_block[a] = per_block.get(a, 0.0) + v
        per_block[b] = per_block.get(b, 0.0) + v
    unit = max((v / uplinks[b] for b, v in per_block.items()), default=0.0)
    return unit if unit > 0 else 1.0


def served(counts, demand, unit):
    """Traffic served directly: ``sum over pairs of min(demand, circuits * unit)``.

    Examples
    --------
    >>> served({("a", "b"): 2}, {("a", "b"): 5.0, ("a", "c"): 1.0}, 2.0)
    4.0
    """
    return float(sum(min(v, counts.get(_pair(*p), 0) * unit) for p, v in demand.items()))


def circuit_counts(circuits):
    """``{(a, b): circuits}`` of a plan given as circuits ``((a, ra), (b, rb))``."""
    counts = {}
    for (a, _ra), (b, _rb) in circuits:
        p = _pair(a, b)
        counts[p] = counts.get(p, 0) + 1
    return counts


def _check(demand, switch_of):
    blocks = sorted(switch_of)
    if len(blocks) < 2:
        raise EngineeringError(f"topology engineering needs >= 2 blocks, got {blocks}")
    lengths = {len(s) for s in switch_of.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise EngineeringError(
            f"every block needs the same number (>= 1) of uplinks, got "
            f"{ {b: len(s) for b, s in sorted(switch_of.items())} }")
    clean = {}
    for (a, b), v in demand.items():
        if a not in switch_of or b not in switch_of:
            raise EngineeringError(f"demand {a}-{b}: unknown block "
                                   f"{a if a not in switch_of else b!r}")
        if a == b:
            continue
        v = float(v)
        if not v >= 0:
            raise EngineeringError(f"demand {a}-{b}: volume must be >= 0, got {v}")
        p = _pair(a, b)
        clean[p] = clean.get(p, 0.0) + v
    return blocks, lengths.pop(), clean


def engineer(demand, switch_of, group_of=None, unit=None, connect=True):
    """Circuits serving ``demand`` directly, round by round (repeated max-weight matchings).

    Parameters
    ----------
    demand : dict
        ``{(a, b): volume}`` between blocks (both directions may appear: they add up;
        ``a == b`` is ignored, it needs no circuit).
    switch_of : dict
        ``{block: [switch id of uplink 0, uplink 1, ...]}``, the same length for every block:
        uplink ``r`` of every block lands on the OCS of round ``r``. Two circuits never link the
        same two switch ids.
    group_of : list, optional
        The OCS of each round (rounds of one OCS may pair their idle uplinks); by default
        every round is its own.
    unit : float, optional
        Demand one circuit carries (:func:`demand_unit` by default).
    connect : bool
        Repair a plan whose blocks are not all connected (2-swaps within a round).

    Returns
    -------
    list of tuple
        Circuits ``((a, ra), (b, rb))``: uplink ``ra`` of block ``a`` to uplink ``rb`` of
        block ``b`` (``a < b``), sorted.

    Raises
    ------
    EngineeringError
        If the blocks or demands are malformed, or ``connect`` is asked and no swap can
        connect the blocks.

    Examples
    --------
    >>> up = {b: [b + "1", b + "2"] for b in "abcd"}
    >>> plan = engineer({("a", "b"): 10.0, ("c", "d"): 10.0, ("a", "c"): 1.0}, up)
    >>> sorted(circuit_counts(plan).items())
    [(('a', 'b'), 1), (('a', 'c'), 1), (('b', 'd'), 1), (('c', 'd'), 1)]
    """
    blocks, n_rounds, demand = _check(demand, switch_of)
    if unit is None:
        unit = demand_unit(demand, {b: n_rounds for b in blocks})
    unit = float(unit)
    if not unit > 0:
        raise EngineeringError(f"unit must be > 0, got {unit}")
    group_of = list(range(n_rounds)) if group_of is None else list(group_of)
    circuits = []
    # First only circuits that serve demand, so an uplink a round cannot use for demand
    # (its partner's switch pair is taken) stays free for another round of its OCS; then
    # what is left, spread.
    for positive_only in (True, False):
        used = {end for c in circuits for end in c}
        linked = {_pair(switch_of[a][ra], switch_of[b][rb]) for (a, ra), (b, rb) in circuits}
        counts = circuit_counts(circuits)
        for r in range(n_rounds):
            g = nx.Graph()
            for a, b in itertools.combinations(blocks, 2):
                sa, sb = switch_of[a][r], switch_of[b][r]
                if (a, r) in used or (b, r) in used or sa == sb or _pair(sa, sb) in linked:
                    continue
                c = counts.get((a, b), 0)
                left = demand.get((a, b), 0.0) - c * unit
                gain = min(max(left, 0.0), unit) / unit
                if positive_only and not gain > 0:
                    continue
                g.add_edge(a, b, weight=gain + SPREAD_WEIGHT / (1 + c))
            for a, b in sorted(_pair(a, b) for a, b in nx.max_weight_matching(g)):
                counts[(a, b)] = counts.get((a, b), 0) + 1
                linked.add(_pair(switch_of[a][r], switch_of[b][r]))
                used.update(((a, r), (b, r)))
                circuits.append(((a, r), (b, r)))
        _fill_idle(circuits, blocks, switch_of, group_of, demand, unit, positive_only)
    if connect:
        _connect(circuits, blocks, switch_of, group_of, demand, unit)
    return sorted(circuits)


def _fill_idle(circuits, blocks, switch_of, group_of, demand, unit, positive_only=False):
    """Pair uplinks left idle with idle uplinks of other rounds on the same OCS, one circuit
    per block pair per pass (gains are concave), until no pair adds anything (only pairs
    whose circuit serves demand if ``positive_only``)."""
    used = {end for c in circuits for end in c}
    linked = {_pair(switch_of[a][ra], switch_of[b][rb]) for (a, ra), (b, rb) in circuits}
    while True:
        counts = circuit_counts(circuits)
        g = nx.Graph()
        idle = [(b, r) for r in range(len(group_of)) for b in blocks if (b, r) not in used]
        for (a, ra), (b, rb) in itertools.combinations(idle, 2):
            sa, sb = switch_of[a][ra], switch_of[b][rb]
            if a == b or group_of[ra] != group_of[rb] or sa == sb or _pair(sa, sb) in linked:
                continue
            c = counts.get(_pair(a, b), 0)
            gain = min(max(demand.get(_pair(a, b), 0.0) - c * unit, 0.0), unit) / unit
            if positive_only and not gain > 0:
                continue
            g.add_edge((a, ra), (b, rb), weight=gain + SPREAD_WEIGHT / (1 + c))
        added, pairs = [], set()
        for x, y in sorted(tuple(sorted(e)) for e in nx.max_weight_matching(g)):
            p = _pair(x[0], y[0])
            sw = _pair(switch_of[x[0]][x[1]], switch_of[y[0]][y[1]])
            if p in pairs or sw in linked:
                continue
            pairs.add(p)
            linked.add(sw)
            used.update((x, y))
            added.append((x, y))
        if not added:
            return
        circuits.extend(added)


def _components(blocks, circuits):
    g = nx.Graph()
    g.add_nodes_from(blocks)
    g.add_edges_from((a, b) for (a, _ra), (b, _rb) in circuits)
    return {b: i for i, comp in enumerate(nx.connected_components(g)) for b in comp}


def _connect(circuits, blocks, switch_of, group_of, demand, unit):
    """Join components by 2-swaps of circuits on one OCS (``(a, b), (c, d)`` become ``(a,
    c), (b, d)``, degrees unchanged), the swap that loses the least served demand first."""
    while True:
        comp = _components(blocks, circuits)
        if len(set(comp.values())) == 1:
            return
        counts = circuit_counts(circuits)
        linked = {_pair(switch_of[a][ra], switch_of[b][rb]) for (a, ra), (b, rb) in circuits}
        base = served(counts, demand, unit)
        best = None
        # Two idle uplinks on one OCS count as a circuit that serves nothing: splicing a
        # block with idle uplinks into a circuit of another component connects it too.
        used = {end for c in circuits for end in c}
        idle = sorted((b, r) for b in blocks for r in range(len(group_of)) if (b, r) not in used)
        spare = [(p, q) for p, q in itertools.combinations(idle, 2) if group_of[p[1]] ==
                 group_of[q[1]]]
        for c1, c2 in itertools.chain(itertools.combinations(circuits, 2),
                                      itertools.product(circuits, spare)):
            (x, y), (z, w) = c1, c2
            if group_of[x[1]] != group_of[z[1]] or comp[x[0]] == comp[z[0]]:
                continue
            for new in (((x, z), (y, w)), ((x, w), (y, z))):
                sw = [_pair(switch_of[p[0]][p[1]], switch_of[q[0]][q[1]]) for p, q in new]
                if any(p[0] == q[0] for p, q in new) or any(s in linked for s in sw) \
                        or any(a == b for a, b in sw):
                    continue
                trial = dict(counts)
                for (a, _), (b, _) in (c1, c2) if c2 in circuits else (c1,):
                    trial[_pair(a, b)] -= 1
                for (a, _), (b, _) in new:
                    trial[_pair(a, b)] = trial.get(_pair(a, b), 0) + 1
                key = (base - served(trial, demand, unit), c1, c2, new)
                if best is not None and key >= best:
                    continue
                after = [c for c in circuits if c not in (c1, c2)] + list(new)
                # A swap inside two trees can leave them two trees: only joins count.
                if len(set(_components(blocks, after).values())) < len(set(comp.values())):
                    best = key
        if best is None:
            raise EngineeringError("no circuit swap connects the blocks (too few uplinks, "
                                   "or a plan this greedy repair cannot reach)")
        _loss, c1, c2, new = best
        circuits[:] = sorted([c for c in circuits if c not in (c1, c2)] +
                             [tuple(sorted(c)) for c in new])


def uniform(switch_of, group_of=None):
    """The uniform plan: every block pair direct-connected as evenly as uplinks allow.

    Examples
    --------
    >>> plan = uniform({b: [b] * 3 for b in "abcd"})
    >>> sorted(circuit_counts(plan).values())
    [1, 1, 1, 1, 1, 1]
    """
    blocks = sorted(switch_of)
    return engineer({p: 1.0 for p in itertools.combinations(blocks, 2)}, switch_of, group_of)


@dataclasses.dataclass(frozen=True)
class ReconfigurationPlan:
    """A make-before-break change of circuits.

    Attributes
    ----------
    removed, added, kept : tuple
        Circuits (any hashable, e.g. ``(ocs, port, port)``) that go, come, stay; sorted.
    reconfiguration_ms : float
        Dark time: the slowest OCS that changes (OCSes move in parallel); 0 if none does.
    steps : tuple
        ``(step, circuits)`` in order: ``drain`` (routes leave the removed circuits' links
        while they still carry), ``reconfigure`` (the OCS drops ``removed`` and makes
        ``added``, dark for ``reconfiguration_ms``), ``commit`` (the routing core takes the
        removed and added links as one topology change and routes onto the new ones),
        ``confirm`` (the new links are seen to carry).
    """

    removed: tuple
    added: tuple
    kept: tuple
    reconfiguration_ms: float
    steps: tuple

    @property
    def changes(self):
        return bool(self.removed or self.added)


def plan_reconfiguration(old, new, reconfiguration_ms_of):
    """The make-before-break plan from circuits ``old`` to ``new``.

    Parameters
    ----------
    old, new : iterable
        Circuits as ``(ocs, port, port)`` tuples.
    reconfiguration_ms_of : dict
        ``{ocs: reconfiguration time in ms}``.

    Returns
    -------
    ReconfigurationPlan

    Examples
    --------
    >>> p = plan_reconfiguration([("o1", 1, 2), ("o1", 3, 4)], [("o1", 1, 3), ("o1", 3, 4)],
    ...                          {"o1": 25.0})
    >>> p.removed, p.added, p.reconfiguration_ms, [s for s, _ in p.steps]
    ((('o1', 1, 2),), (('o1', 1, 3),), 25.0, ['drain', 'reconfigure', 'commit', 'confirm'])
    """
    old, new = set(old), set(new)
    removed, added = tuple(sorted(old - new)), tuple(sorted(new - old))
    kept = tuple(sorted(old & new))
    changed = {c[0] for c in removed + added}
    ms = max((float(reconfiguration_ms_of[o]) for o in changed), default=0.0)
    steps = (("drain", removed), ("reconfigure", removed + added), ("commit", added),
             ("confirm", added)) if removed or added else ()
    return ReconfigurationPlan(removed, added, kept, ms, steps)


def cut_off(lit, block_of_port, pairs):
    """Block pairs of ``pairs`` that circuits ``lit`` leave unconnected.

    Parameters
    ----------
    lit : iterable
        Circuits ``(ocs, port, port)`` that carry light.
    block_of_port : dict
        ``{(ocs, port): block}``: the block whose uplink each OCS port is.
    pairs : iterable
        Block pairs ``(a, b)`` that must reach each other (directly or through other blocks).

    Returns
    -------
    list of tuple
        The pairs of ``pairs`` with no lit path, sorted.

    Examples
    --------
    >>> at = {("o", 1): "a", ("o", 2): "b", ("o", 3): "c", ("o", 4): "d"}
    >>> cut_off([("o", 1, 2), ("o", 3, 4)], at, [("a", "b"), ("a", "c")])
    [('a', 'c')]
    """
    g = nx.Graph()
    g.add_nodes_from(block_of_port.values())
    g.add_edges_from((block_of_port[(o, p)], block_of_port[(o, q)]) for o, p, q in lit)
    comp = {b: i for i, c in enumerate(nx.connected_components(g)) for b in c}
    return sorted(_pair(a, b) for a, b in pairs if a != b and comp[a] != comp[b])


def stage_reconfiguration(old, new, switch_of_port, block_of_port, pairs,
                          reconfiguration_ms_of, max_trials=20000):
    """Make-before-break from circuits ``old`` to ``new`` in as few steps as keep ``pairs``
    connected: one step if the circuits kept lit while the changed ones are dark connect every
    pair, else two.

    In two steps, some circuits that go (``hold``) stay lit through the first step while the
    other changes are made, and go in the second; new circuits that would need a port of
    ``hold`` come in the second step too. Both dark times must leave every pair connected:
    the first by the kept circuits and ``hold``, the second by the kept circuits and those
    the first step added; and the circuits between the steps must connect every block. The
    smallest ``hold`` that works is taken (fewer late circuits),
    then the one adding the most circuits in the first step, then the first in sorted
    order.

    Parameters
    ----------
    old, new : iterable
        Circuits ``(ocs, port, port)``.
    switch_of_port : dict
        ``{(ocs, port): switch}``: what is cabled to each port (no two circuits of one step
        may link the same two switches).
    block_of_port : dict
        ``{(ocs, port): block}``.
    pairs : iterable
        Block pairs ``(a, b)`` that carry flows across the change.
    reconfiguration_ms_of : dict
        ``{ocs: reconfiguration time in ms}``.
    max_trials : int
        Candidate ``hold`` sets examined at most before giving up staging.

    Returns
    -------
    tuple of ReconfigurationPlan
        One plan, or two done one after the other. If no two-step plan keeps every pair
        connected, the one-step plan (the pairs it cuts off wait for its commit).

    Examples
    --------
    Four blocks of three uplinks move from one circuit per pair to two for a-b and c-d
    and one for a-d and b-c: in one step only the kept a-b and c-d circuits stay lit, which
    cuts a-d and b-c off; in two, the old a-c circuit stays lit through the first step:

    >>> at = {("o", i): "abcd"[(i - 1) // 3] for i in range(1, 13)}
    >>> old = [("o", 1, 4), ("o", 2, 7), ("o", 3, 10), ("o", 5, 8), ("o", 6, 11), ("o", 9, 12)]
    >>> new = [("o", 1, 4), ("o", 2, 5), ("o", 3, 11), ("o", 6, 8), ("o", 7, 10), ("o", 9, 12)]
    >>> pairs = [("a", "b"), ("c", "d"), ("a", "d"), ("b", "c")]
    >>> for step in stage_reconfiguration(old, new, at, at, pairs, {"o": 10.0}):
    ...     print(step.removed, step.added)
    (('o', 3, 10), ('o', 5, 8), ('o', 6, 11)) (('o', 3, 11), ('o', 6, 8))
    (('o', 2, 7),) (('o', 2, 5), ('o', 7, 10))
    """
    old, new = set(old), set(new)
    pairs = sorted({_pair(a, b) for a, b in pairs if a != b})
    one = plan_reconfiguration(old, new, reconfiguration_ms_of)
    kept = old & new
    if not cut_off(kept, block_of_port, pairs):
        return (one,)
    removed, added = sorted(old - new), sorted(new - old)
    every = list(itertools.combinations(sorted(set(block_of_port.values())), 2))

    def switches(c):
        return _pair(switch_of_port[(c[0], c[1])], switch_of_port[(c[0], c[2])])

    trials = 0
    for size in range(1, len(removed)):
        best = None
        for hold in itertools.combinations(removed, size):
            trials += 1
            if trials > max_trials:
                return (one,)
            if cut_off(kept | set(hold), block_of_port, pairs):
                continue
            ports = {(c[0], p) for c in hold for p in c[1:]}
            linked = {switches(c) for c in kept | set(hold)}
            early = [c for c in added if not ports & {(c[0], c[1]), (c[0], c[2])}
                     and switches(c) not in linked]
            # The fabric between the steps must be one fabric (its hosts reach each other).
            if cut_off(kept | set(early), block_of_port, pairs) or cut_off(
                    kept | set(hold) | set(early), block_of_port, every):
                continue
            key = (-len(early), hold)
            if best is None or key < best[0]:
                best = (key, hold, early)
        if best is not None:
            _key, hold, early = best
            mid = kept | set(hold) | set(early)
            return (plan_reconfiguration(old, mid, reconfiguration_ms_of),
                    plan_reconfiguration(mid, new, reconfiguration_ms_of))
    return (one,)
