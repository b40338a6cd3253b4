"""The routing core: what the controller knows and decides, with no Ryu, sockets or sleeps.

Every event handler takes ``now`` (seconds, any monotonic origin) and returns a list of plain
messages from controllers/rules.py; nothing is sent from here. The Ryu app
(controllers/app.py) turns OpenFlow events into these calls and the returned messages into
OpenFlow; tests drive the same object against a fake flow table, and the flow-level
simulator will too.

What it keeps
-------------
- switches and their ports, learned when a switch connects and from port status;
- inter-switch links, learned from LLDP probes it asks the app to send, dropped on port down
  or when not seen for ``link_timeout_s``;
- hosts (MAC, IP, attachment point), learned from the ARP they send. The core answers ARP
  itself, and only forwards a request to host-facing ports, never onto inter-switch links, so a
  loopy fabric never floods;
- the rules and groups it believes each switch holds, so that ``flush`` sends only the
  difference between what the current topology asks for and what is installed.

Routes are proactive and per destination switch: on every switch a group toward each
switch that has hosts (SELECT over every equal-cost shortest next hop for ``ecmp``, one
bucket for ``shortest``) and one rule per host MAC pointing at the group of its switch.
"""

import collections

import networkx as nx

from controllers.rules import (
    ETH_TYPE_ARP, ETH_TYPE_IPV6, ETH_TYPE_LLDP, PRIO_CONTROL, PRIO_HOST_ROUTE, PRIO_TABLE_MISS,
    ArpPacket, Bucket, ClearSwitch, FlowMod, FlowRule, Group, GroupMod, LldpProbe, Output,
    PacketOut, ToController, ToGroup, match)

POLICIES = ("ecmp", "shortest")

ARP_REQUEST = 1
ARP_REPLY = 2

Host = collections.namedtuple("Host", "mac ip dpid port")


class PolicyError(ValueError):
    """An unknown routing policy was asked for."""


def base_rules():
    """Rules every switch gets: LLDP and ARP to the controller, IPv6 and the rest dropped."""
    return [
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_LLDP), (ToController(),)),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_ARP), (ToController(),)),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_IPV6), ()),
        FlowRule(PRIO_TABLE_MISS, (), ()),
    ]


def next_hops(graph, dst):
    """For every switch that can reach ``dst``, the neighbours one hop closer to it.

    Parameters
    ----------
    graph : nx.Graph
        Switch graph (nodes are dpids).
    dst : int
        Destination switch.

    Returns
    -------
    dict
        ``{dpid: sorted list of neighbour dpids on a shortest path to dst}`` for every switch
        other than ``dst`` that has a path to it.
    """
    dist = nx.single_source_shortest_path_length(graph, dst)
    hops = {}
    for sw, d in dist.items():
        if sw == dst:
            continue
        hops[sw] = sorted(n for n in graph.neighbors(sw) if dist.get(n) == d - 1)
    return hops


