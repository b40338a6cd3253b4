"""Placement algorithms of the routing policies, as pure functions of plain data.

Links are opaque hashable ids (the core uses directed switch pairs ``(u, v)``), paths are
sequences of links, loads and capacities are numbers in one unit. Nothing here knows about
switches, rules, OpenFlow or time; controllers/policies.py feeds these functions from the
core's state. Ties are broken by input order, which callers make deterministic (sorted).
:func:`min_max_assignment` is exact on small inputs; :func:`batched_min_max_assignment`
takes integer link ids in numpy arrays and scales to a million items. Neither reads a clock:
their work is bounded by counts of operations.
"""

import collections
import math

import numpy as np

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
    # Rates compare within EPS of the host's NIC rate, not of 1: at 400 Gbit/s the sums'
    # rounding alone is some 1e-4 bit/s, which once made every flow at a receiver look
    # below its share and left none to share the rest (a division by zero).
    for _ in range(max_rounds):
        changed = False
        for src, fids in by_src.items():
            cap = capacity(src)
            tol = EPS * max(1.0, cap)
            fixed = sum(demand[f] for f in fids if converged[f])
            open_ = [f for f in fids if not converged[f]]
            if open_:
                share = max(0.0, cap - fixed) / len(open_)
                for f in open_:
                    changed |= abs(demand[f] - share) > tol
                    demand[f] = share
        for dst, fids in by_dst.items():
            cap = capacity(dst)
            tol = EPS * max(1.0, cap)
            if sum(demand[f] for f in fids) <= cap + tol:
                continue
            limited, fixed = set(fids), 0.0
            share = cap / len(limited)
            while True:
                small = [f for f in limited if demand[f] < share - tol]
                if not small or len(small) == len(limited):
                    break
                for f in small:
                    fixed += demand[f]
                    limited.discard(f)
                share = (cap - fixed) / len(limited)
            for f in limited:
                changed |= abs(demand[f] - share) > tol or not converged[f]
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


