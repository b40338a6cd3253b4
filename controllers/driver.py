"""The controller's bookkeeping between the routing core and the switches, pure and timed by
the caller.

A :class:`FabricDriver` wraps one :class:`~controllers.core.RoutingCore` and keeps what the
core must not know about and the Ryu app must not decide:

- barriers: every batch that changes a switch ends with a :class:`~controllers.rules.Barrier`
  on it, a switch stays *unconfirmed* until the reply to its last barrier, and
  :class:`Installs` times installation from these replies;
- ARP answers held back: the answer to a host whose routes are still to be installed waits
  until every switch confirmed them (at most ``hold_max_s``);
- statistics rounds: every ``stats_interval_s``, port statistics of every switch (and flow
  statistics of the per-flow rules when the policy learns flows); the last reply ends the
  round with ``adapt`` then ``flush``, and a round still open when the next is due is closed
  as late;
- the time-driven rest: flush pending changes, send LLDP probes and expire links every
  ``lldp_interval_s``.

Shaped like Faucet's ``Valve``: each method takes ``now`` (seconds, any monotonic origin) and
returns plain messages (controllers/rules.py) for the app to serialize and send in order;
:meth:`FabricDriver.tick` also says when it wants to be called next. It must not import Ryu,
read a clock, sleep, or touch a socket, and it decides nothing about paths (the core does).
tests/test_driver.py drives it with mocked time on a fake fabric.
"""

import collections
import itertools

from controllers.rules import (COOKIE_FLOW, Barrier, FlowMod, FlowStatsRequest, GroupMod,
                               PacketOut, PortStatsRequest)

TICK_S = 0.05
HOLD_MAX_S = 1.0
# A statistics round still unanswered after this many intervals is closed as late.
LATE_ROUNDS = 4
XID_MODULO = 2 ** 32


class Installs:
    """Timing of rule and group installation, confirmed by barriers (for ``status``).

    ``busy_s`` adds up the time during which some switch had unconfirmed changes, so the rate
    ``mods / busy_s`` does not count the idle gaps between discovery steps; the largest single
    batch is timed from its first message queued to its last barrier answered.
    """

    def __init__(self):
        self.mods = 0
        self.first_mod_s = None
        self.last_confirmed_s = None
        self.busy_s = 0.0
        self._busy_since = None
        self._waiting = collections.defaultdict(collections.deque)  # dpid -> (xid, batch)
        self.largest = None

    def batch(self, now, mods, barriers):
        """A batch of ``mods`` rule and group changes was queued at ``now``, confirmed by
        ``barriers`` (``{dpid: xid}``)."""
        if mods and self.first_mod_s is None:
            self.first_mod_s = now
        self.mods += mods
        if barriers:
            if self._busy_since is None:
                self._busy_since = now
            batch = [now, mods, len(barriers)]   # queued at, mods, barriers unanswered
            for dpid, xid in barriers.items():
                self._waiting[dpid].append((xid, batch))

    def confirmed(self, dpid, xid, now, idle):
        """Barrier ``xid`` of ``dpid`` was answered at ``now``; ``idle``: no switch is left
        unconfirmed."""
        # Barrier replies come in order on a switch: this one answers every earlier barrier
        # (xids are 32-bit counters: "earlier" is modulo 2**32).
        waiting = self._waiting.get(dpid)
        while waiting and (xid - waiting[0][0]) % XID_MODULO < XID_MODULO // 2:
            batch = waiting.popleft()[1]
            batch[2] -= 1
            if not batch[2] and (self.largest is None or batch[1] > self.largest["mods"]):
                self.largest = {"mods": batch[1], "seconds": now - batch[0],
                                "per_s": batch[1] / max(now - batch[0], 1e-9)}
        self.last_confirmed_s = now
        if idle and self._busy_since is not None:
            self.busy_s += now - self._busy_since
            self._busy_since = None

    def forget(self, dpid):
        """A switch left: its barriers will never be answered."""
        for _, batch in self._waiting.pop(dpid, ()):
            batch[2] -= 1

    def as_dict(self):
        return {"mods": self.mods, "first_mod_s": self.first_mod_s,
                "last_confirmed_s": self.last_confirmed_s, "busy_s": self.busy_s,
                "per_busy_s": self.mods / self.busy_s if self.busy_s else None,
                "largest_batch": self.largest}


