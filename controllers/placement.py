"""Placement algorithms of the routing policies, as pure functions of plain data.

Links are opaque hashable ids (the core uses directed switch pairs ``(u, v)``), paths are
sequences of links, loads and capacities are numbers in one unit. Nothing here knows about
switches, rules, OpenFlow or time; controllers/policies.py feeds these functions from the
core's state. Ties are broken by input order, which callers make deterministic (sorted).
"""

import collections
import math

EPS = 1e-9


def estimate_demands(flows, capacity, max_rounds=100):
    """Natural demand of flows between hosts, as in Hedera (Al-Fares et al., NSDI 2010).

    Each flow is assumed to grow until a host NIC limits it (TCP's max-min fair share):
    senders split their capacity equally over their flows not yet limited elsewhere, then
    receivers that are oversubscribed cap their largest flows at an equal share; repeat until
    nothing changes.

    Parameters
    ----------
    flows : list of (flow id, src host, dst host)
        Several flows may join one host pair.
    capacity : callable
        ``capacity(host)`` is the NIC rate of a host, in the unit of the result.
    max_rounds : int
        Bound on the iterations (the estimate converges in a few on real inputs).

    Returns
    -------
    dict
        ``{flow id: demand}``.

    Examples
    --------
    >>> d = estimate_demands([(1, "a", "x"), (2, "a", "y"), (3, "b", "y")], lambda h: 1.0)
    >>> d[1], d[2], d[3]
    (0.5, 0.5, 0.5)
    """
    demand = {fid: 0.0 for fid, _, _ in flows}
    converged = dict.fromkeys(demand, False)
    by_src, by_dst = collections.defaultdict(list), collections.defaultdict(list)
    for fid, src, dst in flows:
        by_src[src].append(fid)
        by_dst[dst].append(fid)
    for _ in range(max_rounds):
        changed = False
        for src, fids in by_src.items():
            fixed = sum(demand[f] for f in fids if converged[f])
            open_ = [f for f in fids if not converged[f]]
            if open_:
                share = max(0.0, capacity(src) - fixed) / len(open_)
                for f in open_:
                    changed |= abs(demand[f] - share) > EPS
                    demand[f] = share
        for dst, fids in by_dst.items():
            cap = capacity(dst)
            if sum(demand[f] for f in fids) <= cap + EPS:
                continue
            limited, fixed = set(fids), 0.0
            share = cap / len(limited)
            while True:
                small = [f for f in limited if demand[f] < share - EPS]
                if not small:
                    break
                for f in small:
                    fixed += demand[f]
                    limited.discard(f)
                share = (cap - fixed) / len(limited)
            for f in limited:
                changed |= abs(demand[f] - share) > EPS or not converged[f]
                demand[f] = share
                converged[f] = True
        if not changed:
            break
    return demand


def first_fit(paths, demand, reserved, capacity):
    """The first of ``paths`` whose every link can still carry ``demand``, or None.

    ``reserved`` maps a link to the demand already placed on it; ``capacity(link)`` is its
    rate. This is Hedera's Global First Fit step for one flow.
    """
    for path in paths:
        if all(reserved.get(link, 0.0) + demand <= capacity(link) * (1 + EPS) for link in path):
            return path
    return None