def wcmp_weights(dist, hops, headroom, step=5, previous=None, hysteresis=0.0):
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
    previous : dict, optional
        The weights in force (this function's last result). A group keeps them while the new
        ones would move less than ``hysteresis`` of its traffic (see :func:`traffic_moved`)
        over the same next hops: load estimates that swing from one statistics round to
        the next (flows learned and forgotten, a saturated fabric) then rewrite no group.
    hysteresis : float
        Fraction of a group's traffic, in [0, 1).

    Returns
    -------
    dict
        ``{(switch, dst): {next hop: weight}}`` for switches with unequal weights only.
    """
    weights = {}
    previous = previous or {}
    for dst, hop_map in hops.items():
        best = {dst: 1.0}
        for s in sorted(hop_map, key=lambda s: (dist[dst][s], s)):
            free = [min(headroom(s, n), best[n]) for n in hop_map[s]]
            best[s] = max(free)
            if len(free) < 2:
                continue
            ws = [max(1, min(100, step * round(100.0 * f / step))) for f in free]
            new = None
            if len(set(ws)) > 1:
                div = math.gcd(*ws)
                new = {n: w // div for n, w in zip(hop_map[s], ws)}
            if hysteresis:
                old = previous.get((s, dst))
                if old is not new and (old is None or old.keys() == set(hop_map[s])) and \
                        traffic_moved(old, new, hop_map[s]) < hysteresis:
                    new = old
            if new is not None:
                weights[(s, dst)] = new
    return weights


def traffic_moved(old, new, hops):
    """The fraction of a SELECT group's traffic that changes bucket when its weights go from
    ``old`` to ``new`` (``{next hop: weight}``, None for equal weights over ``hops``): half
    the L1 distance between the two shares."""
    def shares(weights):
        if weights is None:
            return {n: 1.0 / len(hops) for n in hops}
        total = sum(weights.values())
        return {n: w / total for n, w in weights.items()}
    a, b = shares(old), shares(new)
    return 0.5 * sum(abs(a.get(n, 0.0) - b.get(n, 0.0)) for n in set(a) | set(b))


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


def _spread_ranks(paths, n_links):
    """Per candidate path, how much it overlaps the paths listed before it (smaller first).

    A path scores the largest and the sum of its links' occurrence ranks (how many earlier
    paths of the same pair use that link). Sorting equal-load paths by it is what greedy does
    from empty links: on a fat-tree it alternates uplinks before reusing one.
    """
    n_pairs, m, h = paths.shape
    out = np.empty((n_pairs, m), dtype=np.int64)
    # Pairs a few at a time: the sort's temporaries are several times the paths' size.
    step = max(1, (1 << 21) // max(1, m * h))
    for lo in range(0, n_pairs, step):
        part = paths[lo:lo + step]
        key = (np.arange(len(part))[:, None, None] * (n_links + 1) + part).ravel()
        order = np.argsort(key, kind="stable")
        ordered = key[order]
        pos = np.arange(len(ordered))
        starts = np.ones(len(ordered), bool)
        starts[1:] = ordered[1:] != ordered[:-1]
        first = np.maximum.accumulate(np.where(starts, pos, 0))
        rank = np.empty_like(pos)
        rank[order] = pos - first
        rank = np.where(part == n_links, 0, rank.reshape(part.shape))
        out[lo:lo + step] = rank.max(axis=2) * (m * h + 1) + rank.sum(axis=2)
    return out


def _ticks(values):
    # Loads are sums of floats in different orders; ranking them on an EPS grid makes equal
    # loads tie exactly, so ties fall to the documented keys and not to rounding noise.
    return np.rint(values * (1 / EPS))


def _greedy(paths, valid, spread, weight, loads, pair, phase, size, choices,
            max_steps=2048):
    """Greedy, largest first, a group of identical flows at a time, every phase at once.

    Each step places the next group of every phase (of each phase with more than
    ``max_steps`` groups, the next few) on the paths whose most loaded link would be least
    loaded; ``choices`` and ``loads`` are filled in place.
    """
    n = len(pair)
    order = np.lexsort((pair, -size, phase))
    o_phase, o_pair, o_size = phase[order], pair[order], size[order]
    new = np.ones(n, bool)
    new[1:] = ((o_phase[1:] != o_phase[:-1]) | (o_pair[1:] != o_pair[:-1])
               | (o_size[1:] != o_size[:-1]))
    g_start = np.flatnonzero(new)
    g_count = np.diff(np.append(g_start, n))
    g_phase, g_pair, g_size = o_phase[g_start], o_pair[g_start], o_size[g_start]
    # Within a phase: larger flows first, then larger groups, then pair order.
    g_order = np.lexsort((g_pair, -g_count, -g_size, g_phase))
    sorted_phase = g_phase[g_order]
    phase_first = np.searchsorted(sorted_phase, sorted_phase)
    # A step takes the next group of every phase; if a phase has more than ``max_steps``
    # groups, the next few groups of each (they do not see each other's loads), so that the
    # steps stay few enough for their overhead not to dominate.
    rank = np.arange(len(g_order)) - phase_first
    step = rank // -(-(int(rank.max(initial=0)) + 1) // max_steps)
    by_step = g_order[np.argsort(step, kind="stable")]
    bounds = np.searchsorted(np.sort(step), np.arange(step.max() + 2 if len(step) else 1))
    counts = valid.sum(axis=1)
    flat, width_links = loads.reshape(-1), loads.shape[1]
    # How many flows of a group one path may take in each step: a few more than an even
    # share of the step's largest group over the fewest paths of its pairs (bounding the
    # work; greedy could pile more on one path only if it were far less loaded).
    largest = np.maximum.reduceat(g_count[by_step], bounds[:-1])
    fewest = np.minimum.reduceat(counts[g_pair[by_step]], bounds[:-1])
    widths = np.minimum(largest, -(-largest // np.maximum(1, fewest)) + 2)
    if n * paths.shape[1] * paths.shape[2] >= COMPILED_GREEDY:
        # Compiled, a group at a time: numpy's steps cost minutes at k=32 (67 million
        # flows, 256 paths each), mostly in temporaries of every group's candidates.
        global _greedy_steps
        if not hasattr(_greedy_steps, "py_func"):
            import numba
            _greedy_steps = numba.njit(cache=True)(_greedy_steps)
        step_of = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
        by_phase = np.argsort(g_phase[by_step], kind="stable")
        _greedy_steps(paths, valid, spread, weight, flat, width_links, by_step[by_phase],
                      step_of[by_phase], widths, g_pair, g_phase, g_size, g_count, g_start,
                      order, counts, choices, np.empty(n, dtype=np.int64))
        return
    # Link position first: a path's loads are then H contiguous slices, reduced by
    # elementwise maximum and sum (numpy reduces a short last axis slowly).
    by_link = np.ascontiguousarray(paths.transpose(0, 2, 1))
    for t in range(len(bounds) - 1):
        g = by_step[bounds[t]:bounds[t + 1]]
        gp, gph, gs, gc = g_pair[g], g_phase[g], g_size[g], g_count[g]
        cand = by_link[gp]
        after = flat.take(cand + (gph * width_links)[:, None, None])
        link_weight = weight[cand]   # gathered per step: for every pair, GBs at k=32
        after += gs[:, None, None] * link_weight
        peak, total = after[:, 0].copy(), after[:, 0].copy()
        for h in range(1, after.shape[1]):
            np.maximum(peak, after[:, h], out=peak)
            total += after[:, h]
        level = np.where(valid[gp], _ticks(peak), np.inf)
        ranked = np.lexsort((spread[gp], _ticks(total), level), axis=1)
        rep = np.repeat(np.arange(len(g)), gc)
        within = np.arange(len(rep)) - np.repeat(np.cumsum(gc) - gc, gc)
        most = int(largest[t])
        if most == 1:
            pick = ranked[:, 0]
        else:
            # The k identical flows of a group go where greedy would put them one by one if
            # the paths did not share links: the k lowest of "path j after its r-th flow",
            # r below the step's width. Only the k best paths can hold any of them.
            top = ranked[:, :most]
            first = np.take_along_axis(level, top, axis=1)
            heaviest = link_weight.max(axis=1)
            rise = _ticks(gs[:, None] * np.take_along_axis(heaviest, top, axis=1))
            levels = first[:, :, None] + rise[:, :, None] * np.arange(widths[t])
            slots = np.argsort(levels.reshape(len(g), -1), axis=1, kind="stable")
            pick = top[rep, slots[rep, within] // levels.shape[2]]
        has = counts[gp][rep] > 0
        flows = order[np.repeat(g_start[g], gc) + within]
        choices[flows] = np.where(has, pick, -1)
        links = paths[gp[rep], pick]
        add = np.where(has[:, None], gs[rep][:, None] * weight[links], 0.0)
        np.add.at(flat, links + (gph[rep] * width_links)[:, None], add)


# Candidate link loads (flows x paths x links per path) from which _greedy runs compiled.
COMPILED_GREEDY = 1 << 24


def _greedy_steps(paths, valid, spread, weight, flat, width_links, seq, seq_step, widths,
                  g_pair, g_phase, g_size, g_count, g_start, order, counts, choices, picked):
    """The steps of :func:`_greedy` a group at a time, compiled with numba for large inputs:
    the same choices and loads as the vectorized steps. Phases do not share loads, so the
    groups come phase by phase (``seq``, each one's step in ``seq_step``), which keeps a
    phase's loads in cache; the groups of one phase and step see the loads as they were
    before that step (picked first, then added). A group's paths are ranked by (level,
    total, spread, index); its ``c`` flows take the ``c`` lowest of "path j after its r-th
    flow" for r below the step's ``widths``."""
    m, h = paths.shape[1], paths.shape[2]
    lev = np.empty(m)
    tot = np.empty(m)
    top = np.empty(m, np.int64)
    rise = np.empty(m)
    taken = np.empty(m, np.int64)
    lo = 0
    while lo < seq.shape[0]:
        hi = lo + 1
        while (hi < seq.shape[0] and seq_step[hi] == seq_step[lo]
               and g_phase[seq[hi]] == g_phase[seq[lo]]):
            hi += 1
        width = widths[seq_step[lo]]
        base = g_phase[seq[lo]] * width_links
        n_picked = 0
        for i in range(lo, hi):
            g = seq[i]
            gp, c, gs = g_pair[g], g_count[g], g_size[g]
            for j in range(m):
                lk = paths[gp, j, 0]
                peak = flat[base + lk] + gs * weight[lk]
                total = peak
                for k in range(1, h):
                    lk = paths[gp, j, k]
                    a = flat[base + lk] + gs * weight[lk]
                    peak = max(peak, a)
                    total += a
                lev[j] = np.rint(peak * (1 / EPS)) if valid[gp, j] else np.inf
                tot[j] = np.rint(total * (1 / EPS))
            # The c best paths in order (only they can take any of the c flows).
            n_top = 0
            for j in range(m):
                at = n_top
                while at > 0:
                    q = top[at - 1]
                    if (lev[j] < lev[q] or (lev[j] == lev[q] and (
                            tot[j] < tot[q] or (tot[j] == tot[q]
                                                and spread[gp, j] < spread[gp, q])))):
                        at -= 1
                    else:
                        break
                if at < c:
                    for s in range(min(n_top, c - 1), at, -1):
                        top[s] = top[s - 1]
                    top[at] = j
                    n_top = min(n_top + 1, c)
            has = counts[gp] > 0
            if c == 1:
                picked[n_picked] = top[0] if has else -1
                n_picked += 1
                continue
            # "Path j after its r-th flow" (r below the step's width) in order of level,
            # then j: a merge of the paths' rising levels, the c lowest taking the c flows.
            # Levels rise with j and with r, so a scan stops at the first path whose
            # lowest level cannot beat the best found.
            for j in range(n_top):
                heaviest = weight[paths[gp, top[j], 0]]
                for k in range(1, h):
                    heaviest = max(heaviest, weight[paths[gp, top[j], k]])
                rise[j] = np.rint(gs * heaviest * (1 / EPS))
                taken[j] = 0
            for w in range(c):
                best, best_level = -1, np.inf
                for j in range(n_top):
                    first = lev[top[j]]
                    if best >= 0 and first >= best_level:
                        break
                    if taken[j] < width:
                        level = first + rise[j] * taken[j]
                        if best < 0 or level < best_level:
                            best, best_level = j, level
                taken[best] += 1
                picked[n_picked] = top[best] if has else -1
                n_picked += 1
        n_picked = 0
        for i in range(lo, hi):
            g = seq[i]
            gp, gs = g_pair[g], g_size[g]
            for w in range(g_count[g]):
                p = picked[n_picked]
                n_picked += 1
                choices[order[g_start[g] + w]] = p
                if p >= 0:
                    for k in range(h):
                        lk = paths[gp, p, k]
                        flat[base + lk] += gs * weight[lk]
        lo = hi


