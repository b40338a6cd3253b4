"""The routing core: what the controller knows and decides, with no Ryu, sockets or sleeps.

Every event handler takes ``now`` (seconds, any monotonic origin) and returns a list of plain
messages from controllers/rules.py; nothing is sent from here. The Ryu app
(controllers/app.py, through the pure driver controllers/driver.py) turns OpenFlow events into
these calls and the returned messages into OpenFlow; tests drive the same object against a
fake flow table, and the flow-level simulator drives its parts.

It composes pure parts with one job each, and adds only what joins them (ARP answers, when a
change set is taken, which flows a change breaks):

- topology state (controllers/topology.py): switches, links from LLDP probes, hosts from the
  ARP or IPv4 packets they send; events in, change sets out;
- path service (controllers/paths.py): distances and equal-cost next hops per destination
  switch, updated incrementally per change set; equal-cost and k shortest paths;
- load model (controllers/loads.py): smoothed port rates, learned flows with their demand
  estimates summed per link, and an index from link to the flows pinned on it;
- policy (controllers/policies.py): place, adapt, repair, reset, through the interface below;
- OpenFlow renderer (controllers/render.py): what every switch must hold and the diff to send,
  redone only where a change set reaches. Only :meth:`RoutingCore.flush` and the switch events
  use it.

The core answers ARP itself and forwards a request only to host-facing ports, never onto
inter-switch links, so a loopy fabric never floods. What an event costs depends on what it
touches: a new flow costs its candidate paths and the flows sharing its hosts, a link change
the destinations and switches whose next hops it changes, never a scan of every flow or rule.
"""

import array
import collections
import hashlib
import hmac
import itertools
import secrets
import struct
import weakref

import numpy as np

from controllers.heap import Settler, paused
from controllers.health import HealthConfig, HealthError, LinkHealth, PortCounters
from controllers.loads import Flow, LoadModel
from controllers.meters import ControlMeters, MeterConfig
from controllers.paths import PathService
from controllers.placement import wcmp_weights
from controllers.policies import (POLICY_CLASSES, Collective, IntentError, PolicyConfig,
                                  PolicyError)
from controllers.render import GroupIds, NoRenderer, Renderer, base_rules
from controllers.rules import (LLDP_SRC_MAC, PORT_TABLE, PRIO_FLOW, ArpPacket, FlowKey,
                               LldpProbe, PacketOut)
from controllers.tables import installed_paths
from controllers.topology import SILENT_ROUNDS, Host, TopologyState

__all__ = ["POLICIES", "ExpectedFabric", "Host", "IntentError", "PolicyError", "RoutingCore",
           "base_rules", "expected_fabric", "link_capacities", "next_hops"]

POLICIES = tuple(POLICY_CLASSES)

ARP_REQUEST = 1
ARP_REPLY = 2

# More changed switch pairs than this in one change set are redone from scratch: the
# incremental update pays per pair, a rebuild once.
INCREMENTAL_PAIRS = 64
# ARP requests the core forwarded, remembered to recognise their echoes: bounded, so hosts
# asking for unknown addresses cannot grow the controller's memory.
FLOODED_MAX = 4096
ECHO_WINDOW_S = 2.0
# Candidate path arrays kept per switch pair, bounded by their total number of cells (4 bytes
# each: 64 MiB), and dropped when the topology changes.
MATRIX_CACHE_CELLS = 16 * 2 ** 20
# A probe is stale if sent this long before the newest one its receiving switch reported
# (probes come back in the order sent, however late the controller works through them), or
# sent longer ago than SILENT_ROUNDS link timeouts (when links expire by the clock anyway).
PROBE_WINDOW_S = 10.0
PROBE_AUTH_BYTES = 16
# Ports where a probe claiming to be ours came in from a host, remembered for status.
FLAGGED_PORTS_MAX = 1024
# Learned flows one host may send at once: a host inventing 5-tuples (a new-flow flood,
# metered at its port) cannot grow the flow table and the switches' per-flow rules beyond
# this; its further flows follow the routes of their destination, unlearned.
FLOWS_PER_HOST_MAX = 4096
# A batch of flows learned at once (flows_seen) from this many on is placed by the
# least-loaded policy in one compiled loop (LoadModel.learn_least_loaded), not one by one.
LEAST_LOADED_BATCH = 4096


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
    import networkx as nx
    dist = nx.single_source_shortest_path_length(graph, dst)
    hops = {}
    for sw, d in dist.items():
        if sw == dst:
            continue
        hops[sw] = sorted(n for n in graph.neighbors(sw) if dist.get(n) == d - 1)
    return hops


ExpectedFabric = collections.namedtuple("ExpectedFabric", "switches links hosts_at")


def expected_fabric(g):
    """What a fabric model says discovery will find, for ``RoutingCore(expected=...)``.

    Parameters
    ----------
    g : nx.Graph
        A fabric model (fabric/model.py).

    Returns
    -------
    ExpectedFabric
        ``switches``: frozenset of dpids; ``links``: frozenset of dpid pairs ``(a, b)``,
        ``a < b``; ``hosts_at``: ``{(dpid, port): (Host, ...)}`` of every host.
    """
    dpid = {n: d["dpid"] for n, d in g.nodes(data=True) if d["role"] != "host"}
    links, hosts_at = set(), collections.defaultdict(list)
    for u, v, d in g.edges(data=True):
        if u in dpid and v in dpid:
            links.add(tuple(sorted((dpid[u], dpid[v]))))
            continue
        h, sw = (u, v) if v in dpid else (v, u)
        node, port = g.nodes[h], d["ports"][sw]
        hosts_at[(dpid[sw], port)].append(Host(node["mac"], node["ip"], dpid[sw], port))
    return ExpectedFabric(frozenset(dpid.values()), frozenset(links),
                          {k: tuple(v) for k, v in hosts_at.items()})


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


def _multicast(mac):
    """Is ``mac`` (``aa:bb:...``) a group address (multicast or broadcast)? No host has one."""
    try:
        return bool(int(mac[:2], 16) & 1)
    except ValueError:
        return True


