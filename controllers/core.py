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
- link loads from port statistics, and (for the adaptive policies) individual flows, learned
  from the packet-in of their first packet and measured by flow statistics;
- the rules and groups it believes each switch holds, so that ``flush`` sends only the
  difference between what the current state asks for and what is installed.

What switches hold
------------------
Three layers, disjoint by priority (controllers/rules.py):

1. routes per destination switch (controllers/routes.py): SELECT groups over equal-cost next
   hops, one rule per host MAC, FAST_FAILOVER protection and its detour rules, and for
   learning policies one rule per host port sending new TCP/UDP flows to the controller.
   Rebuilt when the topology, the hosts or the policy change;
2. SELECT bucket weights (WCMP), rewritten group by group after statistics rounds;
3. per-flow rules: a learned flow's rule at its first switch (counted, cookie
   ``COOKIE_FLOW``) and, if the policy pinned it, one rule per switch along its path;
   collective intents' pins. Rebuilt whenever a flow or intent changes; only the switches
   whose rules changed are compared.

The policy (controllers/policies.py) decides what goes into layers 2 and 3.
"""

import collections

import networkx as nx

from controllers.loads import Flow, PortLoads
from controllers.placement import wcmp_weights
from controllers.policies import (POLICY_CLASSES, Collective, IntentError, PolicyConfig,
                                  PolicyError)
from controllers.routes import GroupIds, Routes, base_rules, path_links
from controllers.rules import (
    COOKIE, COOKIE_FLOW, ETH_TYPE_IPV4, PORT_IN_PORT, PORT_TABLE, PRIO_FLOW, ArpPacket,
    ClearSwitch, FlowKey, FlowMod, FlowRule, GroupMod, LldpProbe, Output, PacketOut, ToGroup)

__all__ = ["POLICIES", "Host", "IntentError", "PolicyError", "RoutingCore", "base_rules",
           "link_capacities", "next_hops"]

POLICIES = tuple(POLICY_CLASSES)

ARP_REQUEST = 1
ARP_REPLY = 2

Host = collections.namedtuple("Host", "mac ip dpid port")

# A walk along installed rules longer than this is a loop (no fabric here is that deep).
MAX_PATH_SWITCHES = 32


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


def link_capacities(g, scale=1.0):
    """Capacity of every switch port of a fabric model, for ``link_capacity_bps``.

    Parameters
    ----------
    g : nx.Graph
        A fabric model (fabric/model.py).
    scale : float
        Emulated rate per nominal rate (the emulator's scale factor); 1.0 for nominal.

    Returns
    -------
    dict
        ``{(dpid, port): bit/s}`` for both switch ends of every link, and the switch end of
        every host link (the host's NIC rate).
    """
    caps = {}
    for u, v, d in g.edges(data=True):
        for a in (u, v):
            if g.nodes[a]["role"] != "host":
                caps[(g.nodes[a]["dpid"], d["ports"][a])] = d["capacity_gbps"] * 1e9 * scale
    return caps


def _group_level(group):
    """0 for a group that only outputs, 1 for one that chains to groups (add those last)."""
    return int(any(isinstance(a, ToGroup) for b in group.buckets for a in b.actions))


class RoutingCore:
    """Topology, host, load and route state of one controller.

    Parameters
    ----------
    policy : str
        One of :data:`POLICIES`: ``"ecmp"``, ``"shortest"``, ``"congestion"``, ``"hedera"``,
        ``"collective"`` (see controllers/policies.py).
    link_timeout_s : float
        A link not confirmed by an LLDP probe for this long is dropped.
    fast_failover : bool
        Protect every route with FAST_FAILOVER groups (see controllers/routes.py).
    link_capacity_bps : dict, optional
        ``{(dpid, port): bit/s}`` of switch ports (see :func:`link_capacities`), in the units
        port statistics will show (emulated, not nominal, rates under emulation).
    default_capacity_bps : float
        Capacity of a port missing from ``link_capacity_bps``.
    **options
        Thresholds of the adaptive policies, see :class:`controllers.policies.PolicyConfig`.

    Raises
    ------
    PolicyError
        If the policy or an option is unknown, or an option is out of range.
    """

    def __init__(self, policy="ecmp", link_timeout_s=15.0, fast_failover=True,
                 link_capacity_bps=None, default_capacity_bps=1e9, **options):
        self.config = PolicyConfig.from_options(options)
        self.link_timeout_s = link_timeout_s
        self.fast_failover = bool(fast_failover)
        self.link_capacity_bps = dict(link_capacity_bps or {})
        if not default_capacity_bps > 0:
            raise PolicyError(f"default_capacity_bps must be > 0, got {default_capacity_bps!r}")
        self.default_capacity_bps = float(default_capacity_bps)
        self.ports = {}         # dpid -> set of live port numbers
        self.links = {}         # (dpid, port) -> (peer dpid, peer port, last seen)
        self.hosts = {}         # mac -> Host
        self.installed = {}     # dpid -> {"flows": {key: FlowRule}, "groups": {gid: Group}}
        self.flows = {}         # FlowKey -> Flow (learning policies only)
        self.loads = PortLoads(self.config.util_tau_s)
        self.counters = collections.Counter()
        self._ips = {}          # ip -> mac
        self._flooded = {}      # (src mac, target ip) -> time the core flooded that request
        self._link_ports = None
        self._flows_from = collections.Counter()   # host mac -> learned flows it sends
        self._flows_to = collections.Counter()     # host mac -> learned flows it receives
        self._group_ids = GroupIds()
        self._intern = {}
        self._routes = None
        self._weights = {}
        self._overlay = {}      # dpid -> {key: FlowRule} of per-flow rules and pins
        self._pin_cache = {}    # pin -> its [(dpid, FlowRule)], for the current routes
        self._topo_dirty = True
        self._overlay_dirty = False
        self._full_diff = False
        self._touched_groups = set()   # (dpid, gid) whose weights changed
        self._now = 0.0
        self._policy = None
        self.set_policy(policy)

    # -- configuration -------------------------------------------------------------------
    def set_policy(self, policy, now=None):
        """Switch to ``policy`` (a name of :data:`POLICIES`) at runtime.

        Learned flows are kept if the new policy learns flows and re-placed by it, otherwise
        forgotten (their rules go with the next flush); intents belong to ``collective`` and
        end with it; WCMP weights restart from equal.

        Raises
        ------
        PolicyError
            If the policy is unknown.
        """
        if policy not in POLICY_CLASSES:
            raise PolicyError(f"unknown policy {policy!r}; known: {', '.join(POLICIES)}")
        now = self._now if now is None else now
        if self._policy is not None:
            self.counters["policy_changes"] += 1
        self._policy = POLICY_CLASSES[policy](self.config)
        self.policy = policy
        self._weights = {}
        self._topo_dirty = True
        if not self._policy.learns_flows:
            self.flows.clear()
            self._flows_from.clear()
            self._flows_to.clear()
        for flow in self.flows.values():
            flow.path = flow.placed_at = flow.demand_bps = None
            flow.elephant = False
        self._ensure_routes(now)
        for flow in sorted(self.flows.values(), key=lambda f: f.key):
            self._policy.place(self, flow, now)
        self._overlay_dirty = True

    @property
    def learns_flows(self):
        """Does the active policy learn flows (so per-flow statistics must be polled)?"""
        return self._policy.learns_flows

    @property
    def dirty(self):
        """Is there anything ``flush`` would send?"""
        return (self._topo_dirty or self._overlay_dirty or self._full_diff
                or bool(self._touched_groups))

    def _topology_changed(self):
        self._topo_dirty = True
        self._link_ports = None

    # -- switches and ports ----------------------------------------------------------------
    def switch_enter(self, dpid, ports, now):
        """A switch connected with ``ports``: wipe it, give it the base rules, probe its ports."""
        self._now = now
        self.ports[dpid] = set(ports)
        self.installed[dpid] = {"flows": {}, "groups": {}}
        self.loads.forget(dpid)
        self._topology_changed()
        msgs = [ClearSwitch(dpid)]
        for rule in base_rules():
            self.installed[dpid]["flows"][rule.key] = rule
            msgs.append(FlowMod(dpid, "add", rule))
        msgs.extend(self._probe(dpid, sorted(ports)))
        return msgs

    def switch_leave(self, dpid, now):
        """A switch disconnected: forget it, its links and its hosts."""
        self._now = now
        self.ports.pop(dpid, None)
        self.installed.pop(dpid, None)
        self.loads.forget(dpid)
        for key in [k for k, v in self.links.items() if k[0] == dpid or v[0] == dpid]:
            del self.links[key]
        for mac in [m for m, h in self.hosts.items() if h.dpid == dpid]:
            self._forget_host(mac)
        self._topology_changed()
        return []

    def port_status(self, dpid, port, up, now):
        """A port went up (probe it) or down (forget its link and hosts at once)."""
        self._now = now
        if dpid not in self.ports:
            return []
        if up:
            self.ports[dpid].add(port)
            return self._probe(dpid, [port])
        self.ports[dpid].discard(port)
        self._drop_link_at(dpid, port)
        for mac in [m for m, h in self.hosts.items() if (h.dpid, h.port) == (dpid, port)]:
            self._forget_host(mac)
        self._topology_changed()
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
        self._now = now
        if src_dpid not in self.ports or dst_dpid not in self.ports:
            return []
        new = self.links.get((src_dpid, src_port), (None, None))[:2] != (dst_dpid, dst_port)
        self.links[(src_dpid, src_port)] = (dst_dpid, dst_port, now)
        if new:
            self.counters["links_learned"] += 1
            # A port that carries a link has no hosts: forget any learned there by mistake.
            for mac in [m for m, h in self.hosts.items()
                        if (h.dpid, h.port) in ((src_dpid, src_port), (dst_dpid, dst_port))]:
                self._forget_host(mac)
            self._topology_changed()
        return []

    def expire_links(self, now):
        """Drop links no probe confirmed for ``link_timeout_s``."""
        self._now = now
        for key, (_, _, seen) in list(self.links.items()):
            if now - seen > self.link_timeout_s:
                self._drop_link_at(*key)
        return []

    def _drop_link_at(self, dpid, port):
        peer = self.links.pop((dpid, port), None)
        if peer is not None:
            self.links.pop(peer[:2], None)
            self._topology_changed()
        for key, val in list(self.links.items()):
            if val[:2] == (dpid, port):
                del self.links[key]
                self._topology_changed()

    def link_ports(self):
        """Set of (dpid, port) that face another switch."""
        if self._link_ports is None:
            self._link_ports = set(self.links) | {v[:2] for v in self.links.values()}
        return self._link_ports

    def _adjacency(self):
        """``{dpid: {neighbour: local port}}`` over links whose both ports are live."""
        adj = {dpid: {} for dpid in self.ports}
        for (a, pa), (b, pb, _) in sorted(self.links.items()):
            if pa in self.ports.get(a, ()) and pb in self.ports.get(b, ()):
                adj[a].setdefault(b, pa)
                adj[b].setdefault(a, pb)
        return adj

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
        self._now = now
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
        old = self.hosts.get(mac)
        if old != host:
            if old is not None and self._ips.get(old.ip) == mac:
                del self._ips[old.ip]
            self.hosts[mac] = host
            self._ips[ip] = mac
            self.counters["hosts_learned"] += 1
            self._topo_dirty = True

    def _forget_host(self, mac):
        host = self.hosts.pop(mac)
        if self._ips.get(host.ip) == mac:
            del self._ips[host.ip]

    def host_by_ip(self, ip):
        """The host with IPv4 address ``ip``, or None."""
        mac = self._ips.get(ip)
        return None if mac is None else self.hosts.get(mac)

    def host_by_ref(self, ref):
        """The host named by its MAC or its IPv4 address, or None."""
        if not isinstance(ref, str):
            return None
        return self.hosts.get(ref.lower()) or self.host_by_ip(ref)

    # -- statistics ------------------------------------------------------------------------
    def port_stats(self, dpid, tx_bytes, now):
        """Cumulative transmit counters of a switch's ports, read at ``now``.

        The app polls port statistics of every switch (OFPPortStatsRequest, all ports) every
        statistics period (1 s is a good default) and passes ``{port_no: tx_bytes}`` of each
        reply. Rates are smoothed with time constant ``util_tau_s``; counters that go backwards
        start over. Decisions wait for :meth:`adapt`.
        """
        self._now = now
        for port, total in tx_bytes.items():
            self.loads.sample(dpid, port, total, now)
        return []

    def flow_seen(self, flow_key, src_mac, dst_mac, bytes_total, now):
        """A flow exists and has sent ``bytes_total`` bytes so far (a cumulative counter).

        Only policies that learn flows (``congestion``, ``hedera``, ``collective``) keep them.
        A new flow is placed at once by the policy (``congestion`` pins it to the least
        loaded path; ``hedera`` leaves it on ECMP until it proves an elephant); a known one
        updates its rate. The app does not usually call this itself: a flow's first packet
        arrives through :meth:`packet_in_flow`, and its counter through :meth:`flow_stats`.

        Parameters
        ----------
        flow_key : sequence
            ``(ipv4_src, ipv4_dst, ip_proto, tp_src, tp_dst)``; ports are 0 for protocols other
            than TCP and UDP.
        src_mac, dst_mac : str
            The hosts at its ends (must be known hosts; otherwise the flow is ignored).
        bytes_total : int
            Bytes counted so far by the flow's rule at its first switch.
        now : float
            Time of the reading.
        """
        self._now = now
        key = FlowKey.of(flow_key)
        flow = self._learn_flow(key, src_mac, dst_mac, now)
        if flow is not None:
            self._measure(flow, bytes_total, now)
        return []

    def flow_stats(self, dpid, rows, now):
        """Byte counters of the per-flow rules of one switch, read at ``now``.

        The app polls, with the same period as port statistics, flow statistics of every
        switch filtered on cookie :data:`~controllers.rules.COOKIE_FLOW` (mask all ones) and
        passes ``[(match, byte_count), ...]`` of the reply, a match being Ryu's ``OFPMatch``
        or a dict of OXM fields. Rows of rules the core no longer knows are ignored.
        """
        self._now = now
        for fields, byte_count in rows:
            flow = self.flows.get(FlowKey.from_match(fields))
            host = None if flow is None else self.hosts.get(flow.src)
            if host is not None and host.dpid == dpid:
                self._measure(flow, byte_count, now)
        return []

    def packet_in_flow(self, dpid, in_port, flow_key, src_mac, dst_mac, data, now):
        """The first packet of an unknown IPv4 TCP/UDP flow reached the controller.

        Learning policies install, on every host port, a rule sending such packets here; the
        app parses the packet's 5-tuple and MACs and calls this. The core learns the flow,
        places it, and returns the rules that take over the flow (so its next packets stay in
        the switch) followed by a PacketOut that sends this packet through the switch's table
        (``PORT_TABLE``), where it is forwarded like any other.

        Parameters
        ----------
        dpid, in_port : int
            Where the packet entered.
        flow_key : sequence
            ``(ipv4_src, ipv4_dst, ip_proto, tp_src, tp_dst)``.
        src_mac, dst_mac : str
            Ethernet source and destination of the packet.
        data : bytes
            The whole packet, as the packet-in carried it (may be empty: nothing to resend).
        now : float
            Arrival time.
        """
        self._now = now
        self.counters["flow_packet_ins"] += 1
        host = self.hosts.get(src_mac)
        # A sender not known at that port is not learned; its packet is still forwarded.
        if host is not None and (host.dpid, host.port) == (dpid, in_port):
            self._learn_flow(FlowKey.of(flow_key), src_mac, dst_mac, now)
        msgs = self.flush(now)
        if data:
            msgs.append(PacketOut(dpid, (PORT_TABLE,), data))
        return msgs

    def _learn_flow(self, key, src_mac, dst_mac, now):
        flow = self.flows.get(key)
        if flow is not None or not self._policy.learns_flows:
            return flow
        if src_mac not in self.hosts or dst_mac not in self.hosts:
            self.counters["flows_unknown_host"] += 1
            return None
        flow = Flow(key, src_mac, dst_mac, seen_at=now, active_at=now)
        self.flows[key] = flow
        self._flows_from[src_mac] += 1
        self._flows_to[dst_mac] += 1
        self.counters["flows_learned"] += 1
        self._ensure_routes(now)
        self._policy.place(self, flow, now)
        self._overlay_dirty = True
        return flow

    def _measure(self, flow, bytes_total, now):
        grown = flow.meter.update(bytes_total, now, self.config.util_tau_s)
        if grown > 0:
            flow.active_at = now
            flow.sent_bytes += grown
            if not flow.started and flow.sent_bytes >= self.config.young_bytes:
                flow.started = True
                # Its estimate stops counting; the link averages have not caught up yet.
                if flow.path is not None and flow.rate_bps:
                    self._shift(flow.path, flow.rate_bps, now)

    def _forget_flow(self, key):
        flow = self.flows.pop(key)
        self._flows_from[flow.src] -= 1
        self._flows_to[flow.dst] -= 1
        self._overlay_dirty = True

    def adapt(self, now):
        """Run the policy's periodic decisions; call once after each statistics round.

        Forgets flows idle for ``flow_idle_s``, then lets the policy act: ``congestion`` (and
        ``collective`` for unannounced traffic) moves flows off hot links and re-weights
        groups, ``hedera`` detects elephants, estimates demands and places them. Changes go
        out with the next :meth:`flush`.
        """
        self._now = now
        self._ensure_routes(now)
        for key, flow in sorted(self.flows.items()):
            if now - flow.active_at > self.config.flow_idle_s:
                self._forget_flow(key)
                self.counters["flows_expired"] += 1
        self._policy.adapt(self, now)
        return []

    # -- collective intents ----------------------------------------------------------------
    def _collective(self):
        if not isinstance(self._policy, Collective):
            raise PolicyError(f"intents need the 'collective' policy; the active policy is "
                              f"{self.policy!r}")
        return self._policy

    def submit_intent(self, intent_id, flows, now):
        """Announce a collective's whole flow set; the core assigns and pins its paths.

        Parameters
        ----------
        intent_id : str or int
            Names the intent; submitting an id again replaces that intent.
        flows : list
            Items ``(src, dst, bytes[, 5-tuple[, phase]])`` (or dicts with keys ``src``,
            ``dst``, ``bytes``, ``flow``, ``phase``): hosts by MAC or IPv4 address. With a
            5-tuple the pin matches that flow; without, every IPv4 packet of the host pair
            (items of one pair are then merged). Flows of one phase (a string or integer) run
            together and phases one after another: the assignment minimizes the most loaded
            link of any phase (see controllers/policies.Collective).
        now : float
            Time of the announcement.

        Raises
        ------
        IntentError
            If the flow set is malformed or names an unknown host.
        PolicyError
            If the active policy is not ``collective``.
        """
        self._now = now
        policy = self._collective()
        self._ensure_routes(now)
        policy.submit(self, intent_id, flows, now)
        self.counters["intents_submitted"] += 1
        self._overlay_dirty = True
        return []

    def intent_status(self, intent_id):
        """``{"state": "installing" | "installed", "max_link_load_s", ...}`` of an intent.

        "installed" means a flush has returned every rule of the current assignment (the app
        then waits for its barriers). ``max_link_load_s`` is the transmission time of the most
        loaded link under the assignment (announced bytes over link capacity).

        Raises
        ------
        IntentError
            If the intent is not known.
        PolicyError
            If the active policy is not ``collective``.
        """
        return self._collective().status(intent_id)

    def intents(self):
        """Status of every announced intent, in submission order."""
        if not isinstance(self._policy, Collective):
            return []
        return [self._policy.status(i) for i in self._policy.intents]

    def withdraw_intent(self, intent_id, now):
        """The collective is over: remove its pins (IntentError if it is unknown)."""
        self._now = now
        self._collective().withdraw(self, intent_id)
        self._overlay_dirty = True
        return []

    # -- the policy interface --------------------------------------------------------------
    def routes(self):
        """The current routes (controllers/routes.Routes), rebuilt first if out of date."""
        return self._ensure_routes(self._now)

    def host_paths(self, src_mac, dst_mac):
        """Equal-cost switch paths between two known hosts' switches (sorted tuples)."""
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return []
        return self.routes().paths(src.dpid, dst.dpid)

    def flow_paths(self, flow):
        """Equal-cost switch paths a learned flow may be pinned to."""
        return self.host_paths(flow.src, flow.dst)

    def capacity(self, u, v):
        """Capacity (bit/s) of the directed link from switch ``u`` to switch ``v``."""
        return self.link_capacity_bps.get((u, self.routes().port(u, v)),
                                          self.default_capacity_bps)

    def nic_bps(self, mac):
        """NIC rate (bit/s) of a host: the capacity of its switch port."""
        host = self.hosts.get(mac)
        if host is None:
            return self.default_capacity_bps
        return self.link_capacity_bps.get((host.dpid, host.port), self.default_capacity_bps)

    def flow_rate(self, flow, now):
        """A flow's load for placement: its measured rate once started, else an estimate.

        The estimate is the sender's NIC rate shared by its learned flows, capped likewise at
        the receiver (the first step of Hedera's demand estimation).
        """
        if self._measured(flow, now):
            return flow.rate_bps
        return min(self.nic_bps(flow.src) / max(1, self._flows_from[flow.src]),
                   self.nic_bps(flow.dst) / max(1, self._flows_to[flow.dst]))

    def _measured(self, flow, now):
        """Whether a flow's measured rate stands for its load: once it has started (sent
        ``young_bytes``); once the other direction of its connection has started and it has
        not (it carries that transfer's ACKs); or once it has been measured for
        ``util_tau_s`` without starting (a connection opened ahead of use). Its load is then
        what it sends, which the port counters already show."""
        if flow.rate_bps is None:
            return False
        if flow.started or now - flow.seen_at >= self.config.util_tau_s:
            return True
        other = self.flows.get(flow.key.reverse())
        return other is not None and other.started

    def projected_loads(self, now):
        """``{(u, v): bit/s}`` of every directed switch link: measured, plus recent moves,
        plus the estimated demand of pinned flows whose load the counters cannot show yet
        (see :meth:`flow_rate`)."""
        routes = self.routes()
        loads = {(u, v): self.loads.rate_bps(u, port, now)
                 for u, nbrs in routes.adj.items() for v, port in nbrs.items()}
        for flow in self.flows.values():
            if flow.path is not None and not self._measured(flow, now):
                demand = self.flow_rate(flow, now)
                for link in path_links(flow.path):
                    loads[link] += demand
        return loads

    def _shift(self, path, bps, now):
        routes = self.routes()
        for u, v in path_links(path):
            self.loads.shift(u, routes.port(u, v), bps, now)

    def pin(self, flow, path, now):
        """Pin a learned flow to ``path`` (a tuple of dpids from its sender's switch)."""
        if flow.path == path:
            return
        if flow.path is not None:
            self.counters["flow_moves"] += 1
            if flow.started and flow.rate_bps:
                self._shift(flow.path, -flow.rate_bps, now)
                self._shift(path, flow.rate_bps, now)
        flow.path = tuple(path)
        # A path chosen before the flow sent anything was chosen blind: its first move once
        # measured is free; later moves wait ``min_dwell_s`` (see policies.Congestion).
        flow.placed_at = now if flow.started else None
        self._overlay_dirty = True

    def unpin(self, flow):
        """Let a learned flow follow its destination's groups again."""
        if flow.path is not None:
            flow.path = None
            self._overlay_dirty = True

    def reweight(self, now):
        """Set SELECT bucket weights from path headroom (WCMP), if the policy is weighted."""
        if not self._policy.weighted:
            return
        routes = self.routes()
        loads = self.projected_loads(now)
        weights = wcmp_weights(
            routes.dist, routes.hops,
            lambda u, v: max(0.0, 1.0 - loads[(u, v)] / self.capacity(u, v)),
            self.config.weight_step)
        changed = [k for k in sorted(set(weights) | set(self._weights))
                   if weights.get(k) != self._weights.get(k)]
        self._weights = routes.weights = weights
        for s, dst in changed:
            self._touched_groups.add((s, routes.reselect(s, dst).group_id))

    # -- building what switches should hold ------------------------------------------------
    def _ensure_routes(self, now):
        if not self._topo_dirty:
            return self._routes
        self._topo_dirty = False
        self._weights = {}  # they weighed the old next hops; the next adapt sets new ones
        self._routes = Routes(self._adjacency(), self.hosts.values(), self._group_ids,
                              multipath=self._policy.multipath,
                              fast_failover=self.fast_failover,
                              learn_flows=self._policy.learns_flows, intern=self._intern)
        self._full_diff = True
        self._overlay_dirty = True
        self._pin_cache = {}
        self.counters["route_builds"] += 1
        broken = []
        for key, flow in sorted(self.flows.items()):
            src, dst = self.hosts.get(flow.src), self.hosts.get(flow.dst)
            if src is None or dst is None:
                self._forget_flow(key)
            elif flow.path is not None and not (
                    flow.path[0] == src.dpid and flow.path[-1] == dst.dpid
                    and self._routes.allows(flow.path)):
                flow.path = None
                broken.append(flow)
        if broken:
            self.counters["flows_rerouted"] += len(broken)
            self._policy.repair(self, broken, now)
        self._policy.on_routes(self, now)
        return self._routes

    def _pin_rules(self, overlay, previous, fields, priority, src, dst, path, counted):
        """Add to ``overlay`` the rules that carry one flow (or host pair) along ``path``, or
        along the groups. They are remembered (``previous``: those of the last overlay) until
        the routes change: a flush rebuilds the overlay of every flow, and most flows have not
        moved since the last one."""
        ident = (fields, priority, src, dst, path, counted)
        made = previous.get(ident)
        if made is None:
            part = collections.defaultdict(dict)
            self._make_pin_rules(part, fields, priority, src, dst, path, counted)
            made = [(d, r) for d, rs in part.items() for r in rs.values()]
        self._pin_cache[ident] = made
        for d, rule in made:
            overlay[d][rule.key] = rule

    def _make_pin_rules(self, overlay, fields, priority, src, dst, path, counted):
        routes = self._routes
        d = dst.dpid
        if path is None:
            if src.dpid == d:
                action = Output(dst.port)
            elif src.dpid in routes.hops.get(d, {}):
                action = ToGroup(routes.select_gid(d))
            else:
                return
            rule = FlowRule(priority, fields, (action,), cookie=COOKIE_FLOW)
            overlay[src.dpid][rule.key] = rule
            return
        for i, s in enumerate(path):
            if i and s == d:
                break  # the destination's host rule delivers it
            action = Output(dst.port) if s == d else routes.hop_action(s, d, path[i + 1])
            cookie = COOKIE_FLOW if counted and i == 0 else COOKIE
            rule = FlowRule(priority, fields, (action,), cookie=cookie)
            overlay[s][rule.key] = rule

    def _build_overlay(self):
        overlay = collections.defaultdict(dict)
        # Pins of flows and intents that are gone are forgotten with the previous cache.
        previous, self._pin_cache = self._pin_cache, {}
        for key, flow in sorted(self.flows.items()):
            src, dst = self.hosts.get(flow.src), self.hosts.get(flow.dst)
            if src is not None and dst is not None:
                self._pin_rules(overlay, previous, key.match(), PRIO_FLOW, src, dst, flow.path,
                                True)
        for fields, priority, path, src, dst in self._policy.pins(self):
            self._pin_rules(overlay, previous, fields, priority, src, dst, path, False)
        return dict(overlay)

    def flush(self, now):
        """Messages that bring every switch from what it holds to what it should hold.

        Only differences are sent: groups added or modified first (those that only output
        before those that chain to them), then flow adds, flow deletions, and group deletions
        last, so no rule ever points at a missing group.
        """
        self._now = now
        routes = self._ensure_routes(now)
        old_overlay = self._overlay
        touched = set()
        if self._overlay_dirty:
            self._overlay = self._build_overlay()
            self._overlay_dirty = False
            touched = {d for d in set(self._overlay) | set(old_overlay)
                       if self._overlay.get(d) != old_overlay.get(d)}
        full, self._full_diff = self._full_diff, False
        group_keys = collections.defaultdict(set)
        for dpid, gid in self._touched_groups:
            group_keys[dpid].add(gid)
        self._touched_groups = set()
        add_groups, add_flows, del_flows, del_groups = [], [], [], []
        for dpid in sorted(self.ports):
            if not (full or dpid in touched or dpid in group_keys):
                continue
            have = self.installed.setdefault(dpid, {"flows": {}, "groups": {}})
            base_flows = routes.flows.get(dpid, {})
            base_groups = routes.groups.get(dpid, {})
            over = self._overlay.get(dpid, {})
            have_flows, have_groups = have["flows"], have["groups"]
            if full:
                want = dict(base_flows)
                want.update(over)
                for key, rule in want.items():
                    old = have_flows.get(key)
                    if old is not rule and old != rule:
                        add_flows.append(FlowMod(dpid, "add", rule))
                for key, rule in have_flows.items():
                    if key not in want:
                        del_flows.append(FlowMod(dpid, "delete", rule))
                have["flows"] = want
                for gid, group in sorted(base_groups.items()):
                    old = have_groups.get(gid)
                    if old is not group and old != group:
                        add_groups.append(GroupMod(dpid, "add" if old is None else "modify",
                                                   group))
                for gid, group in sorted(have_groups.items()):
                    if gid not in base_groups:
                        del_groups.append(GroupMod(dpid, "delete", group))
                have["groups"] = dict(base_groups)
                continue
            if dpid in touched:
                for key in sorted(set(old_overlay.get(dpid, {})) | set(over)):
                    rule = over.get(key) or base_flows.get(key)
                    old = have_flows.get(key)
                    if rule is None:
                        if old is not None:
                            del_flows.append(FlowMod(dpid, "delete", old))
                            del have_flows[key]
                    elif old is not rule and old != rule:
                        add_flows.append(FlowMod(dpid, "add", rule))
                        have_flows[key] = rule
            for gid in sorted(group_keys.get(dpid, ())):
                group, old = base_groups.get(gid), have_groups.get(gid)
                if group is not None and old != group:
                    add_groups.append(GroupMod(dpid, "add" if old is None else "modify", group))
                    have_groups[gid] = group
        add_groups.sort(key=lambda m: (_group_level(m.group), m.dpid, m.group.group_id))
        del_groups.sort(key=lambda m: (-_group_level(m.group), m.dpid, m.group.group_id))
        msgs = add_groups + add_flows + del_flows + del_groups
        self.counters["flow_mods"] += len(add_flows) + len(del_flows)
        self.counters["group_mods"] += len(add_groups) + len(del_groups)
        self._policy.flushed()
        return msgs

    # -- reporting -------------------------------------------------------------------------
    def link_loads(self):
        """Every directed switch link with its smoothed measured load, JSON-able.

        Returns
        -------
        list of dict
            ``src``, ``src_port``, ``dst``, ``dst_port``, ``capacity_bps``, ``rate_bps``,
            ``utilization`` and ``pinned_flows`` (learned flows pinned across it), sorted.
        """
        routes = self.routes()
        pinned = collections.Counter(link for f in self.flows.values() if f.path
                                     for link in path_links(f.path))
        out = []
        for u in sorted(routes.adj):
            for v, port in sorted(routes.adj[u].items()):
                cap = self.capacity(u, v)
                rate = self.loads.measured_bps(u, port)
                out.append({"src": u, "src_port": port, "dst": v, "dst_port": routes.adj[v][u],
                            "capacity_bps": cap, "rate_bps": rate, "utilization": rate / cap,
                            "pinned_flows": pinned[(u, v)]})
        return out

    def status(self):
        """A JSON-able snapshot: counts the runner waits on, load summary and counters."""
        loads = self.link_loads()
        utils = [x["utilization"] for x in loads]
        counters = dict(self.counters)
        counters["flows"] = len(self.flows)
        counters["pinned_flows"] = sum(1 for f in self.flows.values() if f.path is not None)
        counters["elephants"] = sum(1 for f in self.flows.values() if f.elephant)
        counters["intents"] = 0
        counters.update(self._policy.gauges(self))
        return {
            "policy": self.policy,
            "fast_failover": self.fast_failover,
            "switches": len(self.ports),
            "links": len(loads) // 2,
            "hosts": len(self.hosts),
            "pending": self.dirty,
            "rules": sum(len(v["flows"]) for v in self.installed.values()),
            "groups": sum(len(v["groups"]) for v in self.installed.values()),
            "utilization": {
                "links": len(utils),
                "mean": sum(utils) / len(utils) if utils else 0.0,
                "max": max(utils, default=0.0),
                "hot": sum(1 for u in utils if u > self.config.hot_util),
            },
            "counters": counters,
        }

    def learned_flows(self, src_mac=None, dst_mac=None):
        """Learned flows (optionally of one host pair), JSON-able, sorted by 5-tuple."""
        return [{"flow": list(f.key), "src": f.src, "dst": f.dst, "rate_bps": f.rate_bps,
                 "path": list(f.path) if f.path else None, "elephant": f.elephant,
                 "demand_bps": f.demand_bps}
                for _, f in sorted(self.flows.items())
                if src_mac in (None, f.src) and dst_mac in (None, f.dst)]

    def paths(self, src_mac, dst_mac, flow_key=None):
        """Every switch path (list of dpids) the installed rules allow from src to dst host.

        Follows the rules and groups the core has sent (what :meth:`flush` last returned),
        for an IPv4 packet of the host pair, or of the flow ``flow_key`` (a 5-tuple) if given:
        every bucket of a SELECT group, the first live bucket of a FAST_FAILOVER group.
        """
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return []
        pkt = {"eth_src": src.mac, "eth_dst": dst.mac, "eth_type": ETH_TYPE_IPV4,
               "ipv4_src": src.ip, "ipv4_dst": dst.ip}
        if flow_key is not None:
            pkt.update(FlowKey.of(flow_key).match())
        peers = {}
        for (a, pa), (b, pb, _) in self.links.items():
            peers[(a, pa)] = (b, pb)
            peers[(b, pb)] = (a, pa)
        found = set()
        stack = [(src.dpid, src.port, ())]
        while stack:
            dpid, in_port, trail = stack.pop()
            trail += (dpid,)
            if len(trail) > MAX_PATH_SWITCHES or dpid not in self.installed:
                continue
            for port in self._outputs(dpid, dict(pkt, in_port=in_port), in_port):
                if (dpid, port) == (dst.dpid, dst.port):
                    found.add(trail)
                elif (dpid, port) in peers:
                    stack.append((*peers[(dpid, port)], trail))
        return [list(p) for p in sorted(found)]

    def _outputs(self, dpid, pkt, in_port):
        """Ports an installed rule of ``dpid`` may send ``pkt`` to (one per SELECT bucket).

        As on a switch, a plain output to the in-port is dropped; ``PORT_IN_PORT`` is not.
        """
        table = self.installed[dpid]
        best = None
        for rule in table["flows"].values():
            if (best is None or rule.priority > best.priority) and all(
                    pkt.get(k) == v for k, v in rule.match):
                best = rule
        live = self.ports.get(dpid, ())

        def expand(actions):
            for a in actions:
                if isinstance(a, Output):
                    if a.port == PORT_IN_PORT:
                        yield in_port
                    elif a.port != in_port:
                        yield a.port
                elif isinstance(a, ToGroup) and a.group_id in table["groups"]:
                    group = table["groups"][a.group_id]
                    if group.type == "fast_failover":
                        buckets = [b for b in group.buckets if b.watch_port in live][:1]
                    else:
                        buckets = group.buckets
                    for b in buckets:
                        yield from expand(b.actions)

        return [] if best is None else list(expand(best.actions))

    # -- the model as if discovered --------------------------------------------------------
    def load_fabric(self, g, now=0.0, capacity_scale=1.0):
        """Learn a fabric model as discovery would (for tests and the flow-level simulator).

        Also takes the model's link capacities (times ``capacity_scale``) as
        ``link_capacity_bps``.
        """
        from fabric.model import host_switch, hosts, switches
        self._now = now
        self.link_capacity_bps.update(link_capacities(g, capacity_scale))
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