class RoutingCore:
    """Topology, host and route state of one controller.

    Parameters
    ----------
    policy : str
        ``"ecmp"`` (SELECT groups over all equal-cost next hops) or ``"shortest"``.
    link_timeout_s : float
        A link not confirmed by an LLDP probe for this long is dropped.
    """

    def __init__(self, policy="ecmp", link_timeout_s=15.0):
        self.set_policy(policy)
        self.link_timeout_s = link_timeout_s
        self.ports = {}         # dpid -> set of live port numbers
        self.links = {}         # (dpid, port) -> (peer dpid, peer port, last seen)
        self.hosts = {}         # mac -> Host
        self.installed = {}     # dpid -> {"flows": {key: FlowRule}, "groups": {gid: Group}}
        self._flooded = {}      # (src mac, target ip) -> time the core flooded that request
        self.dirty = True
        self.counters = collections.Counter()

    # -- configuration -------------------------------------------------------------------
    def set_policy(self, policy):
        if policy not in POLICIES:
            raise PolicyError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
        self.policy = policy
        self.dirty = True

    # -- switches and ports ----------------------------------------------------------------
    def switch_enter(self, dpid, ports, now):
        """A switch connected with ``ports``: wipe it, give it the base rules, probe its ports."""
        self.ports[dpid] = set(ports)
        self.installed[dpid] = {"flows": {}, "groups": {}}
        self.dirty = True
        msgs = [ClearSwitch(dpid)]
        for rule in base_rules():
            self.installed[dpid]["flows"][rule.key] = rule
            msgs.append(FlowMod(dpid, "add", rule))
        msgs.extend(self._probe(dpid, sorted(ports)))
        return msgs

    def switch_leave(self, dpid, now):
        self.ports.pop(dpid, None)
        self.installed.pop(dpid, None)
        for key in [k for k, v in self.links.items() if k[0] == dpid or v[0] == dpid]:
            del self.links[key]
        for mac in [m for m, h in self.hosts.items() if h.dpid == dpid]:
            del self.hosts[mac]
        self.dirty = True
        return []

    def port_status(self, dpid, port, up, now):
        """A port went up (probe it) or down (forget its link and hosts at once)."""
        if dpid not in self.ports:
            return []
        if up:
            self.ports[dpid].add(port)
            return self._probe(dpid, [port])
        self.ports[dpid].discard(port)
        self._drop_link_at(dpid, port)
        for mac in [m for m, h in self.hosts.items() if (h.dpid, h.port) == (dpid, port)]:
            del self.hosts[mac]
        self.dirty = True
        return []

    # -- link discovery --------------------------------------------------------------------
    def _probe(self, dpid, ports):
        return [PacketOut(dpid, (p,), LldpProbe(dpid, p)) for p in ports]

    def lldp_probes(self, now):
        """Probes for every live port of every switch (the app sends them periodically)."""
        msgs = []
        for dpid in sorted(self.ports):
            msgs.extend(self._probe(dpid, sorted(self.ports[dpid])))
        return msgs

    def link_seen(self, src_dpid, src_port, dst_dpid, dst_port, now):
        """A probe sent out of (src_dpid, src_port) arrived at (dst_dpid, dst_port)."""
        if src_dpid not in self.ports or dst_dpid not in self.ports:
            return []
        new = self.links.get((src_dpid, src_port), (None, None))[:2] != (dst_dpid, dst_port)
        self.links[(src_dpid, src_port)] = (dst_dpid, dst_port, now)
        if new:
            self.counters["links_learned"] += 1
            # A port that carries a link has no hosts: forget any learned there by mistake.
            for mac in [m for m, h in self.hosts.items()
                        if (h.dpid, h.port) in ((src_dpid, src_port), (dst_dpid, dst_port))]:
                del self.hosts[mac]
            self.dirty = True
        return []

    def expire_links(self, now):
        for key, (_, _, seen) in list(self.links.items()):
            if now - seen > self.link_timeout_s:
                self._drop_link_at(*key)
        return []

    def _drop_link_at(self, dpid, port):
        peer = self.links.pop((dpid, port), None)
        if peer is not None:
            self.links.pop(peer[:2], None)
            self.dirty = True
        for key, val in list(self.links.items()):
            if val[:2] == (dpid, port):
                del self.links[key]
                self.dirty = True

    def link_ports(self):
        """Set of (dpid, port) that face another switch."""
        return set(self.links) | {v[:2] for v in self.links.values()}

    def switch_graph(self):
        """Undirected graph of switches (dpids); edges carry ``ports`` {dpid: port}."""
        g = nx.Graph()
        g.add_nodes_from(self.ports)
        for (a, pa), (b, pb, _) in self.links.items():
            if pa in self.ports.get(a, ()) and pb in self.ports.get(b, ()):
                g.add_edge(a, b, ports={a: pa, b: pb})
        return g

    # -- hosts and ARP ---------------------------------------------------------------------
    def edge_ports(self):
        """Live ports that face hosts (no link discovered on them), as {dpid: [ports]}."""
        linked = self.link_ports()
        return {dpid: sorted(p for p in ports if (dpid, p) not in linked)
                for dpid, ports in self.ports.items()}

    def packet_in_arp(self, dpid, in_port, arp, data, now):
        """An ARP packet reached the controller. Learn its sender, then answer or forward it.

        Returns PacketOuts: an ARP reply built by the core when it knows the target, or the
        original frame (``data``) sent only to host-facing ports.
        """
        if (dpid, in_port) in self.link_ports() or dpid not in self.ports:
            return []
        if self._is_echo(arp, dpid, in_port, now):
            return []
        self._learn(arp.src_mac, arp.src_ip, dpid, in_port)
        if arp.op == ARP_REQUEST:
            if arp.src_ip == arp.dst_ip:
                return []  # gratuitous ARP: learning was the point
            target = self.host_by_ip(arp.dst_ip)
            if target is not None:
                self.counters["arp_replies"] += 1
                reply = ArpPacket(ARP_REPLY, target.mac, target.ip, arp.src_mac, arp.src_ip,
                                  eth_src=target.mac, eth_dst=arp.src_mac)
                return [PacketOut(dpid, (in_port,), reply)]
            self._flooded[(arp.src_mac, arp.dst_ip)] = now
            self.counters["arp_forwards"] += 1
            return [PacketOut(d, tuple(p for p in ports if (d, p) != (dpid, in_port)), data)
                    for d, ports in sorted(self.edge_ports().items()) if ports]
        if arp.op == ARP_REPLY:
            target = self.hosts.get(arp.dst_mac)
            if target is not None:
                return [PacketOut(target.dpid, (target.port,), data)]
        return []

    def _is_echo(self, arp, dpid, in_port, now):
        """Is this a request the core itself forwarded, coming back in on a not-yet-known link?"""
        when = self._flooded.get((arp.src_mac, arp.dst_ip))
        known = self.hosts.get(arp.src_mac)
        return (when is not None and now - when < 2.0 and known is not None
                and (known.dpid, known.port) != (dpid, in_port))

    def _learn(self, mac, ip, dpid, port):
        host = Host(mac, ip, dpid, port)
        if self.hosts.get(mac) != host:
            self.hosts[mac] = host
            self.counters["hosts_learned"] += 1
            self.dirty = True

    def host_by_ip(self, ip):
        for h in self.hosts.values():
            if h.ip == ip:
                return h
        return None

    # -- routes ----------------------------------------------------------------------------
    def group_id(self, dst_dpid):
        """The group on any switch that leads toward switch ``dst_dpid``."""
        return dst_dpid

    def desired(self):
        """What every switch should hold now: {dpid: (flows by key, groups by id)}."""
        graph = self.switch_graph()
        want = {dpid: ({r.key: r for r in base_rules()}, {}) for dpid in self.ports}
        by_switch = collections.defaultdict(list)
        for h in self.hosts.values():
            by_switch[h.dpid].append(h)
        for dst, attached in sorted(by_switch.items()):
            if dst not in graph:
                continue
            gid = self.group_id(dst)
            for sw, hops in next_hops(graph, dst).items():
                if self.policy == "shortest":
                    hops = hops[:1]
                buckets = tuple(Bucket((Output(graph.edges[sw, n]["ports"][sw]),))
                                for n in hops)
                want[sw][1][gid] = Group(gid, "select", buckets)
                for h in attached:
                    rule = FlowRule(PRIO_HOST_ROUTE, match(eth_dst=h.mac), (ToGroup(gid),))
                    want[sw][0][rule.key] = rule
            for h in attached:
                rule = FlowRule(PRIO_HOST_ROUTE, match(eth_dst=h.mac), (Output(h.port),))
                want[dst][0][rule.key] = rule
        return want

    def flush(self, now):
        """Messages that bring every switch from what it holds to what it should hold."""
        if not self.dirty:
            return []
        self.dirty = False
        add_groups, add_flows, del_flows, del_groups = [], [], [], []
        for dpid, (flows, groups) in sorted(self.desired().items()):
            have = self.installed.setdefault(dpid, {"flows": {}, "groups": {}})
            for gid, group in sorted(groups.items()):
                old = have["groups"].get(gid)
                if old != group:
                    add_groups.append(GroupMod(dpid, "add" if old is None else "modify", group))
            for key, rule in sorted(flows.items(), key=lambda kv: repr(kv[0])):
                if have["flows"].get(key) != rule:
                    add_flows.append(FlowMod(dpid, "add", rule))
            for key, rule in sorted(have["flows"].items(), key=lambda kv: repr(kv[0])):
                if key not in flows:
                    del_flows.append(FlowMod(dpid, "delete", rule))
            for gid, group in sorted(have["groups"].items()):
                if gid not in groups:
                    del_groups.append(GroupMod(dpid, "delete", group))
            have["flows"] = dict(flows)
            have["groups"] = dict(groups)
        msgs = add_groups + add_flows + del_flows + del_groups
        self.counters["flow_mods"] += len(add_flows) + len(del_flows)
        self.counters["group_mods"] += len(add_groups) + len(del_groups)
        return msgs

    # -- reporting -------------------------------------------------------------------------
    def status(self):
        """A JSON-able snapshot: counts the runner waits on, and what was learned."""
        return {
            "policy": self.policy,
            "switches": len(self.ports),
            "links": self.switch_graph().number_of_edges(),
            "hosts": len(self.hosts),
            "pending": self.dirty,
            "rules": sum(len(v["flows"]) for v in self.installed.values()),
            "groups": sum(len(v["groups"]) for v in self.installed.values()),
            "counters": dict(self.counters),
        }

    def paths(self, src_mac, dst_mac):
        """Every switch path (list of dpids) the installed routes allow from src to dst host."""
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return []
        graph = self.switch_graph()
        try:
            return sorted(nx.all_shortest_paths(graph, src.dpid, dst.dpid))
        except nx.NetworkXNoPath:
            return []

    # -- the model as if discovered --------------------------------------------------------
    def load_fabric(self, g, now=0.0):
        """Learn a fabric model as discovery would (for tests and the flow-level simulator)."""
        from fabric.model import host_switch, hosts, switches
        msgs = []
        for sw in switches(g):
            ports = [d["ports"][sw] for _, _, d in g.edges(sw, data=True)]
            msgs.extend(self.switch_enter(g.nodes[sw]["dpid"], ports, now))
        for u, v, d in g.edges(data=True):
            if g.nodes[u]["role"] != "host" and g.nodes[v]["role"] != "host":
                du, dv = g.nodes[u]["dpid"], g.nodes[v]["dpid"]
                self.link_seen(du, d["ports"][u], dv, d["ports"][v], now)
                self.link_seen(dv, d["ports"][v], du, d["ports"][u], now)
        for h in hosts(g):
            sw, port = host_switch(g, h)
            node = g.nodes[h]
            garp = ArpPacket(ARP_REQUEST, node["mac"], node["ip"], "00:00:00:00:00:00",
                             node["ip"])
            self.packet_in_arp(g.nodes[sw]["dpid"], port, garp, b"", now)
        return msgs