class FabricDriver:
    """Barriers, held ARP answers, statistics rounds and timers around one routing core.

    Parameters
    ----------
    core : controllers.core.RoutingCore
        The routing core; the driver calls only its public methods.
    stats_interval_s : float
        Period of statistics rounds (> 0; the caller validates it).
    lldp_interval_s : float
        Period of LLDP probe rounds and link expiry.
    tick_s : float
        Pending changes are flushed at most this long after :meth:`tick` last ran, so a
        burst of hosts announcing themselves costs one rebuild, not one per host.
    hold_max_s : float
        Longest an ARP answer waits for a switch that does not confirm its changes.
    new_xid : callable, optional
        ``new_xid(dpid) -> int``: the transaction id of the next request to a switch. The
        app draws them from the switch connection's own counter, so its other requests never
        share an id with ours; by default one 32-bit counter.

    Examples
    --------
    >>> from controllers.core import RoutingCore
    >>> driver = FabricDriver(RoutingCore(), stats_interval_s=1.0, lldp_interval_s=2.0)
    >>> driver.tick(0.0)
    ([], 1.0)
    """

    def __init__(self, core, stats_interval_s, lldp_interval_s, tick_s=TICK_S,
                 hold_max_s=HOLD_MAX_S, new_xid=None):
        self.core = core
        self.stats_interval_s = stats_interval_s
        self.lldp_interval_s = lldp_interval_s
        self.tick_s = tick_s
        self.hold_max_s = hold_max_s
        self._xids = itertools.count(1)
        self._new_xid = new_xid or self._next_xid
        self.unconfirmed = {}   # dpid -> xid of the barrier that confirms its last changes
        self.installs = Installs()
        self.counters = collections.Counter()   # stats_rounds, stats_rounds_late
        self._round = {}        # (dpid, xid) -> (kind, rows so far) of the statistics round
        self._after_flush = []  # PacketOuts that must follow the next flush
        self._held = []         # (since, PacketOuts) waiting for every switch's barrier reply
        self._next_lldp_s = None
        self._next_stats_s = None
        self._round_started_s = None

    # -- sending ---------------------------------------------------------------------------
    def _next_xid(self, dpid):
        return next(self._xids) % XID_MODULO

    def _confirm(self, msgs, now):
        """``msgs`` followed by a barrier on every connected switch whose rules or groups
        they change, so ``status`` can say when the changes are in force, not only sent."""
        barriers, mods = {}, 0
        for msg in msgs:
            if not isinstance(msg, PacketOut) and msg.dpid in self.core.ports:
                barriers[msg.dpid] = None
                mods += isinstance(msg, (FlowMod, GroupMod))
        out = list(msgs)
        for dpid in barriers:
            barriers[dpid] = self.unconfirmed[dpid] = self._new_xid(dpid)
            out.append(Barrier(dpid, barriers[dpid]))
        self.installs.batch(now, mods, barriers)
        return out

    def _release_held(self, now):
        """Held ARP answers, once every switch confirmed its changes: the route to a host just
        learned spans several switches, and the asker's first packet must find it on all of
        them. A switch that never answers delays them by at most ``hold_max_s``."""
        if self._held and (not self.unconfirmed or now - self._held[0][0] >= self.hold_max_s):
            held, self._held = self._held, []
            return [msg for _, msgs in held for msg in msgs]
        return []

    # -- time ------------------------------------------------------------------------------
    def tick(self, now):
        """Everything that is due at ``now``.

        Closes a statistics round still open when the next is due (counted in
        ``stats_rounds_late``) and starts the next; every ``lldp_interval_s`` expires links
        and probes every live port; flushes pending changes; releases held ARP answers.

        Returns
        -------
        messages : list
            To send, in order.
        next_deadline_s : float
            When the next periodic duty (a statistics or LLDP round, a held answer's limit) is
            due. Events in between may leave changes pending: call again within ``tick_s``
            of such an event.
        """
        out = []
        if self._next_stats_s is None:
            self._next_stats_s = now + self.stats_interval_s
        if now >= self._next_stats_s:
            self._next_stats_s = now + self.stats_interval_s
            if self._round and now - self._round_started_s < LATE_ROUNDS * self.stats_interval_s:
                # Still answering (a controller behind on a large fabric's flow statistics):
                # another round now would only pile up; the next starts once this one ended
                # (see _end_round).
                self.counters["stats_rounds_waited"] += 1
            else:
                if self._round:
                    self.counters["stats_rounds_late"] += 1
                    out += self._end_round(now)
                out += self._start_round(now)
        if self._next_lldp_s is None or now >= self._next_lldp_s:
            self._next_lldp_s = now + self.lldp_interval_s
            out += self.core.expire_links(now)
            out += self.core.lldp_probes(now)
        if self.core.dirty:
            out += self._confirm(self.core.flush(now), now)
        if self._after_flush:
            self._held.append((now, self._after_flush))
            self._after_flush = []
        out += self._release_held(now)
        deadlines = [self._next_stats_s, self._next_lldp_s]
        if self._held:
            deadlines.append(self._held[0][0] + self.hold_max_s)
        return out, min(deadlines)

    # -- statistics ------------------------------------------------------------------------
    def _start_round(self, now):
        """Port statistics of every switch, and flow statistics of the per-flow rules when
        the policy learns flows (their byte counters are what it measures flows by)."""
        self._round_started_s = now
        learning = self.core.learns_flows
        reqs = []
        for dpid in sorted(self.core.ports):
            reqs.append(PortStatsRequest(dpid, self._new_xid(dpid)))
            if learning:
                reqs.append(FlowStatsRequest(dpid, self._new_xid(dpid), COOKIE_FLOW))
        for req in reqs:
            self._round[(req.dpid, req.xid)] = (type(req), [])
        return reqs

    def _end_round(self, now):
        self._round.clear()
        self.counters["stats_rounds"] += 1
        # The next round waits at least as long as this one took, so statistics take at most
        # half of a controller that answers them slower than the interval.
        took = now - (self._round_started_s if self._round_started_s is not None else now)
        self._next_stats_s = max(self._next_stats_s or now, now + took)
        self.core.adapt(now)
        return self._confirm(self.core.flush(now), now)

    def stats_reply(self, dpid, xid, rows, now, more=False):
        """A part of the reply to a statistics request of the round.

        Parameters
        ----------
        dpid, xid : int
            The switch and the id of the request answered.
        rows : list
            ``[(port_no, counters), ...]`` of physical ports (counters a
            :class:`~controllers.health.PortCounters`, or only the transmitted bytes) for a
            :class:`~controllers.rules.PortStatsRequest`, ``[(match, byte_count), ...]`` for a
            :class:`~controllers.rules.FlowStatsRequest` (a match as
            :meth:`RoutingCore.flow_stats` takes it).
        now : float
            Arrival time.
        more : bool
            More parts of this reply follow (an OpenFlow multipart reply).

        Returns
        -------
        list
            The messages of ``adapt`` and ``flush`` if this was the round's last reply, else
            empty. A reply to a request the driver does not know (of a round closed as late)
            is ignored.
        """
        entry = self._round.get((dpid, xid))
        if entry is None:
            return []
        kind, parts = entry
        parts.extend(rows)
        if more:
            return []
        del self._round[(dpid, xid)]
        if kind is PortStatsRequest:
            self.core.port_stats(dpid, dict(parts), now)
        else:
            self.core.flow_stats(dpid, parts, now)
        return [] if self._round else self._end_round(now)

    # -- switches --------------------------------------------------------------------------
    def barrier_reply(self, dpid, xid, now):
        """A switch answered barrier ``xid``: the changes before it are in force. Returns held
        ARP answers if no switch is left unconfirmed."""
        if self.unconfirmed.get(dpid) == xid:
            del self.unconfirmed[dpid]
        self.installs.confirmed(dpid, xid, now, idle=not self.unconfirmed)
        return self._release_held(now)

    def switch_enter(self, dpid, ports, now):
        """A switch connected with ``ports`` (see :meth:`RoutingCore.switch_enter`)."""
        return self._confirm(self.core.switch_enter(dpid, ports, now), now)

    def switch_gone(self, dpid, now):
        """A switch disconnected: nothing it was asked will be answered."""
        self.unconfirmed.pop(dpid, None)
        self.installs.forget(dpid)
        for key in [k for k in self._round if k[0] == dpid]:
            del self._round[key]
        out = self._confirm(self.core.switch_leave(dpid, now), now)
        return out + self._release_held(now)

    def port_status(self, dpid, port, up, now):
        """A port went up or down; routes change at once, not at the next tick: without local
        protection this is the outage."""
        out = self._confirm(self.core.port_status(dpid, port, up, now), now)
        return out + self._confirm(self.core.flush(now), now)

    def probe_in(self, dpid, in_port, probe, eth_src, now):
        """An LLDP frame claiming to be our probe arrived; the core checks it (see
        :meth:`RoutingCore.probe_in`)."""
        return self._confirm(self.core.probe_in(dpid, in_port, probe, eth_src, now), now)

    def link_seen(self, src_dpid, src_port, dst_dpid, dst_port, now, sent_at=None):
        """A probe known to be ours arrived (see :meth:`RoutingCore.link_seen`)."""
        return self._confirm(self.core.link_seen(src_dpid, src_port, dst_dpid, dst_port, now,
                                                 sent_at=sent_at), now)

    # -- packets ---------------------------------------------------------------------------
    def packet_in_arp(self, dpid, in_port, arp, data, now):
        """An ARP packet reached the controller (see :meth:`RoutingCore.packet_in_arp`).

        If it left routes to install (a host just learned), the answer is held: it follows
        the next :meth:`tick`'s flush and is sent once every switch confirmed that flush.
        Hosts announce themselves in bursts, and one rebuild for the burst sends a fraction
        of the rules that one per host would (each shifts the detours).
        """
        answer = self.core.packet_in_arp(dpid, in_port, arp, data, now)
        if self.core.dirty:
            self._after_flush.extend(answer)
            return []
        return answer

    def packet_in_flow(self, dpid, in_port, flow_key, src_mac, dst_mac, data, now):
        """The first packet of a flow (see :meth:`RoutingCore.packet_in_flow`)."""
        return self._confirm(self.core.packet_in_flow(dpid, in_port, flow_key, src_mac,
                                                      dst_mac, data, now), now)

    # -- requests from outside -------------------------------------------------------------
    def apply(self, call, *args, now):
        """Run a core call that changes state (``call(*args, now)``, e.g.
        ``core.set_policy``), then flush: a request's changes go out at once."""
        out = self._confirm(call(*args, now) or [], now)
        return out + self._confirm(self.core.flush(now), now)

    def status(self):
        """The core's status with the switches' side of it: ``pending`` also while a switch
        has not confirmed its changes."""
        status = self.core.status()
        status["unconfirmed_switches"] = len(self.unconfirmed)
        status["pending"] = status["pending"] or bool(self.unconfirmed)
        status["stats_interval_s"] = self.stats_interval_s
        status["stats_rounds"] = self.counters["stats_rounds"]
        status["install"] = self.installs.as_dict()
        return status
