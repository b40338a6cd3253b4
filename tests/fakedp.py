"""A fake OpenFlow 1.3 datapath: applies the core's messages to tables and forwards packets.

It models what the tests need to assert behaviour, not bytes: the highest-priority matching
rule wins, a SELECT group may take any of its buckets (``forward`` returns all of them), and a
FAST_FAILOVER group takes its first bucket whose watch port is live.
"""

from controllers.rules import ClearSwitch, FlowMod, GroupMod, Output, ToController, ToGroup


class FakeSwitch:
    def __init__(self, dpid):
        self.dpid = dpid
        self.flows = {}
        self.groups = {}
        self.down_ports = set()

    def apply(self, msg):
        if isinstance(msg, ClearSwitch):
            self.flows.clear()
            self.groups.clear()
        elif isinstance(msg, FlowMod):
            if msg.command == "add":
                if any(isinstance(a, ToGroup) and a.group_id not in self.groups
                       for a in msg.rule.actions):
                    raise AssertionError(f"dpid {self.dpid}: flow refers to a missing group")
                self.flows[msg.rule.key] = msg.rule
            else:
                self.flows.pop(msg.rule.key, None)
        elif isinstance(msg, GroupMod):
            if msg.command == "add":
                assert msg.group.group_id not in self.groups, "group added twice"
                self.groups[msg.group.group_id] = msg.group
            elif msg.command == "modify":
                assert msg.group.group_id in self.groups, "modify of a missing group"
                self.groups[msg.group.group_id] = msg.group
            else:
                self.groups.pop(msg.group.group_id, None)

    def lookup(self, pkt):
        """The rule a packet (dict of OXM fields) hits, or None."""
        best = None
        for rule in self.flows.values():
            if all(pkt.get(k) == v for k, v in rule.match):
                if best is None or rule.priority > best.priority:
                    best = rule
        return best

    def _expand(self, actions):
        outs = set()
        for a in actions:
            if isinstance(a, Output):
                outs.add(a.port)
            elif isinstance(a, ToController):
                outs.add("controller")
            elif isinstance(a, ToGroup):
                group = self.groups[a.group_id]
                if group.type == "fast_failover":
                    live = [b for b in group.buckets if b.watch_port not in self.down_ports]
                    if live:
                        outs |= self._expand(live[0].actions)
                else:
                    for b in group.buckets:
                        outs |= self._expand(b.actions)
        return outs

    def forward(self, pkt):
        """Every port the packet may leave by (all SELECT buckets), "controller", or empty."""
        rule = self.lookup(pkt)
        return set() if rule is None else self._expand(rule.actions)


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

    def paths(self, src, dst, max_hops=16):
        """All switch paths (tuples of node names) a packet from host src to host dst can take.

        Raises AssertionError if any branch is dropped, loops, or ends at the wrong host.
        """
        pkt = {"eth_dst": self.g.nodes[dst]["mac"], "eth_type": 0x0800}
        done = []

        def walk(node, in_port, path):
            assert len(path) <= max_hops, f"loop: {path}"
            sw = self.by_dpid[self.g.nodes[node]["dpid"]]
            outs = sw.forward(dict(pkt, in_port=in_port))
            assert outs and "controller" not in outs, f"{src}->{dst} dropped at {node}: {outs}"
            for port in outs:
                nxt, nxt_port = self.peer[(node, port)]
                if self.g.nodes[nxt]["role"] == "host":
                    assert nxt == dst, f"{src}->{dst} delivered to {nxt}"
                    done.append(tuple(path + [node]))
                else:
                    walk(nxt, nxt_port, path + [node])

        (first,) = self.g.neighbors(src)
        walk(first, self.g.edges[src, first]["ports"][first], [])
        return done