def wcmp_weights(dist, hops, headroom, step=5):
    """SELECT bucket weights from path headroom (WCMP), for every switch and destination.

    The headroom of a next hop is that of the widest path through it: the smallest free
    fraction (``1 - utilization``, floored at 0) of its links, where a switch's own headroom
    toward the destination is that of its best next hop. Weights are that headroom in percent,
    rounded to a multiple of ``step``, within 1..100, and divided by their common divisor, so
    equal headroom gives plain ECMP weights of 1 and small changes do not rewrite groups.

    Parameters
    ----------
    dist, hops : dict
        ``{dst: {switch: hop count}}`` and ``{dst: {switch: next hops}}`` (see Routes).
    headroom : callable
        ``headroom(u, v)``: free fraction of the directed link u->v, in [0, 1].
    step : int
        Weight granularity.

    Returns
    -------
    dict
        ``{(switch, dst): {next hop: weight}}`` for switches with unequal weights only.
    """
    weights = {}
    for dst, hop_map in hops.items():
        best = {dst: 1.0}
        for s in sorted(hop_map, key=lambda s: (dist[dst][s], s)):
            free = [min(headroom(s, n), best[n]) for n in hop_map[s]]
            best[s] = max(free)
            if len(free) < 2:
                continue
            ws = [max(1, min(100, step * round(100.0 * f / step))) for f in free]
            if len(set(ws)) > 1:
                div = math.gcd(*ws)
                weights[(s, dst)] = {n: w // div for n, w in zip(hop_map[s], ws)}
    return weights


def _peak(loads):
    return max(loads.values(), default=0.0)


def _apply(loads, path, sign):
    for link, load in path:
        loads[link] += sign * load


class _Budget(Exception):
    pass


def min_max_assignment(options, background=None, node_budget=200_000, swap_limit=64):
    """Choose one path per item so that the most loaded link carries the least.

    Greedy largest-first onto the path that keeps the peak lowest, then local improvement
    (single moves and, for up to ``swap_limit`` items, pairwise changes that lower the peak or
    the number of links at the peak), then an exact branch and bound that stops after
    ``node_budget`` search nodes.

    Parameters
    ----------
    options : list
        ``options[i]`` lists the candidate paths of item i; a path is a sequence of
        ``(link, load)`` pairs (the load the item puts on that link, e.g. seconds of
        transmission at the link's rate).
    background : dict, optional
        Load already on links, ``{link: load}``.
    node_budget : int
        Search nodes the exact phase may visit; small cases finish and are optimal.
    swap_limit : int
        Pairwise changes are tried only with at most this many items (they cost O(n^2)).

    Returns
    -------
    tuple
        ``(choices, peak, exact)``: the index of the chosen path per item (None for an item
        without candidates), the peak link load, and whether the search proved it optimal.

    Examples
    --------
    >>> up = [[(("a", 1), 3.0)], [(("a", 2), 3.0)]]
    >>> choices, peak, exact = min_max_assignment([up, up])
    >>> sorted(choices), peak, exact
    ([0, 1], 3.0, True)
    """
    n = len(options)
    loads = collections.defaultdict(float, background or {})
    choices = [None] * n

    def size(i):
        return max((load for path in options[i] for _, load in path), default=0.0)

    order = sorted(range(n), key=lambda i: (-size(i), i))
    for i in order:
        best = None
        for j, path in enumerate(options[i]):
            after = [loads[link] + load for link, load in path]
            score = (max(after, default=0.0), sum(after), j)
            if best is None or score < best:
                best = score
        if best is not None:
            choices[i] = best[2]
            _apply(loads, options[i][best[2]], +1)

    def objective():
        peak = _peak(loads)
        return peak, sum(1 for v in loads.values() if v >= peak - EPS)

    def try_change(changes, current):
        for i, j in changes:
            _apply(loads, options[i][choices[i]], -1)
            _apply(loads, options[i][j], +1)
        new = objective()
        if new[0] < current[0] - EPS or (new[0] <= current[0] + EPS and new[1] < current[1]):
            for i, j in changes:
                choices[i] = j
            return True
        for i, j in reversed(changes):
            _apply(loads, options[i][j], -1)
            _apply(loads, options[i][choices[i]], +1)
        return False

    placed = [i for i in order if choices[i] is not None and len(options[i]) > 1]
    for _ in range(10 * n + 10):
        current = objective()
        hot = {link for link, v in loads.items() if v >= current[0] - EPS}
        on_hot = [i for i in placed if any(link in hot for link, _ in options[i][choices[i]])]
        if any(try_change([(i, j)], current)
               for i in on_hot for j in range(len(options[i])) if j != choices[i]):
            continue
        if len(placed) <= swap_limit and any(
                try_change([(i, a), (k, b)], current)
                for i in on_hot for k in placed if k != i
                for a in range(len(options[i])) if a != choices[i]
                for b in range(len(options[k])) if b != choices[k]):
            continue
        break

    best_peak, best_choices = _peak(loads), list(choices)
    exact = True
    search = [i for i in order if choices[i] is not None]
    trial = collections.defaultdict(float, background or {})
    for i in order:
        if choices[i] is not None and len(options[i]) == 1:
            _apply(trial, options[i][0], +1)
    search = [i for i in search if len(options[i]) > 1]
    current = [None] * n
    nodes = 0

    def dfs(depth, peak):
        nonlocal best_peak, best_choices, nodes
        nodes += 1
        if nodes > node_budget:
            raise _Budget
        if depth == len(search):
            if peak < best_peak - EPS:
                best_peak = peak
                best_choices = [c if current[i] is None else current[i]
                                for i, c in enumerate(choices)]
            return
        i = search[depth]
        ranked = sorted((max(peak, max((trial[link] + load for link, load in path),
                                       default=0.0)), j)
                        for j, path in enumerate(options[i]))
        for after, j in ranked:
            if after >= best_peak - EPS:
                break
            current[i] = j
            _apply(trial, options[i][j], +1)
            dfs(depth + 1, after)
            _apply(trial, options[i][j], -1)
            current[i] = None

    try:
        dfs(0, _peak(trial))
    except _Budget:
        exact = False
    return best_choices, best_peak, exact