def _improve(paths, valid, weight, loads, pair, phase, size, choices, ops, batch=4096):
    """Move flows off each phase's peak links while the op budget lasts.

    A move is taken only if the flow's new path stays below its phase's peak, and only while
    its old path still touches a link at the peak: each move removes a link from the peak
    and adds none, so rounds end. Phases with the highest peaks go first.
    """
    n_links = loads.shape[1] - 1
    movable = (valid.sum(axis=1)[pair] > 1) & (choices >= 0)
    cur = paths[pair, np.maximum(choices, 0)]
    rows = np.arange(batch)
    flat, width_links = loads.reshape(-1), loads.shape[1]
    while ops > 0 and n_links:
        peak = loads[:, :n_links].max(axis=1)
        hot = loads >= (peak - EPS)[:, None]
        hot[:, n_links] = False
        ops -= loads.size + cur.size
        cand = np.flatnonzero(hot[phase[:, None], cur].any(axis=1) & movable)
        cand = cand[np.lexsort((cand, -peak[phase[cand]]))]
        moved = 0
        for lo in range(0, len(cand), batch):
            if ops <= 0:
                break
            f = cand[lo:lo + batch]
            alt = paths[pair[f]]
            ops -= alt.size
            after = flat.take(alt + (phase[f] * width_links)[:, None, None])
            after += size[f][:, None, None] * weight[alt]
            for h in range(cur.shape[1]):  # links it already crosses carry it already
                own = cur[f, h]
                after -= np.where(alt == own[:, None, None],
                                  (size[f] * weight[own])[:, None, None], 0.0)
            alt_peak = np.where(valid[pair[f]], after.max(axis=2), np.inf)
            alt_peak[rows[:len(f)], choices[f]] = np.inf
            best = alt_peak.argmin(axis=1)
            good = alt_peak[rows[:len(f)], best] < peak[phase[f]] - EPS
            for i in np.flatnonzero(good):
                flow, p = f[i], phase[f[i]]
                old, new = cur[flow], alt[i, best[i]]
                row = loads[p]
                if row[old].max() < peak[p] - EPS:
                    continue  # an earlier move already took its peak link off the peak
                extra = np.where(np.isin(new, old), 0.0, size[flow] * weight[new])
                if (row[new] + extra).max() >= peak[p] - EPS:
                    continue
                row[old] -= size[flow] * weight[old]
                row[new] += size[flow] * weight[new]
                row[n_links] = 0.0
                choices[flow], cur[flow] = best[i], new
                moved += 1
        if not moved:
            break


