"""A fake OpenFlow 1.3 datapath: applies the core's messages to tables and forwards packets.

It models what the tests need to assert behaviour, not bytes, and checks what a switch would
reject: a rule or bucket pointing at a missing group, a masked field whose value has bits
outside its mask, a group added twice, a modify of a missing group, a group deleted while
something uses it, a FAST_FAILOVER bucket without a watch port, a meter added twice, a rule
through a missing meter. What a packet does is left to the shared interpreter
(controllers/tables.py), the one the routing core and the flow-level simulator use: the
highest-priority matching rule wins, a FAST_FAILOVER group takes its first live bucket, a SELECT
group any live bucket (``paths``) or the one Open vSwitch's hash picks (``path``); a plain output
to the in-port is dropped, ``PORT_IN_PORT`` sends the packet back.
"""

from controllers.rules import ClearSwitch, FlowMod, GroupMod, Meter, MeterMod, ToGroup
from controllers.tables import CONTROLLER, FlowTable, masked, walk


def _refs(actions):
    return {a.group_id for a in actions if isinstance(a, ToGroup)}


class FakeSwitch:
    def __init__(self, dpid):
        self.dpid = dpid
        self.table = FlowTable()
        self.down_ports = set()
        self.meters = {}    # meter id -> MeterMod

    @property
    def flows(self):
        return self.table.flows

    @property
    def groups(self):
        return self.table.groups

    def live(self, port):
        return port not in self.down_ports

    def apply(self, msg):
        if isinstance(msg, ClearSwitch):
            self.table.clear()
            self.meters.clear()
        elif isinstance(msg, MeterMod):
            if msg.command == "modify":
                assert msg.meter_id in self.meters, \
                    f"dpid {self.dpid}: modify of missing meter {msg.meter_id}"
            else:
                assert msg.meter_id not in self.meters, \
                    f"dpid {self.dpid}: meter {msg.meter_id} added twice"
            self.meters[msg.meter_id] = msg._replace(command="add")
        elif isinstance(msg, FlowMod):
            if msg.command == "add":
                missing = _refs(msg.rule.actions) - set(self.groups)
                assert not missing, f"dpid {self.dpid}: flow refers to missing group(s) {missing}"
                for name, value in msg.rule.match:
                    if type(value) is tuple:
                        assert masked(*value) == value[0], (
                            f"dpid {self.dpid}: {name} {value[0]} has bits outside mask {value[1]}")
                meters = {a.meter_id for a in msg.rule.actions if isinstance(a, Meter)}
                assert meters <= set(self.meters), \
                    f"dpid {self.dpid}: flow through missing meter(s) {meters - set(self.meters)}"
                self.table.add_flow(msg.rule)
            else:
                self.table.delete_flow(msg.rule)
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
                self.table.set_group(group)
            else:
                users = [r for r in self.flows.values() if gid in _refs(r.actions)]
                users += [g for g in self.groups.values()
                          if any(gid in _refs(b.actions) for b in g.buckets)]
                # A switch deletes the flows that use a deleted group: the core must not rely
                # on that, it removes its users first.
                assert not users, f"dpid {self.dpid}: group {gid} deleted while in use"
                self.table.delete_group(gid)

    def lookup(self, pkt):
        """The rule a packet (dict of OXM fields) hits, or None."""
        return self.table.lookup(pkt)

    def forward(self, pkt, hashed=False):
        """Every port the packet may leave by (all live SELECT buckets), "controller", or empty.

        ``pkt`` must carry ``in_port``. With ``hashed``, the one SELECT bucket Open vSwitch
        would pick. Outputs to a down port are kept: the packet is lost there, and
        ``FakeFabric.paths`` reports it.
        """
        return set(self.table.outputs(pkt, pkt.get("in_port"), self.live, hashed))

    def bucket_ports(self, group_id):
        """``[(weight, port the bucket sends to now)]`` of a SELECT group (FF groups followed)."""
        out = []
        for b in self.groups[group_id].buckets:
            (port,) = self.table.expand(b.actions, live=self.live)
            out.append((b.weight, port))
        return out


class FakeFabric:
    """Fake switches wired like a fabric model, for walking packets end to end."""

    def __init__(self, g):
        self.g = g
        self.by_dpid = {}
        self.names = {}    # dpid -> switch node
        self.peers = {}    # (dpid, port) -> (dpid, port), both directions of switch links
        self.host_at = {}  # (dpid, port) -> host node
        for n, d in g.nodes(data=True):
            if d["role"] != "host":
                self.by_dpid[d["dpid"]] = FakeSwitch(d["dpid"])
                self.names[d["dpid"]] = n
        for u, v, d in g.edges(data=True):
            for a, b in ((u, v), (v, u)):
                if g.nodes[a]["role"] == "host":
                    continue
                here = (g.nodes[a]["dpid"], d["ports"][a])
                if g.nodes[b]["role"] == "host":
                    self.host_at[here] = b
                else:
                    self.peers[here] = (g.nodes[b]["dpid"], d["ports"][b])

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

    def _live(self, dpid, port):
        return port not in self.by_dpid[dpid].down_ports

    def _walk(self, src, dst, max_hops, hashed, fields):
        """Delivered switch paths (node names) of a packet from src to dst; asserts the rest."""
        (first,) = self.g.neighbors(src)
        start = (self.g.nodes[first]["dpid"], self.g.edges[src, first]["ports"][first])
        tables = {dpid: sw.table for dpid, sw in self.by_dpid.items()}
        branches = walk(tables, self.peers, self.packet(src, dst, **fields), *start,
                        live=self._live, hashed=hashed, max_switches=max_hops + 1)
        done = []
        for branch in branches:
            path = tuple(self.names[d] for d in branch.switches)
            node = path[-1]
            assert branch.end != "loop", f"loop: {list(path)}"
            assert branch.end not in ("drop", CONTROLLER), \
                f"{src}->{dst} dropped at {node}: {branch.end}"
            assert branch.end != "down", f"{src}->{dst} lost at {node} port {branch.port}"
            host = self.host_at.get((branch.switches[-1], branch.port))
            assert host == dst, f"{src}->{dst} delivered to {host} (port {branch.port})"
            done.append(path)
        return done

    def paths(self, src, dst, max_hops=16, **fields):
        """All switch paths (tuples of node names) a packet from host src to host dst can take.

        Extra keyword ``fields`` are OXM fields of the packet (e.g. a 5-tuple). Raises
        AssertionError if any branch is dropped, loops, leaves by a down port, or ends at the
        wrong host.
        """
        return self._walk(src, dst, max_hops, False, fields)

    def path(self, src, dst, max_hops=16, **fields):
        """The one switch path Open vSwitch's SELECT hash sends this packet along.

        Like :meth:`paths`, with each SELECT group taking the bucket
        controllers.tables.select_bucket picks for the packet (give its 5-tuple in ``fields``:
        ``ip_proto=6, tcp_src=..., tcp_dst=...``). Raises AssertionError as :meth:`paths`
        does, and if the packet fans out to more than one path.
        """
        done = self._walk(src, dst, max_hops, True, fields)
        assert len(done) == 1, f"{src}->{dst} takes {len(done)} paths: {done}"
        return done[0]
