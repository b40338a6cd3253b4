"""A fake OpenFlow 1.3 datapath: applies the core's messages to tables and forwards packets.

It models what the tests need to assert behaviour, not bytes: the highest-priority matching
rule wins (exact-match fields, looked up by the set of fields each rule matches on); a SELECT
group may take any bucket of non-zero weight (``forward`` returns all of them); a
FAST_FAILOVER group takes its first bucket whose watch port is live; groups may chain to
groups. As on Open vSwitch, a plain output to the packet's in-port is dropped, and
``PORT_IN_PORT`` sends it back. It also checks what a switch would reject: a rule or bucket
pointing at a missing group, a group added twice, a group deleted while something uses it, a
FAST_FAILOVER bucket without a watch port.
"""

from controllers.rules import (PORT_IN_PORT, ClearSwitch, FlowMod, GroupMod, Output,
                               ToController, ToGroup)


def _refs(actions):
    return {a.group_id for a in actions if isinstance(a, ToGroup)}


class FakeSwitch:
    def __init__(self, dpid):
        self.dpid = dpid
        self.flows = {}
        self.groups = {}
        self.down_ports = set()
        self._schemas = None

    def apply(self, msg):
        if isinstance(msg, ClearSwitch):
            self.flows.clear()
            self.groups.clear()
        elif isinstance(msg, FlowMod):
            if msg.command == "add":
                missing = _refs(msg.rule.actions) - set(self.groups)
                assert not missing, f"dpid {self.dpid}: flow refers to missing group(s) {missing}"
                self.flows[msg.rule.key] = msg.rule
            else:
                self.flows.pop(msg.rule.key, None)
        elif isinstance(msg, GroupMod):
            group = msg.group
            gid = group.group_id
            if msg.command in ("add", "modify"):
                if msg.command == "add":
                    assert gid not in self.groups, f"dpid {self.dpid}: group {gid} added twice"
                else:
                    assert gid in self.groups, f"dpid {self.dpid}: modify of missing group {gid}"
                for b in group.buckets:
                    missing = _refs(b.actions) - set(self.groups)
                    assert not missing, f"dpid {self.dpid}: group {gid} chains to {missing}"
                    if group.type == "fast_failover":
                        assert b.watch_port is not None, f"group {gid}: bucket without watch port"
                self.groups[gid] = group
            else:
                users = [r for r in self.flows.values() if gid in _refs(r.actions)]
                users += [g for g in self.groups.values()
                          if any(gid in _refs(b.actions) for b in g.buckets)]
                # A switch deletes the flows that use a deleted group: the core must not rely
                # on that, it removes its users first.
                assert not users, f"dpid {self.dpid}: group {gid} deleted while in use"
                self.groups.pop(gid, None)
        self._schemas = None

    def lookup(self, pkt):
        """The rule a packet (dict of OXM fields) hits, or None."""
        if self._schemas is None:
            schemas = {(r.table_id, r.priority, tuple(k for k, _ in r.match))
                       for r in self.flows.values()}
            self._schemas = sorted(schemas, key=lambda s: -s[1])
        for table, priority, fields in self._schemas:
            if all(f in pkt for f in fields):
                rule = self.flows.get((table, priority, tuple((f, pkt[f]) for f in fields)))
                if rule is not None:
                    return rule
        return None

    def _expand(self, actions, in_port):
        outs = set()
        for a in actions:
            if isinstance(a, Output):
                if a.port == PORT_IN_PORT:
                    outs.add(in_port)
                elif a.port != in_port:
                    outs.add(a.port)
            elif isinstance(a, ToController):
                outs.add("controller")
            elif isinstance(a, ToGroup):
                group = self.groups[a.group_id]
                if group.type == "fast_failover":
                    live = [b for b in group.buckets if b.watch_port not in self.down_ports]
                    if live:
                        outs |= self._expand(live[0].actions, in_port)
                else:
                    for b in group.buckets:
                        if b.weight > 0 or group.type != "select":
                            outs |= self._expand(b.actions, in_port)
        return outs

    def forward(self, pkt):
        """Every port the packet may leave by (all SELECT buckets), "controller", or empty.

        ``pkt`` must carry ``in_port``. Outputs to a down port are kept: the packet is lost
        there, and ``FakeFabric.paths`` reports it.
        """
        rule = self.lookup(pkt)
        return set() if rule is None else self._expand(rule.actions, pkt.get("in_port"))

    def bucket_ports(self, group_id):
        """``[(weight, port the bucket sends to now)]`` of a SELECT group (FF groups followed)."""
        out = []
        for b in self.groups[group_id].buckets:
            (port,) = self._expand(b.actions, None)
            out.append((b.weight, port))
        return out


class FakeFabric:
    """Fake switches wired like a fabric model, for walking packets end to end."""

    def __init__(self, g):
        self.g = g
        self.by_dpid = {}
        self.peer = {}  # (node, port) -> (node, port)
        for n, d in g.nodes(data=True):
            if d["role"] != "host":
                self.by_dpid[d["dpid"]] = FakeSwitch(d["dpid"])
        for u, v, d in g.edges(data=True):
            self.peer[(u, d["ports"][u])] = (v, d["ports"][v])
            self.peer[(v, d["ports"][v])] = (u, d["ports"][u])

    def apply(self, msgs):
        for m in msgs:
            if hasattr(m, "dpid") and m.dpid in self.by_dpid and not hasattr(m, "packet"):
                self.by_dpid[m.dpid].apply(m)

    def switch(self, node):
        return self.by_dpid[self.g.nodes[node]["dpid"]]

    def set_link(self, u, v, up):
        """Mark both ends of link u-v down (or up again) without telling any controller."""
        for a in (u, v):
            if self.g.nodes[a]["role"] != "host":
                ports = self.switch(a).down_ports
                port = self.g.edges[u, v]["ports"][a]
                if up:
                    ports.discard(port)
                else:
                    ports.add(port)

    def packet(self, src, dst, **fields):
        """An IPv4 packet from host src to host dst, with extra OXM ``fields``."""
        s, d = self.g.nodes[src], self.g.nodes[dst]
        return dict({"eth_src": s["mac"], "eth_dst": d["mac"], "eth_type": 0x0800,
                     "ipv4_src": s["ip"], "ipv4_dst": d["ip"]}, **fields)

    def paths(self, src, dst, max_hops=16, **fields):
        """All switch paths (tuples of node names) a packet from host src to host dst can take.

        Extra keyword ``fields`` are OXM fields of the packet (e.g. a 5-tuple). Raises
        AssertionError if any branch is dropped, loops, leaves by a down port, or ends at the
        wrong host.
        """
        pkt = self.packet(src, dst, **fields)
        done = []

        def walk(node, in_port, path):
            assert len(path) <= max_hops, f"loop: {path}"
            sw = self.switch(node)
            outs = sw.forward(dict(pkt, in_port=in_port))
            assert outs and "controller" not in outs, f"{src}->{dst} dropped at {node}: {outs}"
            for port in sorted(outs):
                assert port not in sw.down_ports, f"{src}->{dst} lost at {node} port {port}"
                nxt, nxt_port = self.peer[(node, port)]
                if self.g.nodes[nxt]["role"] == "host":
                    assert nxt == dst, f"{src}->{dst} delivered to {nxt}"
                    done.append(tuple(path + [node]))
                else:
                    walk(nxt, nxt_port, path + [node])

        (first,) = self.g.neighbors(src)
        walk(first, self.g.edges[src, first]["ports"][first], [])
        return done