def batched_min_max_assignment(paths, path_counts, flow_pair, flow_phase, flow_size,
                               link_weight, background=None, improve_ops=10_000_000,
                               max_cells=1 << 23):
    """Min-max path assignment for many flows that share few candidate path sets.

    Flows between one pair of endpoints (a *pair*: e.g. two switches) share its candidate
    paths, given once per pair as arrays of integer link ids. Flows of one *phase* run
    together, phases one after another, so each phase has its own link loads (all start from
    ``background``) and what is minimized is the most loaded link of any phase. Greedy takes
    the flows of each phase largest first, a batch of identical flows (same pair and size)
    at a time, every phase in one vectorized step, and spreads a batch over its pair's paths
    in order of the load they would reach (ties: least overlap with the pair's earlier paths,
    then path order; from ``COMPILED_GREEDY`` candidate link loads the steps run compiled,
    a group at a time, with the same choices); then, within ``improve_ops``, flows move off
    each phase's peak links to paths that stay below that peak. The result is proven
    optimal only when it meets the trivial bound (the worst flow alone on its best path).

    Parameters
    ----------
    paths : array of int, shape (pairs, m, h)
        ``paths[p, j]`` is the j-th candidate path of pair p as link ids, padded with
        ``len(link_weight)`` (no link). A path of no links (both ends on one switch) is a
        row of padding.
    path_counts : array of int, shape (pairs,)
        How many of a pair's m rows are paths (the rest is padding).
    flow_pair, flow_phase : array of int, shape (n,)
        Each flow's pair and its phase (0 .. phases - 1).
    flow_size : array of float, shape (n,)
        Each flow's size (e.g. bytes).
    link_weight : array of float, shape (links,)
        Load one unit of size puts on each link (e.g. 8 / capacity: seconds per byte).
    background : array of float, shape (links,), optional
        Load already on each link, in every phase.
    improve_ops : int
        Budget of the improvement, in link loads examined (a count, not a time).
    max_cells : int
        Phases are handled in chunks of at most this many (phase, link) loads, so memory does
        not grow with phases times links.

    Returns
    -------
    tuple
        ``(choices, peak, exact)``: the index of the chosen path per flow (-1 for a flow
        whose pair has no path), the peak load of any link in any phase, and whether that
        peak is proven optimal.

    Examples
    --------
    Two links (0, 1) and two paths between one pair, three flows of one phase:

    >>> import numpy as np
    >>> paths = np.array([[[0], [1]]])
    >>> choices, peak, exact = batched_min_max_assignment(
    ...     paths, [2], np.zeros(3, int), np.zeros(3, int), np.array([2.0, 1.0, 1.0]),
    ...     np.ones(2))
    >>> choices.tolist(), peak, exact
    ([0, 1, 1], 2.0, True)
    """
    paths = np.asarray(paths)
    if paths.dtype.kind not in "iu":
        paths = paths.astype(np.int64)
    flow_pair = np.asarray(flow_pair, dtype=np.int64)
    flow_phase = np.asarray(flow_phase, dtype=np.int64)
    flow_size = np.asarray(flow_size, dtype=float)
    n_links = len(link_weight)
    if paths.shape[2] == 0:
        paths = np.full(paths.shape[:2] + (1,), n_links, dtype=np.int64)
    weight = np.append(np.asarray(link_weight, dtype=float), 0.0)
    base = np.zeros(n_links + 1)
    if background is not None:
        base[:n_links] = background
    n = len(flow_pair)
    choices = np.full(n, -1, dtype=np.int64)
    if n == 0 or paths.shape[1] == 0:
        return choices, float(base.max()), True
    valid = np.arange(paths.shape[1]) < np.asarray(path_counts)[:, None]
    spread = _spread_ranks(paths, n_links)
    n_phases = int(flow_phase.max()) + 1
    by_phase = np.argsort(flow_phase, kind="stable")
    edges = np.searchsorted(flow_phase[by_phase], np.arange(n_phases + 1))
    per_chunk = max(1, max_cells // (n_links + 1))
    peak = float(base.max())
    for first in range(0, n_phases, per_chunk):
        last = min(n_phases, first + per_chunk)
        idx = by_phase[edges[first]:edges[last]]
        if not len(idx):
            continue
        loads = np.tile(base, (last - first, 1))
        pair, phase, size = flow_pair[idx], flow_phase[idx] - first, flow_size[idx]
        mine = np.full(len(idx), -1, dtype=np.int64)
        _greedy(paths, valid, spread, weight, loads, pair, phase, size, mine)
        _improve(paths, valid, weight, loads, pair, phase, size, mine,
                 improve_ops * len(idx) // n)
        choices[idx] = mine
        peak = max(peak, float(loads[:, :n_links].max(initial=0.0)))
    return choices, peak, peak <= _alone_bound(paths, valid, weight, base, flow_pair,
                                               flow_size) + EPS


def _alone_bound(paths, valid, weight, base, pair, size):
    """No assignment beats the largest flow of any pair alone on its best path."""
    largest = np.zeros(len(paths))
    np.maximum.at(largest, pair, size)
    used = np.flatnonzero((largest > 0) & valid.any(axis=1))
    bound = float(base.max())
    for lo in range(0, len(used), 4096):
        p = used[lo:lo + 4096]
        cand = paths[p]
        alone = (base[cand] + largest[p][:, None, None] * weight[cand]).max(axis=2)
        bound = max(bound, float(np.where(valid[p], alone, np.inf).min(axis=1).max()))
    return bound
