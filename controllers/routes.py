"""Proactive per-destination routes and their local protection, computed from the switch graph.

Pure computation for controllers/core.py: from the discovered switch adjacency, the hosts and
the policy's flags it builds what every switch must hold for destination-based forwarding, and
answers questions about that state (next hops, equal-cost paths, the action that sends a
packet from a switch to one of its next hops). It must not import Ryu, keep time, or weigh
paths by load: policies do that through :meth:`Routes.paths` and :meth:`Routes.hop_action`.

Forwarding
----------
For every destination switch D (one with hosts) and every other switch S that reaches it, a
SELECT group over S's next hops toward D on shortest paths (only the first, by dpid, for the
``shortest`` policy); one rule per host MAC sends to the group of that host's switch, and D
outputs to the host port. Group ids come from :class:`GroupIds`, the same on every switch, so
a host's rule is one object shared by every switch.

Local protection (``fast_failover``)
------------------------------------
The action toward a next hop N is a FAST_FAILOVER group: N first, then S's other next hops
toward D in rotation, so a dead port moves traffic to another equal-cost hop before the
controller hears of it. Where S has a single next hop P (down the tree in a Clos fabric), the
alternate is a neighbour A that still reaches D without crossing S-P:

- a loop-free alternate if there is one (S is not one of A's next hops toward D);
- otherwise an upstream A that sends the packet back up another way: A gets *U-turn* rules
  (in_port from S, eth_dst a host of D -> A's next hops toward D other than S), and A qualifies
  only if none of those next hops has a shortest path to D through S. S gets *bounce* rules for
  packets that came from A (-> P, else back out of the in-port), because a plain output to A
  would be an output to the in-port, which a switch silently drops.

Detour rules sit above every pin without changing normal forwarding: U-turn rules only match
packets a failure sent away from D (S never forwards toward D to a switch farther from D), and
bounce rules send to P, S's only next hop, as any pin through S does. Alternates rotate over
destinations so detours spread. Where no neighbour qualifies the hop stays unprotected until
the controller recomputes. With one failed link of a fat-tree or a leaf-spine no packet loops
or is dropped; tests/test_policies.py fails every link of both to check it.
"""

import collections

from controllers.rules import (
    ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_LLDP, IP_PROTO_TCP, IP_PROTO_UDP,
    PORT_IN_PORT, PRIO_CONTROL, PRIO_DETOUR, PRIO_HOST_ROUTE, PRIO_LEARN, PRIO_TABLE_MISS,
    Bucket, FlowRule, Group, Output, ToController, ToGroup, match)


def base_rules():
    """Rules every switch gets: LLDP and ARP to the controller, IPv6 and the rest dropped."""
    return [
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_LLDP), (ToController(),)),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_ARP), (ToController(),)),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_IPV6), ()),
        FlowRule(PRIO_TABLE_MISS, (), ()),
    ]


class GroupIds:
    """Group ids by meaning, unique across kinds and stable for the life of a core.

    A key such as ``("select", dst_dpid)`` or ``("ff", ports)`` gets one id, used on every
    switch that needs that group; identical keys mean identical groups, so no switch ever holds
    two groups under one id, and an id is never reused for another meaning (a rule still
    pointing at it during an update cannot reach the wrong group).
    """

    def __init__(self):
        self._ids = {}

    def __call__(self, key):
        gid = self._ids.get(key)
        if gid is None:
            gid = self._ids[key] = len(self._ids) + 1
        return gid


def path_links(path):
    """Directed links ``(u, v)`` of a switch path."""
    return list(zip(path, path[1:]))


