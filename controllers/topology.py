"""Topology state: the switches, links and hosts a controller has discovered.

One job: turn discovery events (a switch connected or left, a port went up or down, an LLDP
probe arrived, a host announced itself) into the current switch adjacency and host table,
and say what changed. Every event method returns nothing; what it changed accumulates in
:attr:`TopologyState.changes` until the routing core takes it with :meth:`take_changes`, so a
burst of events (a fabric coming up, a switch dying with all its links) is handled as one
change set. Costs are per event: nothing here scans every link or host to answer one event.

It must not compute paths, keep loads, build rules, import Ryu or read a clock (``now`` is an
argument where time matters).
"""

import collections
import dataclasses

Host = collections.namedtuple("Host", "mac ip dpid port")

# Refused host moves remembered for status (the newest ones).
REFUSED_MOVES_KEPT = 20

# With no probe back on any link for this many link timeouts, links expire by the clock.
SILENT_ROUNDS = 4

# Hosts learned at one port: a host announcing invented MACs (an ARP flood, metered at its
# switch) cannot grow the host table, and every switch's per-host rules, beyond this.
HOSTS_PER_PORT_MAX = 16


@dataclasses.dataclass
class Changes:
    """What changed since the last :meth:`TopologyState.take_changes`.

    Attributes
    ----------
    pairs : set
        Switch pairs ``(a, b)`` (``a < b``) whose adjacency appeared, vanished or moved to
        other ports.
    switches : set
        Switches that connected or left (their whole neighbourhood may have changed).
    hosts : set
        MACs of hosts learned, moved or forgotten.
    """

    pairs: set = dataclasses.field(default_factory=set)
    switches: set = dataclasses.field(default_factory=set)
    hosts: set = dataclasses.field(default_factory=set)

    def __bool__(self):
        return bool(self.pairs or self.switches or self.hosts)