class CandidatePaths:
    """The paths of a path matrix (columns of dense link indices), as tuples of dpids on
    demand."""

    def __init__(self, src, idx, links):
        self._src, self._idx, self._links = src, idx, links

    def __len__(self):
        return self._idx.shape[1]

    def __getitem__(self, i):
        links = self._links
        return (self._src,) + tuple([links[j][1] for j in self._idx[:, i].tolist()])


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
        Protect every route with FAST_FAILOVER groups (see controllers/render.py).
    link_capacity_bps : dict, optional
        ``{(dpid, port): bit/s}`` of switch ports (see :func:`link_capacities`), in the units
        port statistics will show (emulated, not nominal, rates under emulation).
    default_capacity_bps : float
        Capacity of a port missing from ``link_capacity_bps``.
    lldp_secret : bytes, optional
        Key of the HMAC every LLDP probe carries (see :meth:`probe_in`). Controllers that
        must accept each other's probes share one; by default a random one per core.
    probe_window_s : float
        A probe sent this much earlier than the newest its receiving switch reported is
        stale (a replay).
    expected : ExpectedFabric, optional
        What the fabric model says (:func:`expected_fabric`): its hosts are known as soon as
        their switch port is up, and :meth:`discovery_complete` says when everything it
        names has been found.
    health : dict, optional
        Options of gray-failure detection and flap dampening
        (:class:`controllers.health.HealthConfig`).
    meters : dict, optional
        Packet-in budgets of the meters every switch gets
        (:class:`controllers.meters.MeterConfig`).
    render : bool
        Render OpenFlow rules and groups (the controller). Without (the flow-level
        simulator), :meth:`flush` returns nothing and the forwarding state is the path
        service's next hops, the SELECT ``render.weights`` and the pins.
    **options
        Thresholds of the adaptive policies, see :class:`controllers.policies.PolicyConfig`.

    Raises
    ------
    PolicyError
        If the policy or an option is unknown, or an option is out of range.
    """

    def __init__(self, policy="ecmp", link_timeout_s=15.0, fast_failover=True,
                 link_capacity_bps=None, default_capacity_bps=1e9, render=True,
                 lldp_secret=None, probe_window_s=PROBE_WINDOW_S, expected=None, health=None,
                 meters=None, **options):
        self.expected = expected
        self.config = PolicyConfig.from_options(options)
        try:
            self.health = LinkHealth(HealthConfig.from_options(dict(health or {})))
        except (HealthError, TypeError) as e:
            raise PolicyError(str(e)) from None
        if lldp_secret is not None and not (isinstance(lldp_secret, bytes) and lldp_secret):
            raise PolicyError("lldp_secret must be non-empty bytes")
        self._lldp_secret = lldp_secret or secrets.token_bytes(32)
        self.probe_window_s = float(probe_window_s)
        self.flagged_ports = collections.OrderedDict()   # (dpid, port) -> probes from hosts
        self.fast_failover = bool(fast_failover)
        self.link_capacity_bps = dict(link_capacity_bps or {})
        if not default_capacity_bps > 0:
            raise PolicyError(f"default_capacity_bps must be > 0, got {default_capacity_bps!r}")
        self.default_capacity_bps = float(default_capacity_bps)
        self.counters = collections.Counter()
        self.topo = TopologyState(link_timeout_s)
        self.path_service = PathService(self.topo.adj)
        # The load model reaches back through a weak reference: bound methods would make a
        # cycle (core -> load model -> core), and the renderer freezes what a rebuild leaves
        # (gc.freeze), so a dropped core in a cycle would never be freed (1 GB at k=32).
        me = weakref.proxy(self)
        self.load = LoadModel(self.config.util_tau_s, self.config.young_bytes,
                              self.topo.adj, lambda mac: me.nic_bps(mac),
                              lambda u, v: me.capacity(u, v))
        # Learned flows and their rules are long-lived and acyclic: out of the cyclic
        # collector's sight in batches (controllers/heap.py).
        self._settler = Settler()
        # (src, dst switch) -> candidate arrays, and their shared parts (see _path_matrix)
        self._matrices = collections.OrderedDict()
        self._matrices_version = None
        self._matrix_cells = 0
        try:
            self.meters = ControlMeters(MeterConfig(**dict(meters or {})))
        except (ValueError, TypeError) as e:
            raise PolicyError(str(e)) from None
        self.render = (Renderer if render else NoRenderer)(
            self.topo, self.path_service, GroupIds(), fast_failover=self.fast_failover)
        self._flooded = collections.OrderedDict()   # (src mac, target ip) -> time forwarded
        self._rebuild = True       # the next sync redoes every route from scratch
        self._stale = set()        # learned flows whose rules must be redone
        self._pins_dirty = False   # the policy's own pins (intents) must be redone
        self._policy_pins = {}     # owner -> pin tuple, of the policy's pins now rendered
        self._pins_seen = None     # the policy's pins_version they were rendered at
        self._now = 0.0
        self._policy = None
        self.set_policy(policy)

    # -- what the parts hold, as the app, the REST API and the tests read it ---------------
    @property
    def ports(self):
        return self.topo.ports

    @property
    def links(self):
        return self.topo.links

    @property
    def hosts(self):
        return self.topo.hosts

    @property
    def flows(self):
        return self.load.flows

    @property
    def installed(self):
        """``{dpid: table}``: ``table["flows"]``, ``table["groups"]`` as of the last flush."""
        return self.render.tables

    def _at(self, now):
        self._now = now
        self.load.advance(now)

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
        self._at(now)
        if self._policy is not None:
            self.counters["policy_changes"] += 1
        self._policy = POLICY_CLASSES[policy](self.config)
        self.policy = policy
        self.render.multipath = self._policy.multipath
        self.render.learn_flows = self._policy.learns_flows
        self.render.weights = {}
        self._rebuild = True
        self._pins_dirty = True
        if not self._policy.learns_flows:
            self._forget_all_flows()
        self._sync(now)
        for flow in sorted(self.flows.values(), key=lambda f: f.key):
            self.load.set_path(flow, None, now)
            flow.placed_at = flow.demand_bps = None
            flow.elephant = False
        for flow in sorted(self.flows.values(), key=lambda f: f.key):
            self._policy.place(self, flow, now)

    def reset(self, now):
        """Start the active policy afresh: learned flows, intents, weights and whatever the
        policy itself remembers are forgotten (a benchmark's runs must not see each other)."""
        self._at(now)
        self.counters["policy_resets"] += 1
        self._forget_all_flows()
        self._policy.reset(self, now)
        if self.render.weights:
            self.render.reweight({})
        self._pins_dirty = True
        return []

    def _forget_all_flows(self):
        for key in list(self.flows):
            self._stale.add(key)
        self.load.clear()

    @property
    def learns_flows(self):
        """Does the active policy learn flows (so per-flow statistics must be polled)?"""
        return self._policy.learns_flows

    @property
    def dirty(self):
        """Is there anything ``flush`` would send?"""
        return bool(self._rebuild or self.topo.changes or self._stale or self._pins_dirty
                    or self.render.dirty or self.render.stale_owners)

    # -- switches and ports ----------------------------------------------------------------
    def switch_enter(self, dpid, ports, now):
        """A switch connected with ``ports``: wipe it, give it the base rules, probe its ports,
        and know the model's hosts on its live ports (if a model was given).

        The wipe is what a switch of unknown state gets; the driver (controllers/driver.py)
        holds it back and reads the switch's state instead, then calls :meth:`resync`.
        """
        self._at(now)
        self.topo.switch_enter(dpid, ports)
        self.load.forget_switch(dpid)
        msgs = self.render.switch_enter(dpid)
        if msgs:   # the switch is wiped: its meters go before the rules that use them
            msgs[1:1] = self.meters.switch_enter(dpid, ports)
        self._rebuild = True
        for port in sorted(ports):
            self._learn_expected(dpid, port)
        msgs.extend(self._probe(dpid, sorted(ports)))
        return msgs

    def resync(self, dpid, flows, groups, now):
        """Switch ``dpid`` was read back: it holds ``flows`` (FlowRules, every table and
        cookie) and ``groups`` (Groups). The next :meth:`flush` sends it only what differs
        from what it should hold: nothing if it holds exactly that."""
        self._at(now)
        if dpid in self.ports:
            self.counters["switches_resynced"] += 1
            self.render.holds(dpid, flows, groups)
        return []

    def _learn_expected(self, dpid, port):
        """Hosts the model puts at (dpid, port): known without waiting for them to speak
        (hosts with static ARP may never send ARP again after a controller restart)."""
        if self.expected is None:
            return
        for host in self.expected.hosts_at.get((dpid, port), ()):
            self._learn(host.mac, host.ip, dpid, port)

    def discovery_complete(self):
        """Is every switch, link and host of the model known? None without a model."""
        exp = self.expected
        if exp is None:
            return None
        adj = self.topo.adj
        return (all(d in adj for d in exp.switches)
                and all(b in adj.get(a, ()) for a, b in exp.links)
                and all(h.mac in self.hosts for hs in exp.hosts_at.values() for h in hs))

    def switch_leave(self, dpid, now):
        """A switch disconnected: forget it, its links and its hosts."""
        self._at(now)
        self.topo.switch_leave(dpid)
        self.health.forget_switch(dpid)
        self.meters.switch_leave(dpid)
        self.render.switch_leave(dpid)
        self.load.forget_switch(dpid)
        self._rebuild = True
        return []

    def port_status(self, dpid, port, up, now):
        """A port went up (probe it) or down (forget its link and hosts at once)."""
        self._at(now)
        if dpid not in self.ports:
            return []
        if up:
            self.topo.port_up(dpid, port)
            self._learn_expected(dpid, port)
            self.render.ports_changed({dpid: (port,)})
            return self.meters.port_up(dpid, [port]) + self._probe(dpid, [port])
        peer = self.topo.peer(dpid, port)
        if peer is not None:
            # A flap: a link that keeps failing is suppressed, even once it is back up.
            link = tuple(sorted(((dpid, port), peer)))
            self.health.link_down(link, now)
            if link in self.health.excluded():
                self.topo.set_excluded(link, True)
        self.topo.port_down(dpid, port)
        self.render.ports_changed({dpid: (port,)})
        return []

    # -- link discovery --------------------------------------------------------------------
    def _probe(self, dpid, ports):
        now = self._now
        return [PacketOut(dpid, (p,), LldpProbe(dpid, p, now, self._auth(dpid, p, now)))
                for p in ports]

    def _auth(self, dpid, port, sent_at):
        """The HMAC-SHA256 (truncated, hex) of a probe's switch, port and time."""
        try:
            fields = struct.pack("!QId", dpid, port, sent_at)
        except (struct.error, TypeError):
            return None
        return hmac.new(self._lldp_secret, fields, hashlib.sha256).digest()[
            :PROBE_AUTH_BYTES].hex()

    def _authentic(self, probe):
        want = self._auth(probe.dpid, probe.port, probe.sent_at)
        try:
            return want is not None and hmac.compare_digest(probe.auth, want)
        except TypeError:   # no tag, or not ASCII text
            return False

    def probe_in(self, dpid, in_port, probe, eth_src, now):
        """An LLDP frame claiming to be our probe came in at (dpid, in_port).

        The link it reports is learned only from a probe of ours (Ethernet source
        :data:`~controllers.rules.LLDP_SRC_MAC`, an HMAC that matches its switch, port and
        time), fresh (sent no earlier than ``probe_window_s`` before the newest probe this
        switch reported, and within :data:`~controllers.topology.SILENT_ROUNDS` link
        timeouts of ``now``, not in the future), arriving on a switch port: a port where a
        host is known stays a host port, and the probe flags it. Each refusal is counted
        (``lldp_forged``, ``lldp_stale``, ``lldp_from_host_port``); see ``status()["discovery"]``.

        Parameters
        ----------
        probe : controllers.rules.LldpProbe or None
            What the frame says (None if it does not parse as one of ours).
        eth_src : str
            The frame's Ethernet source.
        """
        self._at(now)
        if dpid not in self.ports:
            return []
        if self.topo.has_hosts_at(dpid, in_port):
            self.counters["lldp_from_host_port"] += 1
            key = (dpid, in_port)
            self.flagged_ports[key] = self.flagged_ports.pop(key, 0) + 1
            while len(self.flagged_ports) > FLAGGED_PORTS_MAX:
                self.flagged_ports.popitem(last=False)
            return []
        if probe is None or eth_src != LLDP_SRC_MAC or not self._authentic(probe):
            self.counters["lldp_forged"] += 1
            return []
        newest = self.topo.newest_probe(dpid)
        if probe.sent_at > now or now - probe.sent_at > SILENT_ROUNDS * self.topo.link_timeout_s \
                or (newest is not None and probe.sent_at < newest - self.probe_window_s):
            self.counters["lldp_stale"] += 1
            return []
        self.counters["lldp_accepted"] += 1
        return self.link_seen(probe.dpid, probe.port, dpid, in_port, now, sent_at=probe.sent_at)

    def lldp_probes(self, now):
        """Probes for every live port of every switch (the app sends them periodically)."""
        msgs = []
        for dpid in sorted(self.ports):
            msgs.extend(self._probe(dpid, sorted(self.ports[dpid])))
        return msgs

    def link_seen(self, src_dpid, src_port, dst_dpid, dst_port, now, sent_at=None):
        """A probe sent out of (src_dpid, src_port) arrived at (dst_dpid, dst_port);
        ``sent_at``, the time the probe says it was sent, if it says (see
        :meth:`controllers.topology.TopologyState.expire_links`). Trusted: the app calls
        :meth:`probe_in`, which checks the probe first; tests and the twin call this."""
        self._at(now)
        stamped = sent_at is not None and sent_at <= now
        if self.topo.link_seen(src_dpid, src_port, dst_dpid, dst_port,
                               sent_at if stamped else now,
                               arrived_at=now if stamped else None):
            self.counters["links_learned"] += 1
            # A port found to face a switch loses its relearn rule (even where the switch
            # pair's adjacency, and so the change set, stays as it was: a parallel link).
            self.render.ports_changed({src_dpid: (src_port,), dst_dpid: (dst_port,)}
                                      if src_dpid != dst_dpid else
                                      {src_dpid: (src_port, dst_port)})
        return []

    def drain_links(self, links, now):
        """Make-before-break, first step: routes leave ``links`` (each ``((dpid, port),
        (dpid, port))``) while they still carry, as for an excluded link; the links stay
        known. Changes go out with the next :meth:`flush`."""
        self._at(now)
        for link in links:
            self.topo.set_excluded(link, True)
        return []

    def commit_links(self, removed, added, now):
        """Make-before-break, commit: ``removed`` links are gone and ``added`` ones exist,
        as one topology change (an optical circuit switch moved its circuits, see
        controllers/topoeng.py); routes use the new links from the next :meth:`flush`."""
        self._at(now)
        for link in removed:
            for dpid, port in link:
                self.topo.drop_link_at(dpid, port)
            self.topo.set_excluded(link, False)
        for (a, pa), (b, pb) in added:
            self.link_seen(a, pa, b, pb, now)
            self.link_seen(b, pb, a, pa, now)
        return []

    def expire_links(self, now):
        """Drop links no probe confirmed for ``link_timeout_s``."""
        self._at(now)
        self.topo.expire_links(now)
        return []

    def edge_ports(self):
        """Live ports that face hosts (no link discovered on them), as {dpid: [ports]}."""
        return self.topo.edge_ports()

    # -- hosts and ARP ---------------------------------------------------------------------
    def packet_in_arp(self, dpid, in_port, arp, data, now):
        """An ARP packet reached the controller. Learn its sender, then answer or forward it.

        Returns PacketOuts: an ARP reply built by the core when it knows the target, or the
        original frame (``data``) sent only to host-facing ports.
        """
        self._at(now)
        if self.topo.is_link_port(dpid, in_port) or dpid not in self.ports:
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
            self._remember_flood(arp.src_mac, arp.dst_ip, now)
            self.counters["arp_forwards"] += 1
            return [PacketOut(d, tuple(p for p in ports if (d, p) != (dpid, in_port)), data)
                    for d, ports in sorted(self.topo.edge_ports().items()) if ports]
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



    def _remember_flood(self, src_mac, dst_ip, now):
        self._flooded[(src_mac, dst_ip)] = now
        self._flooded.move_to_end((src_mac, dst_ip))
        while self._flooded and (len(self._flooded) > FLOODED_MAX or
                                 now - next(iter(self._flooded.values())) > ECHO_WINDOW_S):
            self._flooded.popitem(last=False)

    def _learn(self, mac, ip, dpid, port):
        if self.topo.learn_host(mac, ip, dpid, port):
            self.counters["hosts_learned"] += 1

    def host_by_ip(self, ip):
        """The host with IPv4 address ``ip``, or None."""
        return self.topo.host_by_ip(ip)

    def host_by_ref(self, ref):
        """The host named by its MAC or its IPv4 address, or None."""
        return self.topo.host_by_ref(ref)

    # -- statistics ------------------------------------------------------------------------
    def port_stats(self, dpid, counters, now):
        """Cumulative counters of a switch's ports, read at ``now``.

        The app polls port statistics of every switch (OFPPortStatsRequest, all ports) every
        statistics period (1 s is a good default) and passes ``{port_no: PortCounters}`` of
        each reply (``{port_no: tx_bytes}`` is enough for the load model, as the flow-level
        simulator gives it; gray failures are judged only from full counters). Rates are
        smoothed with time constant ``util_tau_s``; counters that go backwards start over.
        Decisions wait for :meth:`adapt`.
        """
        self._at(now)
        full = {}
        for port, c in counters.items():
            if isinstance(c, PortCounters):
                full[port] = c
                c = c.tx_bytes
            self.load.sample(dpid, port, c, now)
        if full:
            self.health.sample(dpid, full, now)
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
        self._at(now)
        key = FlowKey.of(flow_key)
        flow = self._learn_flow(key, src_mac, dst_mac, now)
        if flow is not None:
            self.load.measure(flow, bytes_total, now)
        return []

    def flows_seen(self, flows, now):
        """Flows that exist at ``now`` and have sent nothing yet, learned in one call: the
        same, in the same order, as ``flow_seen(flow_key, src_mac, dst_mac, 0, now)`` for
        each, for a whole set of connections opened before a collective starts.

        It holds the cyclic garbage collector off meanwhile (a learned flow is a tracked
        object, and a million of them made one by one trigger collections that walk all
        those made before: a third of the time of learning them, measured at k=12), then
        settles them out of its sight once (controllers/heap.py ``Settler``).

        Parameters
        ----------
        flows : iterable
            ``(flow_key, src_mac, dst_mac)`` items, as :meth:`flow_seen` takes them.
        now : float
            The instant they are seen.
        """
        self._at(now)
        learn, measure, plain = self._learn_flow, self.load.measure, FlowKey.plain
        # A host's NIC rate cannot change within the call (no topology event comes in).
        nics = {mac: self.nic_bps(mac) for mac in self.topo.hosts}
        with paused():
            if self._policy.learns_flows and self._policy.least_loaded:
                flows = iter(flows)
                first = list(itertools.islice(flows, LEAST_LOADED_BATCH))
                flows = itertools.chain(first, flows)
                if len(first) == LEAST_LOADED_BATCH:
                    del first
                    flows = self._learn_least_loaded(flows, nics, now)
            for flow_key, src_mac, dst_mac in flows:
                flow = learn(plain(flow_key), src_mac, dst_mac, now,
                             (nics.get(src_mac), nics.get(dst_mac)))
                if flow is not None:
                    measure(flow, 0, now)
        # The settling every learned flow would have brought, once for the whole set.
        self._settler.settle()
        return []

    def _learn_least_loaded(self, items, nics, now):
        """:meth:`flows_seen` of a large batch under a least-loaded policy (``Congestion``):
        the flows made here, their placement and the load model's bookkeeping in one
        compiled loop (``LoadModel.learn_least_loaded``), with the same result as learning
        and placing them one by one. The items are read once; at the first that is not a new
        flow of a distinct 5-tuple within its sender's limit, nothing has changed yet, and
        what is returned (the items read so far that name known hosts, then the rest) is
        for the caller to take one by one. Returns ``()`` once all are learned."""
        load, hosts, plain, known = self.load, self.topo.hosts, FlowKey.plain, self.load.flows
        self._sync(now)
        self._fresh_matrices()
        batch, room, matrices, matrix_ids = {}, {}, [], {}
        matrix_of = array.array("q")
        unknown = 0
        for item in items:
            flow_key, src_mac, dst_mac = item
            key = plain(flow_key)
            src, dst = hosts.get(src_mac), hosts.get(dst_mac)
            if src is None or dst is None:
                unknown += 1
                continue
            left = room.get(src_mac)
            if left is None:
                left = FLOWS_PER_HOST_MAX - load.count_from(src_mac)
            if key in known or key in batch or left <= 0:
                self.counters["flows_unknown_host"] += unknown
                return itertools.chain(((f.key, f.src, f.dst) for f in batch.values()),
                                       [item], items)
            room[src_mac] = left - 1
            flow = Flow(key, src_mac, dst_mac, seen_at=now, active_at=now)
            flow.nic_bps = (nics.get(src_mac), nics.get(dst_mac))
            # What measure(flow, 0, now) records: the counter's first reading.
            flow.bytes, flow.at = 0, now
            batch[key] = flow
            pair = (src.dpid, dst.dpid)
            m = matrix_ids.get(pair)
            if m is None:
                idx = self._path_matrix(*pair)
                m = -1
                if idx is not None and idx.shape[1]:
                    m = len(matrices)
                    matrices.append((src.dpid, idx))
                matrix_ids[pair] = m
            matrix_of.append(m)
        flows = list(batch.values())
        del batch
        pinned = load.learn_least_loaded(flows, np.frombuffer(matrix_of, dtype=np.int64),
                                         matrices, now)
        if unknown:
            self.counters["flows_unknown_host"] += unknown
        self.counters["flows_learned"] += len(flows)
        if pinned:
            self.counters["flow_placements"] += pinned
        if self.render.renders:
            self._stale.update(flow.key for flow in flows)
        return ()

    def flow_stats(self, dpid, rows, now):
        """Byte counters of the per-flow rules of one switch, read at ``now``.

        The app polls, with the same period as port statistics, flow statistics of every
        switch filtered on cookie :data:`~controllers.rules.COOKIE_FLOW` (mask all ones) and
        passes ``[(match, byte_count), ...]`` of the reply, a match being Ryu's ``OFPMatch``
        or a dict of OXM fields. Rows of rules the core no longer knows are ignored.
        """
        self._at(now)
        for fields, byte_count in rows:
            flow = self.flows.get(FlowKey.from_match(fields))
            host = None if flow is None else self.hosts.get(flow.src)
            if host is not None and host.dpid == dpid:
                self.load.measure(flow, byte_count, now)
        return []

    def packet_in_flow(self, dpid, in_port, flow_key, src_mac, dst_mac, data, now):
        """An IPv4 packet reached the controller: the first of an unknown TCP/UDP flow, or
        one from a host port where no host is known.

        Learning policies install, on every host port, a rule sending new flows' packets
        here, and every live port facing no switch and holding no known host sends its IPv4
        packets here (controllers/render.py, PRIO_RELEARN; both through the port's meter);
        the app parses the packet's 5-tuple and MACs and calls this. A sender not known at
        (dpid, in_port) is learned from the packet as from an ARP it sent, with the same
        checks (not on a port that faces a switch, or faced one since it came up; not a host
        known at another live port; at most :data:`~controllers.topology.HOSTS_PER_PORT_MAX`
        hosts per port; never a multicast source MAC): a host with static ARP is relearned
        from its traffic after a restart without a topology model. The core then learns the
        flow (if its policy learns flows), places it, and returns the rules that take over
        (the host's routes, the flow's rules, so its next packets stay in the switch)
        followed by a PacketOut that sends this packet through the switch's table
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
        self._at(now)
        self.counters["flow_packet_ins"] += 1
        key = FlowKey.of(flow_key)
        host = self.hosts.get(src_mac)
        if host is None or (host.dpid, host.port) != (dpid, in_port):
            host = self._learn_from_traffic(dpid, in_port, src_mac, key.ipv4_src)
        # A sender refused is not learned, nor its flow; its packet is still forwarded.
        if host is not None:
            self._learn_flow(key, src_mac, dst_mac, now)
        msgs = self.flush(now)
        if data:
            msgs.append(PacketOut(dpid, (PORT_TABLE,), data))
        return msgs

    def _learn_from_traffic(self, dpid, in_port, mac, ip):
        """Learn the sender of an IPv4 packet at (dpid, in_port) as :meth:`packet_in_arp`
        learns an ARP sender; returns the host if it is now known there, else None."""
        if dpid not in self.ports or self.topo.faces_switch(dpid, in_port) or \
                not isinstance(mac, str) or _multicast(mac):
            self.counters["hosts_refused_from_traffic"] += 1
            return None
        learned = self.counters["hosts_learned"]
        self._learn(mac, ip, dpid, in_port)
        host = self.hosts.get(mac)
        if host is None or (host.dpid, host.port) != (dpid, in_port):
            self.counters["hosts_refused_from_traffic"] += 1
            return None
        if self.counters["hosts_learned"] != learned:
            self.counters["hosts_learned_from_traffic"] += 1
        return host

    def _learn_flow(self, key, src_mac, dst_mac, now, nic_bps=None):
        load = self.load
        flow = load.flows.get(key)
        if flow is not None or not self._policy.learns_flows:
            return flow
        hosts = self.topo.hosts
        if src_mac not in hosts or dst_mac not in hosts:
            self.counters["flows_unknown_host"] += 1
            return None
        if load.count_from(src_mac) >= FLOWS_PER_HOST_MAX:
            self.counters["flows_refused_host_full"] += 1
            return None
        flow = Flow(key, src_mac, dst_mac, seen_at=now, active_at=now)
        load.add(flow, now, nic_bps)
        self.counters["flows_learned"] += 1
        self._sync(now)
        if self.render.renders:
            # A core without switches (the twin) has no flow rules to redo: a million keys
            # kept only for the next flush to drop cost a tenth of learning them.
            self._stale.add(key)
        self._policy.place(self, flow, now)
        self._settler.grew()
        return flow

    def _forget_flow(self, key, now):
        if self.load.remove(key, now) is not None:
            self._stale.add(key)

    def adapt(self, now):
        """Run the policy's periodic decisions; call once after each statistics round.

        First the round's port counters are judged (controllers/health.py): links found
        degraded or suppressed for flapping leave the routes, healed ones return, whatever
        the policy. Forgets flows idle for ``flow_idle_s``, then lets the policy act:
        ``congestion`` (and ``collective`` for unannounced traffic) moves flows off hot links
        and re-weights groups, ``hedera`` detects elephants, estimates demands and places
        them. Changes go out with the next :meth:`flush`.
        """
        self._at(now)
        leave, back = self.health.evaluate(self.topo.peers(), now, self.topo.probe_lag_s(),
                                           self.link_capacity_bps, self.topo.probe_delay_s()) \
            if self.health.active else ([], [])
        for link in leave:
            self.topo.set_excluded(link, True)
        for link in back:
            self.topo.set_excluded(link, False)
        self._sync(now)
        for key, flow in sorted(self.flows.items()):
            if now - flow.active_at > self.config.flow_idle_s:
                self._forget_flow(key, now)
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
        self._at(now)
        policy = self._collective()
        self._sync(now)
        policy.submit(self, intent_id, flows, now)
        self.counters["intents_submitted"] += 1
        self._pins_dirty = True
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
        self._at(now)
        self._collective().withdraw(self, intent_id)
        self._pins_dirty = True
        return []


    @property
    def pins_version(self):
        """Changes whenever the active policy's own pins (:meth:`pins`) change."""
        return self._policy.pins_version

    def pins(self):
        """The active policy's own pins (a collective's intents), as the renderer gets them:
        ``(match fields, priority, path, source Host, destination Host)``."""
        return list(self._policy.pins(self))

    def pinned(self):
        """The same pins by what they match, without building matches (a million for a
        large collective): ``(5-tuple or None for a host pair, source Host, destination
        Host, path)``."""
        return self._policy.pinned(self)

    def pinned_tables(self):
        """The same pins as columns, per intent: ``(FlowTable, path_of, paths)`` (see
        ``Policy.pinned_tables``)."""
        return self._policy.pinned_tables(self)

    # -- the policy interface --------------------------------------------------------------
    def select_gid(self, dst):
        """Id of the SELECT group leading toward destination switch ``dst`` (any switch)."""
        return self.render.select_gid(dst)

    def allows(self, path):
        """Is ``path`` (dpids) a shortest path toward its last switch in this topology?"""
        self._sync(self._now)
        return self.path_service.allows(path)

    def allowed_paths(self, paths):
        """:meth:`allows` for every path of a ``SwitchPaths`` at once (a bool array)."""
        self._sync(self._now)
        return self.path_service.allowed(paths)

    def host_paths(self, src_mac, dst_mac):
        """Equal-cost switch paths between two known hosts' switches (sorted tuples)."""
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return []
        self._sync(self._now)
        return self.path_service.paths(src.dpid, dst.dpid)

    def flow_paths(self, flow):
        """Equal-cost switch paths a learned flow may be pinned to."""
        return self.host_paths(flow.src, flow.dst)

    def k_paths(self, src_mac, dst_mac, k, max_extra_hops=2):
        """Up to ``k`` loop-free switch paths between two hosts' switches, including paths
        up to ``max_extra_hops`` longer than the shortest (for non-minimal routing)."""
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return []
        self._sync(self._now)
        return self.path_service.k_paths(src.dpid, dst.dpid, k, max_extra_hops)

    def port(self, u, v):
        """Port of switch ``u`` on its link to switch ``v``."""
        return self.topo.adj[u][v]

    def has_link(self, u, v):
        """Is there a link from switch ``u`` to switch ``v`` that routes may cross (up, and
        not kept out as degraded or suppressed)?"""
        return v in self.topo.adj.get(u, ())

    def capacity(self, u, v):
        """Capacity (bit/s) of the directed link from switch ``u`` to switch ``v``."""
        return self.link_capacity_bps.get((u, self.topo.adj[u][v]), self.default_capacity_bps)

    def nic_bps(self, mac):
        """NIC rate (bit/s) of a host: the capacity of its switch port."""
        host = self.hosts.get(mac)
        if host is None:
            return self.default_capacity_bps
        return self.link_capacity_bps.get((host.dpid, host.port), self.default_capacity_bps)

    def flow_rate(self, flow, now):
        """A flow's load for placement: its measured rate once started, else an estimate
        (see :meth:`controllers.loads.LoadModel.flow_rate`)."""
        return self.load.flow_rate(flow, now)

    def link_load(self, u, v, now):
        """Projected bit/s of the directed link u->v: measured, plus recent moves, plus the
        estimated demand of pinned flows the counters cannot show yet."""
        return self.load.link_load(u, v, now)

    def candidate_utils(self, flow, extra_bps, now):
        """The equal-cost paths of a flow and the utilization of their links with
        ``extra_bps`` more on each: ``(paths, util)``, ``util[i, j]`` being (projected load
        + extra) / capacity of the j-th link of ``paths[i]`` (a numpy array; no columns for
        a flow within one switch). One vector operation, whatever the number of paths."""
        src, dst = self.hosts.get(flow.src), self.hosts.get(flow.dst)
        if src is None or dst is None:
            return [], None
        self._fresh_matrices()
        idx = self._path_matrix(src.dpid, dst.dpid)
        if idx is None or not idx.shape[1]:
            return [], None
        util = self.load.loads_at(idx, now)
        util += extra_bps
        util /= self.load.capacities_at(idx)
        # Computed link-major, handed out path-major (a transposed view): the policies'
        # reductions over a path's few links then run along contiguous rows.
        return CandidatePaths(src.dpid, idx, self.load.links), util.T

    def host_path_matrix(self, src_mac, dst_mac):
        """The equal-cost paths between two known hosts' switches as link indices: a numpy
        int32 array, row j the paths' j-th links as indices into :attr:`link_list`, one
        column per path in :meth:`host_paths`' order (no rows for hosts of one switch);
        None if a host is unknown or no path joins them. Cached per switch pair: do not
        change it."""
        src, dst = self.hosts.get(src_mac), self.hosts.get(dst_mac)
        if src is None or dst is None:
            return None
        self._fresh_matrices()
        return self._path_matrix(src.dpid, dst.dpid)

    @property
    def link_list(self):
        """Directed switch links ``(u, v)`` by the index :meth:`host_path_matrix` and the
        load model give them (it grows as links are first used)."""
        return self.load.links

    def _fresh_matrices(self):
        """Bring the routes up to date, and drop the path matrices of older routes."""
        self._sync(self._now)
        if self._matrices_version != self.path_service.version:
            self._matrices.clear()
            self._matrix_cells = 0
            self._matrices_version = self.path_service.version

    def _path_matrix(self, s, d):
        """Dense link indices of every shortest path from switch s to d, one column per
        path (row j: the paths' j-th links), columns in the paths' sorted order; cached per
        switch pair.

        A new pair costs two cache lookups and one copy, not a walk of its paths: below its
        first links, its matrix is its next hops' matrices side by side, the same for every
        switch with those next hops toward d (in a Clos, every edge switch of a pod toward
        any remote one), so that part is kept per (next hops, d); its first row, the link to
        each next hop repeated once per path below it, depends on d only through how many
        paths each next hop has, and is kept per (s, next hops, those counts).
        """
        if s == d:
            return np.zeros((0, 1), dtype=np.int32) if s in self.topo.adj else None
        cached = self._matrices
        idx = cached.get((s, d))
        if idx is not None:
            cached.move_to_end((s, d))
            return idx
        hops = self.path_service.hops.get(d, {}).get(s, ())
        below = cached.get(("below", hops, d))
        if below is None:
            below = self._keep(("below", hops, d), self._below(hops, d))
        else:
            cached.move_to_end(("below", hops, d))
        firsts, cols, sub = below
        if not firsts:
            return self._keep((s, d), None)
        first = cached.get(("first", s, firsts, cols))
        if first is None:
            link_index = self.load.link_index
            first = self._keep(("first", s, firsts, cols), np.repeat(
                np.array([link_index((s, n)) for n in firsts], dtype=np.int32), cols))
        else:
            cached.move_to_end(("first", s, firsts, cols))
        idx = np.empty((sub.shape[0] + 1, sub.shape[1]), dtype=np.int32)
        idx[0] = first
        idx[1:] = sub
        return self._keep((s, d), idx)

    def _below(self, hops, d):
        """``(next hops with a path to d, their path counts, their matrices side by side)``
        for a switch whose next hops toward d are ``hops``."""
        firsts, subs = [], []
        for n in hops:
            sub = self._path_matrix(n, d)
            if sub is not None and sub.shape[1]:
                firsts.append(n)
                subs.append(sub)
        if not subs:
            return (), (), None
        cols = tuple(sub.shape[1] for sub in subs)
        return tuple(firsts), cols, np.concatenate(subs, axis=1)

    def _keep(self, key, value):
        """Cache ``value`` (an array, a tuple holding one, or None) under ``key``, evicting
        the least recently used entries beyond :data:`MATRIX_CACHE_CELLS` cells; returns
        it."""
        self._matrices[key] = value
        array = value[2] if type(value) is tuple else value
        self._matrix_cells += 1 if array is None else array.size + 1
        while self._matrix_cells > MATRIX_CACHE_CELLS and len(self._matrices) > 1:
            _, old = self._matrices.popitem(last=False)
            old = old[2] if type(old) is tuple else old
            self._matrix_cells -= 1 if old is None else old.size + 1
        return value

    def flows_on(self, link):
        """Learned flows pinned across the directed link ``(u, v)``."""
        return self.load.flows_on(link)

    def switch_links(self):
        """Every directed switch link ``(u, v)``, sorted."""
        return sorted((u, v) for u, nbrs in self.topo.adj.items() for v in nbrs)

    def projected_loads(self, now):
        """``{(u, v): bit/s}`` of every directed switch link (see :meth:`link_load`)."""
        self._at(now)
        return {link: self.load.link_load(*link, now) for link in self.switch_links()}

    def pin(self, flow, path, now):
        """Pin a learned flow to ``path`` (a tuple of dpids from its sender's switch)."""
        path = tuple(path)
        if flow.path == path:
            return
        if flow.path is not None:
            self.counters["flow_moves"] += 1
            if flow.started and flow.rate_bps:
                self.load.shift(flow.path, -flow.rate_bps, now)
                self.load.shift(path, flow.rate_bps, now)
        else:
            self.counters["flow_placements"] += 1
        self.load.set_path(flow, path, now)
        # A path chosen before the flow sent anything was chosen blind: its first move once
        # measured is free; later moves wait ``min_dwell_s`` (see policies.Congestion).
        flow.placed_at = now if flow.started else None
        if self.render.renders:
            self._stale.add(flow.key)

    def unpin(self, flow):
        """Let a learned flow follow its destination's groups again."""
        if flow.path is not None:
            self.load.set_path(flow, None, self._now)
            self._stale.add(flow.key)

    def reweight(self, now):
        """Set SELECT bucket weights from path headroom (WCMP), if the policy is weighted."""
        if not self._policy.weighted:
            return
        self._sync(now)
        ps = self.path_service
        loads = self.projected_loads(now)
        weights = wcmp_weights(
            {d: ps.dist[d] for d in ps.dests}, {d: ps.hops[d] for d in ps.dests},
            lambda u, v: max(0.0, 1.0 - loads[(u, v)] / self.capacity(u, v)),
            self.config.weight_step, self.render.weights, self.config.weight_hysteresis)
        self.render.reweight(weights)

    # -- keeping the parts in step ---------------------------------------------------------
    def _sync(self, now):
        """Take the topology's change set to the path service and the renderer, and hand
        the flows it broke to the policy."""
        if not (self._rebuild or self.topo.changes):
            return  # the common case, asked several times per flow: take and make nothing
        changes = self.topo.take_changes()
        ps = self.path_service
        dests = self.topo.host_switches()
        full = self._rebuild or bool(changes.switches) or len(changes.pairs) > INCREMENTAL_PAIRS
        self._rebuild = False
        if full:
            ps.rebuild(dests)
            self.load.relink(None)
            self.render.weights = {}  # they weighed the old next hops; the next adapt re-weighs
            self.render.rebuild()
            self._policy_pins = {}
            self._pins_dirty = True
            suspects = list(self.flows)
            self.counters["route_builds"] += 1
        else:
            changed = ps.update(changes.pairs, dests)
            self.load.relink(changes.pairs)
            if any(v is None for v in changed.values()):
                suspects = list(self.flows)
            else:
                suspects = set()
                for a, b in changes.pairs:
                    suspects.update(f.key for f in self.load.flows_on((a, b)))
                    suspects.update(f.key for f in self.load.flows_on((b, a)))
                for mac in changes.hosts:
                    suspects.update(self.load.flows_of(mac))
                    suspects.update(self.load.flows_to(mac))
            self.render.update(changed, changes.pairs, changes.hosts)
            self.counters["route_updates"] += 1
        broken = []
        for key in sorted(suspects):
            flow = self.flows.get(key)
            if flow is None:
                continue
            src, dst = self.hosts.get(flow.src), self.hosts.get(flow.dst)
            if src is None or dst is None:
                self._forget_flow(key, now)
            elif flow.path is not None and not (
                    flow.path[0] == src.dpid and flow.path[-1] == dst.dpid
                    and ps.allows(flow.path)):
                self.load.set_path(flow, None, now)
                self._stale.add(key)
                broken.append(flow)
            elif full:
                self._stale.add(key)
        if broken:
            self.counters["flows_rerouted"] += len(broken)
            self._policy.repair(self, broken, now)
        self._policy.on_routes(self, now)

    def _render_pins(self):
        """Redo the per-flow rules of learned flows and pins that changed."""
        render = self.render
        if not render.renders:
            # Nothing holds rules (the twin): a pin per flow of a million-flow intent would
            # be built at every flush only to be dropped.
            render.stale_owners.clear()
            self._stale = set()
            self._pins_dirty = False
            self._pins_seen = self._policy.pins_version
            return
        stale = self._stale | {o[1] for o in render.stale_owners if o[0] == "flow"}
        pin_owners = {o for o in render.stale_owners if o[0] == "pin"}
        render.stale_owners.clear()
        self._stale = set()
        for key in sorted(stale):
            flow = self.flows.get(key)
            src = dst = None
            if flow is not None:
                src, dst = self.hosts.get(flow.src), self.hosts.get(flow.dst)
            if src is None or dst is None:
                render.set_owner(("flow", key), ())
            else:
                # Owned by the flow's plain key, which the collector stops tracking (see
                # Flow.key): the renderer keeps its owners in many places.
                render.set_owner(("flow", flow.key),
                                 [(FlowKey.match(flow.key), PRIO_FLOW, src, dst, flow.path,
                                   True)])
        if self._pins_dirty or self._policy.pins_version != self._pins_seen:
            self._pins_dirty = False
            self._pins_seen = self._policy.pins_version
            pins = {("pin", fields, priority): (fields, priority, src, dst, path, False)
                    for fields, priority, path, src, dst in self._policy.pins(self)}
            for owner in set(self._policy_pins) - set(pins):
                render.set_owner(owner, ())
            for owner, pin in pins.items():
                if self._policy_pins.get(owner) != pin or owner in pin_owners:
                    render.set_owner(owner, [pin])
            self._policy_pins = pins
        else:
            for owner in pin_owners:
                pin = self._policy_pins.get(owner)
                render.set_owner(owner, [pin] if pin else ())

    def flush(self, now):
        """Messages that bring every switch from what it holds to what it should hold.

        Only differences are sent: groups added or modified first (those that only output
        before those that chain to them), then flow adds, flow deletions, and group deletions
        last, so no rule ever points at a missing group.
        """
        self._at(now)
        self._sync(now)
        self._render_pins()
        msgs = self.render.flush()
        self.counters["flow_mods"] = self.render.flow_mods
        self.counters["group_mods"] = self.render.group_mods
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
        adj = self.topo.adj
        pinned = self.load.pinned_counts()
        out = []
        for u, v in self.switch_links():
            cap = self.capacity(u, v)
            rate = self.load.ports.measured_bps(u, adj[u][v])
            out.append({"src": u, "src_port": adj[u][v], "dst": v, "dst_port": adj[v][u],
                        "capacity_bps": cap, "rate_bps": rate, "utilization": rate / cap,
                        "pinned_flows": pinned.get((u, v), 0)})
        return out

    def status(self):
        """A JSON-able snapshot: counts the runner waits on, load summary and counters."""
        loads = self.link_loads()
        utils = [x["utilization"] for x in loads]
        counters = dict(self.counters)
        counters.update(self.topo.counters)
        counters["flows"] = len(self.flows)
        counters["pinned_flows"] = sum(1 for f in self.flows.values() if f.path is not None)
        counters["elephants"] = sum(1 for f in self.flows.values() if f.elephant)
        counters["intents"] = 0
        counters["route_units_rendered"] = self.render.units_rendered
        counters.update(self._policy.gauges(self))
        return {
            "policy": self.policy,
            "fast_failover": self.fast_failover,
            "switches": len(self.ports),
            "links": len(loads) // 2,
            "hosts": len(self.hosts),
            "pending": self.dirty,
            "rules": self.render.rule_count(),
            "groups": self.render.group_count(),
            "utilization": {
                "links": len(utils),
                "mean": sum(utils) / len(utils) if utils else 0.0,
                "max": max(utils, default=0.0),
                "hot": sum(1 for u in utils if u > self.config.hot_util),
            },
            "counters": counters,
            "discovery": self.discovery_status(),
            "health": self.health.status(self._now),
        }

    def discovery_status(self):
        """What authenticated discovery refused: probes forged, stale or from host ports,
        the host ports flagged (with how many probes came from each), host moves refused
        (location hijacking) with the newest ones."""
        c, topo = self.counters, self.topo
        return {"lldp_accepted": c["lldp_accepted"], "lldp_forged": c["lldp_forged"],
                "lldp_stale": c["lldp_stale"], "lldp_from_host_port": c["lldp_from_host_port"],
                "flagged_host_ports": [{"dpid": d, "port": p, "probes": n}
                                       for (d, p), n in sorted(self.flagged_ports.items())],
                "host_moves_refused": topo.counters["host_moves_refused"],
                "refused_moves": list(topo.refused_moves)}

    def learned_flows(self, src_mac=None, dst_mac=None):
        """Learned flows (optionally of one host pair), JSON-able, sorted by 5-tuple."""
        return [{"flow": list(f.key), "src": f.src, "dst": f.dst, "rate_bps": f.rate_bps,
                 "path": list(f.path) if f.path else None, "elephant": f.elephant,
                 "demand_bps": f.demand_bps}
                for _, f in sorted(self.flows.items())
                if src_mac in (None, f.src) and dst_mac in (None, f.dst)]

    def paths(self, src_mac, dst_mac, flow_key=None, hashed=False):
        """Every switch path (list of dpids) the installed rules allow from src to dst host.

        Follows the rules and groups the core has sent (what :meth:`flush` last returned),
        for an IPv4 packet of the host pair, or of the flow ``flow_key`` (a 5-tuple) if given:
        every bucket of a SELECT group (with ``hashed``, the one Open vSwitch picks), the
        first live bucket of a FAST_FAILOVER group (controllers/tables.py).
        """
        return installed_paths(self.installed, self.links, self.ports, self.hosts.get(src_mac),
                               self.hosts.get(dst_mac), flow_key, hashed)

    # -- the model as if discovered --------------------------------------------------------
    def load_fabric(self, g, now=0.0, capacity_scale=1.0):
        """Learn a fabric model as discovery would (for tests and the flow-level simulator).

        Also takes the model's link capacities (times ``capacity_scale``) as
        ``link_capacity_bps``.
        """
        from fabric.model import host_switch, hosts, switches
        self._at(now)
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