class Routes:
    """Destination-based forwarding state of a fabric, built once per topology.

    Parameters
    ----------
    adjacency : dict
        ``{dpid: {neighbour dpid: local port}}`` of every connected switch (symmetric).
    hosts : iterable
        Known hosts, each with ``mac``, ``dpid`` and ``port``.
    group_ids : GroupIds
        The core's group id allocator.
    multipath : bool
        SELECT over every equal-cost next hop (else only the first by dpid).
    fast_failover : bool
        Protect every next hop with a FAST_FAILOVER group and detour rules.
    learn_flows : bool
        Send new IPv4 TCP/UDP flows from host ports to the controller (PRIO_LEARN rules).
    weights : dict, optional
        ``{(dpid, dst dpid): {next hop: weight}}`` for SELECT buckets; missing ones weigh 1.
    intern : dict, optional
        Cache of immutable rule and group objects, shared between rebuilds so that an
        unchanged rule is the same object and compares in O(1).

    Attributes
    ----------
    flows, groups : dict
        ``{dpid: {rule key: FlowRule}}`` and ``{dpid: {group id: Group}}``.
    dist, hops : dict
        ``{dst: {dpid: hop count}}`` and ``{dst: {dpid: next hops toward dst}}``.
    alternates : dict
        ``{(dpid, dst): (alternate neighbour, needs U-turn rules)}`` for single-next-hop pairs.
    """

    def __init__(self, adjacency, hosts, group_ids, multipath=True, fast_failover=True,
                 learn_flows=False, weights=None, intern=None):
        self.adj = adjacency
        self.nbrs = {s: sorted(n) for s, n in adjacency.items()}
        self.group_ids = group_ids
        self.multipath = multipath
        self.fast_failover = fast_failover
        self.weights = weights if weights is not None else {}
        self._intern = intern if intern is not None else {}
        self.hosts_at = collections.defaultdict(list)
        for h in sorted(hosts, key=lambda h: h.mac):
            if h.dpid in adjacency:
                self.hosts_at[h.dpid].append(h)
        self.dist, self.hops, self.alternates = {}, {}, {}
        self.flows = {s: {} for s in adjacency}
        self.groups = {s: {} for s in adjacency}
        self._paths = {}
        self._hop_cache = {}  # (switch, next hops, alternate) -> action per next hop
        self._build(learn_flows)

    # -- interning -------------------------------------------------------------------------
    def _one(self, key, make):
        obj = self._intern.get(key)
        if obj is None:
            obj = self._intern[key] = make()
        return obj

    def _rule(self, priority, fields, action):
        return self._one(("rule", priority, fields, action),
                         lambda: FlowRule(priority, fields, (action,)))

    # -- building --------------------------------------------------------------------------
    def _build(self, learn_flows):
        base = [self._one(("base", r.key), lambda r=r: r) for r in base_rules()]
        for s in self.adj:
            self.flows[s].update((r.key, r) for r in base)
        for index, dst in enumerate(sorted(self.hosts_at)):
            dist = self._bfs(dst)
            hops = {s: tuple(n for n in self.nbrs[s] if dist.get(n) == d - 1)
                    for s, d in dist.items() if s != dst}
            self.dist[dst], self.hops[dst] = dist, hops
            if self.fast_failover:
                for s, hs in hops.items():
                    if len(hs) == 1:
                        self._protect(s, dst, index)
            gid = self.select_gid(dst)
            to_group = self._one(("to", gid), lambda: ToGroup(gid))
            host_rules = [self._rule(PRIO_HOST_ROUTE, match(eth_dst=h.mac), to_group)
                          for h in self.hosts_at[dst]]
            for s in hops:
                self.groups[s][gid] = self._select(s, dst)
                flows = self.flows[s]
                for r in host_rules:
                    flows[r.key] = r
            for h in self.hosts_at[dst]:
                r = self._rule(PRIO_HOST_ROUTE, match(eth_dst=h.mac), Output(h.port))
                self.flows[dst][r.key] = r
        if learn_flows:
            for s, hs in self.hosts_at.items():
                for h in hs:
                    for proto in (IP_PROTO_TCP, IP_PROTO_UDP):
                        r = self._rule(PRIO_LEARN, match(in_port=h.port, eth_type=ETH_TYPE_IPV4,
                                                         ip_proto=proto), ToController())
                        self.flows[s][r.key] = r

    def _bfs(self, src):
        dist = {src: 0}
        frontier = [src]
        while frontier:
            nxt = []
            for u in frontier:
                d = dist[u] + 1
                for v in self.adj[u]:
                    if v not in dist:
                        dist[v] = d
                        nxt.append(v)
            frontier = nxt
        return dist

    def _protect(self, s, dst, index):
        """Choose the alternate of single-next-hop switch ``s`` toward ``dst``.

        Candidates are scanned in dpid order starting at a place that rotates with the
        destination, so that detours toward different destinations spread over neighbours.
        """
        dist, hops = self.dist[dst], self.hops[dst]
        (primary,) = hops[s]
        cands = [a for a in self.nbrs[s] if a != primary and a in dist]
        if not cands:
            return
        start = index % len(cands)
        cands = cands[start:] + cands[:start]
        for a in cands:
            if s not in hops[a]:
                self.alternates[(s, dst)] = (a, False)
                return
        for a in cands:
            rest = tuple(m for m in hops[a] if m != s)
            # m reaches dst through s iff dist(m, s) + dist(s, dst) == dist(m, dst); m is a
            # neighbour of a, itself a neighbour of s, so dist(m, s) is 1 or 2.
            if rest and all(m == dst or (1 if s in self.adj[m] else 2) + dist[s] != dist[m]
                            for m in rest):
                break
        else:
            return
        self.alternates[(s, dst)] = (a, True)
        back = self._ff(a, tuple(self.adj[a][m] for m in rest))
        bounce = self._bounce(s, self.adj[s][primary], self.adj[s][a])
        for h in self.hosts_at[dst]:
            r = self._rule(PRIO_DETOUR, match(in_port=self.adj[a][s], eth_dst=h.mac), back)
            self.flows[a][r.key] = r
            r = self._rule(PRIO_DETOUR, match(in_port=self.adj[s][a], eth_dst=h.mac), bounce)
            self.flows[s][r.key] = r

    def _ff(self, s, ports):
        """Action trying ``ports`` in order (a FAST_FAILOVER group registered on ``s``)."""
        if len(ports) == 1:
            return self._one(("out", ports[0]), lambda: Output(ports[0]))
        gid = self.group_ids(("ff", ports))
        self.groups[s][gid] = self._one(("group", gid), lambda: Group(gid, "fast_failover", tuple(
            Bucket((Output(p),), watch_port=p) for p in ports)))
        return self._one(("to", gid), lambda: ToGroup(gid))

    def _bounce(self, s, primary_port, from_port):
        gid = self.group_ids(("bounce", primary_port, from_port))
        self.groups[s][gid] = self._one(("group", gid), lambda: Group(gid, "fast_failover", (
            Bucket((Output(primary_port),), watch_port=primary_port),
            Bucket((Output(PORT_IN_PORT),), watch_port=from_port))))
        return self._one(("to", gid), lambda: ToGroup(gid))

    def _select(self, s, dst):
        gid = self.select_gid(dst)
        hs, actions = self._hop_actions(s, dst)
        wmap = self.weights.get((s, dst), {})
        buckets = tuple(self._one(("bucket", a, wmap.get(n, 1)),
                                  lambda a=a, n=n: Bucket((a,), weight=wmap.get(n, 1)))
                        for n, a in zip(hs, actions))
        return self._one(("select", gid, buckets), lambda: Group(gid, "select", buckets))

    def _hop_actions(self, s, dst):
        """S's next hops toward ``dst`` and the action toward each used one (hop_action)."""
        hs = self.hops[dst][s]
        alt = self.alternates.get((s, dst))
        key = (s, hs, alt)
        actions = self._hop_cache.get(key)
        if actions is None:
            ports = tuple(self.adj[s][n] for n in hs)
            # Without multipath only the first next hop is used: build no groups for others.
            used = range(len(ports) if self.multipath else 1)
            if not self.fast_failover:
                actions = tuple(self._one(("out", ports[i]), lambda i=i: Output(ports[i]))
                                for i in used)
            elif len(ports) > 1:
                actions = tuple(self._ff(s, ports[i:] + ports[:i]) for i in used)
            else:
                backup = () if alt is None else (self.adj[s][alt[0]],)
                actions = (self._ff(s, ports + backup),)
            self._hop_cache[key] = actions
        return hs, actions

    # -- queries ---------------------------------------------------------------------------
    def select_gid(self, dst):
        """Id of the group that leads toward destination switch ``dst`` (on any switch)."""
        return self.group_ids(("select", dst))

    def hop_action(self, s, dst, n):
        """The action that sends a packet for ``dst`` from ``s`` to its next hop ``n``.

        With protection, a FAST_FAILOVER group falling back to the other next hops of ``s`` (or
        to its alternate); the group is registered in ``groups[s]``.
        """
        hs, actions = self._hop_actions(s, dst)
        return actions[hs.index(n)]

    def reselect(self, s, dst):
        """Rebuild the SELECT group of ``s`` toward ``dst`` from ``weights``; return it."""
        group = self._select(s, dst)
        self.groups[s][group.group_id] = group
        return group

    def paths(self, src, dst):
        """Every shortest switch path from ``src`` to ``dst``, as sorted tuples of dpids."""
        key = (src, dst)
        if key not in self._paths:
            hops = self.hops.get(dst, {})
            if src == dst:
                found = [(src,)] if src in self.adj else []
            else:
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
        return self._paths[key]

    def allows(self, path):
        """Is ``path`` a shortest path toward its last switch in this topology?"""
        hops = self.hops.get(path[-1])
        if hops is None:
            return len(path) == 1 and path[0] in self.adj
        return all(b in hops.get(a, ()) for a, b in zip(path, path[1:]))

    def port(self, u, v):
        """Port of switch ``u`` on its link to ``v``."""
        return self.adj[u][v]
