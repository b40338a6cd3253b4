"""Path service: hop distances and equal-cost next hops toward every destination switch.

One job: from the switch adjacency (controllers/topology.py) and the set of destination
switches (those with hosts), keep ``dist[D]`` (hops from every switch to D) and ``hops[D]``
(every switch's neighbours one hop closer to D, sorted by dpid), and answer path questions:
the equal-cost paths between two switches, and k loop-free paths including non-minimal ones
for policies that ask for them.

It is updated incrementally: a link that appears or vanishes changes, for most destinations,
only the next hops of one of its two ends, found in O(1) from the two distances; only a
destination whose distances change is searched again (one BFS). :meth:`update` returns what
changed, per destination, for the renderer to redo only that. Path enumerations are cached
in a bounded LRU cache, dropped when the topology changes.

It must not build rules, weigh paths by load, import Ryu or read a clock.
"""

import collections
import itertools

import networkx as nx
import numpy as np

# Path enumerations kept (each a list of switch tuples): enough for every edge-switch pair a
# k=16 fat-tree's policies touch in a round, bounded so memory does not grow with flows.
PATH_CACHE_SIZE = 65536


def path_links(path):
    """Directed links ``(u, v)`` of a switch path."""
    return list(zip(path, path[1:]))


class PathService:
    """Distances and next hops toward every destination switch.

    Parameters
    ----------
    adj : dict
        ``{dpid: {neighbour: port}}``, kept current by the topology state (read, never
        written here).

    Attributes
    ----------
    dist, hops : dict
        ``{dst: {dpid: hop count}}`` and ``{dst: {dpid: tuple of next hops}}`` for every
        destination; ``hops[dst]`` has no entry for ``dst`` itself.
    dests : list
        Destination switches, sorted.
    """

    def __init__(self, adj):
        self.adj = adj
        self.dist, self.hops = {}, {}
        self.dests = []
        self.version = 0
        self._paths = collections.OrderedDict()
        self._graph = None

    # -- building --------------------------------------------------------------------------
    def rebuild(self, dests):
        """Recompute everything for these destination switches (those in the adjacency)."""
        self.dests = sorted(d for d in dests if d in self.adj)
        self.dist, self.hops = {}, {}
        for d in self.dests:
            self._search(d)
        self._changed()

    def _search(self, dst):
        # One BFS from dst: a switch v first reached from u at distance d gets d + 1, and
        # every u at distance d that reaches it is one of its next hops (the adjacency is
        # symmetric, so these are exactly its neighbours one hop closer).
        adj = self.adj
        dist = {dst: 0}
        below = {}
        frontier = [dst]
        du = 0
        while frontier:
            nxt = []
            du += 1
            for u in frontier:
                for v in adj[u]:
                    d = dist.get(v)
                    if d is None:
                        dist[v] = du
                        below[v] = [u]
                        nxt.append(v)
                    elif d == du:
                        below[v].append(u)
            frontier = nxt
        hops = {}
        for s, ns in below.items():
            ns.sort()
            hops[s] = tuple(ns)
        self.dist[dst], self.hops[dst] = dist, hops

    def update(self, pairs, dests):
        """Bring distances and next hops up to date after the adjacency changed.

        Parameters
        ----------
        pairs : iterable
            Switch pairs ``(a, b)`` whose adjacency changed (added, removed or re-ported).
        dests : iterable
            The destination switches now.

        Returns
        -------
        dict
            ``{dst: set of switches whose next hops toward dst changed, or None}``, where
            None means that destination was searched again (new, or its distances moved) and
            everything toward it must be redone. Destinations that are gone are not listed;
            compare :attr:`dests` before and after.
        """
        new_dests = sorted(d for d in dests if d in self.adj)
        changed = {}
        for d in set(self.dests) - set(new_dests):
            del self.dist[d], self.hops[d]
        for d in new_dests:
            if d not in self.dist:
                self._search(d)
                changed[d] = None
        self.dests = new_dests
        pairs = sorted(pairs)
        for d in self.dests:
            if d in changed:
                continue
            touched = set()
            for a, b in pairs:
                if not self._patch(d, a, b, touched):
                    self._search(d)
                    changed[d] = None
                    break
            else:
                if touched:
                    changed[d] = touched
        if pairs or changed:
            self._changed()
        return changed

    def _patch(self, d, a, b, touched):
        """Adjust next hops toward d for a change of the pair a-b; False if distances move."""
        dist, hops, adj = self.dist[d], self.hops[d], self.adj
        da, db = dist.get(a), dist.get(b)
        linked = b in adj.get(a, ())
        if da is None or db is None:
            # One end was unreachable: a new link may connect it, a lost one cannot matter.
            return not linked or (da is None and db is None)
        if abs(da - db) != 1:
            if linked and abs(da - db) > 1:
                return False  # a shortcut: distances shrink
            return True
        upper, lower = (a, b) if da > db else (b, a)
        have = hops[upper]
        if linked:
            if lower not in have:
                hops[upper] = tuple(sorted(have + (lower,)))
                touched.add(upper)
            return True
        if lower in have:
            if len(have) == 1:
                return False  # upper lost its last way down: its distance grows
            hops[upper] = tuple(n for n in have if n != lower)
            touched.add(upper)
        return True

    def _changed(self):
        self.version += 1
        self._paths.clear()
        self._graph = None

    # -- queries ---------------------------------------------------------------------------
    def paths(self, src, dst):
        """Every shortest switch path from ``src`` to ``dst``, as sorted tuples of dpids."""
        key = (src, dst)
        found = self._paths.get(key)
        if found is not None:
            self._paths.move_to_end(key)
            return found
        if src == dst:
            found = [(src,)] if src in self.adj else []
        else:
            hops = self.hops.get(dst, {})
            found = []
            stack = [(src,)]
            while stack:
                path = stack.pop()
                if path[-1] == dst:
                    found.append(path)
                else:
                    stack.extend(path + (n,) for n in hops.get(path[-1], ()))
            found.sort()
        self._paths[key] = found
        if len(self._paths) > PATH_CACHE_SIZE:
            self._paths.popitem(last=False)
        return found

    def allows(self, path):
        """Is ``path`` a shortest path toward its last switch in this topology?"""
        hops = self.hops.get(path[-1])
        if hops is None:
            return len(path) == 1 and path[0] in self.adj
        return all(b in hops.get(a, ()) for a, b in zip(path, path[1:]))

    def allowed(self, paths):
        """:meth:`allows` for every path of ``paths`` (controllers/intents.py
        ``SwitchPaths``) at once, as a bool array: a path is a shortest path toward its last
        switch exactly when each of its links is in the adjacency and it has as many links
        as that switch's distance from its first (each hop then comes one closer)."""
        adj = self.adj
        up = np.array([v in adj.get(u, ()) for u, v in paths.links] + [True], dtype=bool)
        want = np.array([(0 if a in adj else -1) if a == b else self.dist.get(b, {}).get(a, -1)
                         for a, b in zip(paths.first.tolist(), paths.last.tolist())],
                        dtype=np.int64)
        rows, n_links = paths.rows, len(paths.links)
        out = np.empty(len(paths), dtype=bool)
        step = 1 << 20
        for lo in range(0, len(paths), step):
            part = rows[lo:lo + step]
            group = np.arange(lo, lo + len(part)) // paths.width
            out[lo:lo + step] = (up[part].all(axis=1)
                                 & ((part < n_links).sum(axis=1) == want[group]))
        return out

    def k_paths(self, src, dst, k, max_extra_hops=2):
        """Up to ``k`` loop-free switch paths from ``src`` to ``dst``, shortest first.

        Includes non-minimal paths (at most ``max_extra_hops`` longer than the shortest), for
        policies that route around congestion on longer detours (Valiant-style). Ties are
        broken by the paths' dpid sequences.
        """
        if src not in self.adj or dst not in self.adj:
            return []
        if self._graph is None:
            self._graph = nx.Graph()
            self._graph.add_nodes_from(self.adj)
            self._graph.add_edges_from((u, v) for u, nbrs in self.adj.items() for v in nbrs)
        try:
            gen = nx.shortest_simple_paths(self._graph, src, dst)
            out = []
            for path in itertools.islice(gen, k):
                if out and len(path) > len(out[0]) + max_extra_hops:
                    break
                out.append(tuple(path))
        except nx.NetworkXNoPath:
            return []
        return sorted(out, key=lambda p: (len(p), p))