class TopologyState:
    """Switches with their live ports, inter-switch links (from probes) and hosts.

    Parameters
    ----------
    link_timeout_s : float
        A link no probe confirmed for this long is dropped by :meth:`expire_links`.

    Attributes
    ----------
    ports : dict
        ``{dpid: set of live port numbers}`` of connected switches.
    links : dict
        ``{(dpid, port): (peer dpid, peer port, last seen)}``: one entry per direction a
        probe was seen in.
    adj : dict
        ``{dpid: {neighbour dpid: local port}}`` over links whose both ports are live
        (symmetric; where two switches share several links the lowest pair of ports counts).
    hosts : dict
        ``{mac: Host}``.
    excluded : set
        Links kept out of the adjacency although up (gray or flapping, see
        controllers/health.py), by their ends ``((dpid, port), (dpid, port))`` sorted: they
        keep their link entries and their probes, only routes leave them.
    """

    def __init__(self, link_timeout_s=15.0):
        self.link_timeout_s = link_timeout_s
        self.ports = {}
        self.links = {}
        self.adj = {}
        self.hosts = {}
        self.excluded = set()
        self.changes = Changes()
        self.counters = collections.Counter()            # what happened to links, for status
        self._reported_at = {}                          # dpid -> newest probe it reported
        self._transit = {}          # (dpid, port) -> (newest probe's sent at, its transit s,
                                    # the transit of the one before it, or None)
        self.refused_moves = collections.deque(maxlen=REFUSED_MOVES_KEPT)
        self._ips = {}                                  # ip -> mac
        self._at_port = collections.defaultdict(set)    # (dpid, port) -> macs
        self._at_switch = collections.defaultdict(set)  # dpid -> macs
        self._linked = collections.Counter()            # (dpid, port) -> link entries using it
        self._was_linked = set()                        # (dpid, port) that had a link, while up
        self._between = collections.defaultdict(set)    # (a, b), a < b -> {((a, pa), (b, pb))}

    def take_changes(self):
        """The accumulated change set, and a fresh one for what comes next."""
        changes, self.changes = self.changes, Changes()
        return changes

    # -- switches and ports ----------------------------------------------------------------
    def switch_enter(self, dpid, ports):
        """A switch connected with these live ports (it may have been known before)."""
        if dpid in self.ports:
            self.switch_leave(dpid)
        self.ports[dpid] = set(ports)
        self.adj[dpid] = {}
        self.changes.switches.add(dpid)

    def switch_leave(self, dpid):
        """A switch disconnected: its links and hosts go with it."""
        if dpid not in self.ports:
            return
        for port in list(self.ports[dpid]):
            self._port_gone(dpid, port)
        for key in [k for k in self.links if k[0] == dpid]:
            self._drop_entry(key)
        for nbr in list(self.adj.get(dpid, ())):
            self._refresh_pair(dpid, nbr)
        del self.ports[dpid]
        del self.adj[dpid]
        self._reported_at.pop(dpid, None)
        self.changes.switches.add(dpid)

    def port_up(self, dpid, port):
        """A port came up; a link on it counts once a probe confirms it."""
        if dpid in self.ports:
            self.ports[dpid].add(port)

    def port_down(self, dpid, port):
        """A port went down: its link and the hosts behind it are gone at once."""
        if dpid in self.ports:
            self.counters["ports_down"] += 1
            self._port_gone(dpid, port)

    def _port_gone(self, dpid, port):
        self.ports[dpid].discard(port)
        self._was_linked.discard((dpid, port))
        self.drop_link_at(dpid, port)
        for mac in list(self._at_port.get((dpid, port), ())):
            self.forget_host(mac)

    # -- links -----------------------------------------------------------------------------
    def link_seen(self, src_dpid, src_port, dst_dpid, dst_port, now, arrived_at=None):
        """A probe sent out of (src_dpid, src_port) at ``now`` arrived at (dst_dpid, dst_port)
        (reported to us at ``arrived_at``, if known: see :meth:`probe_delay_s`).

        Returns
        -------
        bool
            Whether this is a new link (or one that moved).
        """
        if src_dpid not in self.ports or dst_dpid not in self.ports:
            return False
        self._reported_at[dst_dpid] = max(now, self._reported_at.get(dst_dpid, now))
        key = (src_dpid, src_port)
        old = self.links.get(key)
        if arrived_at is not None:
            last = self._transit.get(key)
            if last is None or now > last[0]:
                self._transit[key] = (now, max(0.0, arrived_at - now),
                                      None if last is None else last[1])
        if old is not None and old[:2] == (dst_dpid, dst_port):
            self.links[key] = (dst_dpid, dst_port, max(now, old[2]))
            return False
        if old is not None:
            self.counters["links_moved"] += 1
            self._drop_entry(key)
        self.links[key] = (dst_dpid, dst_port, now)
        for end in (key, (dst_dpid, dst_port)):
            self._linked[end] += 1
            self._was_linked.add(end)
            # A port that carries a link has no hosts: forget any learned there by mistake.
            for mac in list(self._at_port.get(end, ())):
                self.forget_host(mac)
        self._between[_pair(src_dpid, dst_dpid)].add(_ends(key, (dst_dpid, dst_port)))
        self._refresh_pair(src_dpid, dst_dpid)
        return True

    def expire_links(self, now):
        """Drop links no probe confirmed for ``link_timeout_s`` (called once per probe round).

        A link's time is when its newest confirming probe was *sent* (probes carry it), and
        it is counted up to the newest probe sent and reported by the same switch (the one
        the probes arrive at), not up to ``now``: a controller that falls behind (its CPU
        shared with a busy emulation, one switch's packet-ins queued behind others') works
        through that switch's probes late, and in order of sending, and must not take that
        for links dying. Only when a switch has reported no probe at all for
        :data:`SILENT_ROUNDS` timeouts does ``now`` count (all its links went silent).
        """
        silent = SILENT_ROUNDS * self.link_timeout_s
        for key, (dst, _, seen) in list(self.links.items()):
            reference = self._reported_at.get(dst)
            if reference is None or now - reference > silent:
                reference = now
            if reference - seen > self.link_timeout_s and key in self.links:
                self.counters["links_expired"] += 1
                self.drop_link_at(*key)

    def drop_link_at(self, dpid, port):
        """Forget every link entry that starts or ends at (dpid, port)."""
        peer = self.links.get((dpid, port))
        if peer is not None:
            self._drop_entry((dpid, port))
            if self.links.get(peer[:2], (None, None))[:2] == (dpid, port):
                self._drop_entry(peer[:2])
        if self._linked.get((dpid, port)):
            for key in [k for k, v in self.links.items() if v[:2] == (dpid, port)]:
                self._drop_entry(key)

    def _drop_entry(self, key):
        dst = self.links.pop(key)
        self._transit.pop(key, None)
        far = dst[:2]
        for end in (key, far):
            self._linked[end] -= 1
            if not self._linked[end]:
                del self._linked[end]
        reverse = self.links.get(far)
        if reverse is None or reverse[:2] != key:
            between = self._between.get(_pair(key[0], far[0]))
            if between is not None:
                between.discard(_ends(key, far))
        self._refresh_pair(key[0], far[0])

    def set_excluded(self, link, excluded):
        """Keep ``link`` (its two ends, sorted) out of the adjacency, or let it back in. It
        may be unknown or down now: the decision holds when it is (re)learned."""
        ends = _ends(*link)
        if excluded == (ends in self.excluded):
            return
        if excluded:
            self.excluded.add(ends)
        else:
            self.excluded.discard(ends)
        self.counters["links_excluded" if excluded else "links_readmitted"] += 1
        if ends[0][0] in self.adj and ends[1][0] in self.adj:
            self._refresh_pair(ends[0][0], ends[1][0])

    def _refresh_pair(self, a, b):
        """Recompute the adjacency of switches a and b from the links between them."""
        pair = _pair(a, b)
        live = sorted(e for e in self._between.get(pair, ())
                      if e not in self.excluded and
                      e[0][1] in self.ports.get(e[0][0], ()) and
                      e[1][1] in self.ports.get(e[1][0], ()))
        old = self.adj.get(a, {}).get(b), self.adj.get(b, {}).get(a)
        if live:
            (x, px), (y, py) = live[0]
            new = (px, py) if x == a else (py, px)
            self.adj[a][b], self.adj[b][a] = new
        else:
            new = (None, None)
            for s, t in ((a, b), (b, a)):
                if s in self.adj:
                    self.adj[s].pop(t, None)
        if not self._between.get(pair) and pair in self._between:
            del self._between[pair]
        if old != new:
            self.changes.pairs.add(pair)

    def newest_probe(self, dpid):
        """When the newest probe that switch ``dpid`` reported was sent, or None."""
        return self._reported_at.get(dpid)

    def is_link_port(self, dpid, port):
        """Does (dpid, port) face another switch?"""
        return (dpid, port) in self._linked

    def faces_switch(self, dpid, port):
        """Does (dpid, port) face another switch, or did it since it last came up? A link
        that expired (its probes late) may still carry packets of remote hosts: a host is
        learned from its traffic only at a port that never had a link while up."""
        return (dpid, port) in self._linked or (dpid, port) in self._was_linked

    def edge_ports(self):
        """Live ports that face hosts (no link discovered on them), as {dpid: [ports]}."""
        return {dpid: sorted(p for p in ports if (dpid, p) not in self._linked)
                for dpid, ports in self.ports.items()}

    def peer(self, dpid, port):
        """The (dpid, port) at the other end of the link on (dpid, port), or None."""
        entry = self.links.get((dpid, port))
        if entry is not None:
            return entry[:2]
        if self._linked.get((dpid, port)):   # seen only from the other side: rare, scanned
            for key, v in self.links.items():
                if v[:2] == (dpid, port):
                    return key
        return None

    def peers(self):
        """``{(dpid, port): (peer dpid, peer port)}`` in both directions of every link."""
        out = {}
        for (a, pa), (b, pb, _) in self.links.items():
            out[(a, pa)] = (b, pb)
            out[(b, pb)] = (a, pa)
        return out

    def probe_lag_s(self):
        """``{(dpid, port): seconds}`` for every link end that probes were seen leaving: how
        long before the newest probe seen over the other links of both its switches (those
        its far switch reported, those its near switch sent) the newest probe out of it was
        sent. A probe round is sent at one instant, so a healthy link lags by nothing once
        the round is reported; a probe that waits behind a standing queue (or is dropped at
        its tail) makes its link lag by rounds. Against both switches: the controller
        working late through one switch's packet-ins delays all the probes that switch
        reports, and a switch whose connection is backlogged sends all its probes late."""
        sent = {}
        for (src, _), (_, _, seen) in self.links.items():
            sent[src] = max(seen, sent.get(src, seen))
        out = {}
        for key, (dst, _, seen) in self.links.items():
            newest = self._reported_at.get(dst)
            if newest is not None:
                out[key] = max(0.0, min(newest, sent[key[0]]) - seen)
        return out

    def probe_delay_s(self):
        """``{(dpid, port): seconds}`` for every link end whose last two probes were reported
        with their arrival time: how much longer than the quickest probes of both its
        switches (those its far switch reported, those its near switch sent) its probes took
        to arrive. The finer half of :meth:`probe_lag_s`: a probe that waits a second behind
        a queue arrives before the next round, so it lags by nothing once reported, but it
        took a second longer. A controller that works late delays every probe it reports
        alike, or all those of one switch, and that cancels out against the same switches'
        quickest probes. Each end counts the smaller excess of its last two probes, each
        against the quickest newest (or previous) probes of its switches, so one probe held
        up once (the controller busy between two packet-ins) is no delay; one pass over the
        links."""
        took = {key: t[1:] for key, t in self._transit.items()
                if t[2] is not None and key in self.links}
        into, out_of = {}, {}   # switch -> quickest (newest, previous) probe into / out of it
        for key, s in took.items():
            for per, dpid in ((into, self.links[key][0]), (out_of, key[0])):
                q = per.get(dpid, s)
                per[dpid] = (min(s[0], q[0]), min(s[1], q[1]))
        out = {}
        for key, s in took.items():
            a, b = into[self.links[key][0]], out_of[key[0]]
            out[key] = max(0.0, min(s[0] - max(a[0], b[0]), s[1] - max(a[1], b[1])))
        return out

    def link_count(self):
        """Inter-switch links in the adjacency (each counted once)."""
        return sum(len(n) for n in self.adj.values()) // 2

    # -- hosts -----------------------------------------------------------------------------
    def learn_host(self, mac, ip, dpid, port):
        """A host announced itself at (dpid, port); returns whether anything changed.

        A host known at another port that is still up is not moved: a host that moves
        unplugs first (its port goes down and it is forgotten), and anything else is a
        host claiming another's MAC (location hijacking). The refusal is counted
        (``host_moves_refused``) and kept in :attr:`refused_moves`. A port that already has
        :data:`HOSTS_PER_PORT_MAX` hosts learns no other (``hosts_refused_port_full``).
        """
        host = Host(mac, ip, dpid, port)
        old = self.hosts.get(mac)
        if old == host:
            return False
        if old is not None and (old.dpid, old.port) != (dpid, port) and \
                old.port in self.ports.get(old.dpid, ()):
            self.counters["host_moves_refused"] += 1
            self.refused_moves.append({"mac": mac, "ip": ip, "at": [old.dpid, old.port],
                                       "claimed": [dpid, port]})
            return False
        if old is None and len(self._at_port.get((dpid, port), ())) >= HOSTS_PER_PORT_MAX:
            self.counters["hosts_refused_port_full"] += 1
            return False
        if old is not None:
            self._unindex(old)
        self.hosts[mac] = host
        self._ips[ip] = mac
        self._at_port[(dpid, port)].add(mac)
        self._at_switch[dpid].add(mac)
        self.changes.hosts.add(mac)
        return True

    def forget_host(self, mac):
        host = self.hosts.pop(mac, None)
        if host is not None:
            self._unindex(host)
            self.changes.hosts.add(mac)

    def _unindex(self, host):
        if self._ips.get(host.ip) == host.mac:
            del self._ips[host.ip]
        at = self._at_port.get((host.dpid, host.port))
        if at is not None:
            at.discard(host.mac)
            if not at:
                del self._at_port[(host.dpid, host.port)]
        at = self._at_switch.get(host.dpid)
        if at is not None:
            at.discard(host.mac)
            if not at:
                del self._at_switch[host.dpid]

    def hosts_at(self, dpid):
        """Hosts attached to switch ``dpid``, sorted by MAC."""
        return sorted((self.hosts[m] for m in self._at_switch.get(dpid, ())),
                      key=lambda h: h.mac)

    def has_hosts_at(self, dpid, port):
        """Is any host attached at (dpid, port)?"""
        return bool(self._at_port.get((dpid, port)))

    def host_switches(self):
        """Connected switches with at least one host: the destinations of routes."""
        return [d for d in self._at_switch if d in self.adj]

    def host_by_ip(self, ip):
        """The host with IPv4 address ``ip``, or None."""
        mac = self._ips.get(ip)
        return None if mac is None else self.hosts.get(mac)

    def host_by_ref(self, ref):
        """The host named by its MAC or its IPv4 address, or None."""
        if not isinstance(ref, str):
            return None
        return self.hosts.get(ref.lower()) or self.host_by_ip(ref)


def _pair(a, b):
    return (a, b) if a < b else (b, a)


def _ends(x, y):
    return (x, y) if x < y else (y, x)
