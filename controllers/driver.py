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
  ``lldp_interval_s``;
- reconciliation: a switch that connects is not wiped. Its flows and groups are read back
  at once, and nothing that changes its tables is sent before the answer. A switch that holds
  none of our rules and no group (a cold start) is reconciled then; one that holds some
  waits until discovery has settled (every switch, link and host of the model found, or no
  topology change for ``settle_s``), so it is never sent the routes of a half-discovered
  fabric. Reconciling sends only the difference to what the switch should hold: one that
  kept its tables through a controller restart gets no flow or group mod (counted in
  ``status()["reconcile"]``). An OpenFlow error is mapped back by its xid to the message
  that caused it, and that switch is read back and reconciled the same way.

Shaped like Faucet's ``Valve``: each method takes ``now`` (seconds, any monotonic origin) and
returns plain messages (controllers/rules.py) for the app to serialize and send in order;
:meth:`FabricDriver.tick` also says when it wants to be called next. It must not import Ryu,
read a clock, sleep, or touch a socket, and it decides nothing about paths (the core does).
tests/test_driver.py drives it with mocked time on a fake fabric.
"""

import collections
import itertools

from controllers.rules import (COOKIE, COOKIE_FLOW, Barrier, ClearSwitch, FlowDumpRequest, FlowMod,
                               FlowStatsRequest, GroupDumpRequest, GroupMod, MeterDumpRequest,
                               MeterMod, PacketOut, PortStatsRequest)

TICK_S = 0.05
HOLD_MAX_S = 1.0
# A switch that has not answered the reading of its flows and groups in this long is wiped
# and rebuilt from scratch, as if it held nothing.
READ_TIMEOUT_S = 5.0
# Rule and group changes remembered per switch by transaction id, to name the message an
# OpenFlow error answers (errors come back within a round trip; older ones are unnamed).
SENT_KEPT = 4096
ERRORS_KEPT = 20
# Messages that change a switch's tables: held back from a switch whose state is unknown.
TABLE_CHANGES = (FlowMod, GroupMod, ClearSwitch, MeterMod)
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
    settle_s : float, optional
        Without a model (or with links of the model missing), discovery has settled once no
        switch, link or port changed for this long; a switch that holds rules of ours when
        it connects is reconciled only then, so it is not sent the routes of a
        half-discovered fabric. By default 1.5 LLDP intervals (every link is probed once in
        that time).

    Examples
    --------
    >>> from controllers.core import RoutingCore
    >>> driver = FabricDriver(RoutingCore(), stats_interval_s=1.0, lldp_interval_s=2.0)
    >>> driver.tick(0.0)
    ([], 1.0)
    """

    def __init__(self, core, stats_interval_s, lldp_interval_s, tick_s=TICK_S,
                 hold_max_s=HOLD_MAX_S, new_xid=None, settle_s=None):
        self.core = core
        self.settle_s = 1.5 * lldp_interval_s if settle_s is None else settle_s
        self._parked = {}       # dpid -> (since, flows, groups): read, waiting to settle
        # dpid -> [since, xids unanswered, flows, groups, asked at, wait for discovery]
        self._reading = {}
        self._reconciling = {}  # dpid -> (since, xid of the barrier confirming its diff)
        self._last_change_s = None
        self._episode_s = None  # when the first of the switches reconciled together connected
        self._sent = {}         # dpid -> OrderedDict xid -> rule or group change sent
        self._meter_retried = set()   # (dpid, meter id) sent with the other command once
        self.errors = collections.deque(maxlen=ERRORS_KEPT)
        self.reconcile = {"last_s": None, "max_s": None, "span_s": None, "done_at_s": None}
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
        they change, so ``status`` can say when the changes are in force, not only sent.
        Table changes for a switch whose state is unknown (not read back yet) are dropped:
        its reconciliation sends what it lacks."""
        if self._parked or self._reading:
            unknown = self._parked.keys() | self._reading.keys()
            msgs = [m for m in msgs if not (isinstance(m, TABLE_CHANGES) and m.dpid in unknown)]
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
        """Held ARP answers, once every switch confirmed its changes (and none waits to be
        reconciled): the route to a host just learned spans several switches, and the
        asker's first packet must find it on all of them. A switch that never answers delays
        them by at most ``hold_max_s``."""
        if self._held and (not (self.unconfirmed or self._parked or self._reading)
                           or now - self._held[0][0] >= self.hold_max_s):
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
        if self._parked and self._settled(now):
            for dpid in sorted(self._parked):
                since, flows, groups, meters = self._parked.pop(dpid)
                out += self._resync(dpid, since, flows, groups, meters, now)
        for dpid, (since, _, _, _, asked, _, _) in sorted(self._reading.items()):
            if now - asked > READ_TIMEOUT_S:
                out += self._wipe(dpid, since, now)
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
        rec = self._reconciling.get(dpid)
        if rec is not None and (xid - rec[1]) % XID_MODULO < XID_MODULO // 2:
            self._reconciled(dpid, rec[0], now)
        self.installs.confirmed(dpid, xid, now, idle=not self.unconfirmed)
        return self._release_held(now)

    def switch_enter(self, dpid, ports, now):
        """A switch connected with ``ports`` (see :meth:`RoutingCore.switch_enter`). Its
        state is unknown: it is not wiped, it is read back, and it gets no table change
        until it has been reconciled."""
        self._forget(dpid)
        if not self._reconciling_any():
            self._episode_s = now
        self._last_change_s = now
        self._reading[dpid] = None   # before the core's messages: they must be held back
        out = self._confirm(self.core.switch_enter(dpid, ports, now), now)
        return out + self._read(dpid, now, now)

    def _reconciling_any(self):
        return bool(self._parked or self._reading or self._reconciling)

    def switch_gone(self, dpid, now):
        """A switch disconnected: nothing it was asked will be answered."""
        self.unconfirmed.pop(dpid, None)
        self.installs.forget(dpid)
        for key in [k for k in self._round if k[0] == dpid]:
            del self._round[key]
        self._forget(dpid)
        self._last_change_s = now
        out = self._confirm(self.core.switch_leave(dpid, now), now)
        return out + self._release_held(now)

    def _forget(self, dpid):
        for held in (self._parked, self._reading, self._reconciling, self._sent):
            held.pop(dpid, None)
        self._meter_retried = {k for k in self._meter_retried if k[0] != dpid}

    def port_status(self, dpid, port, up, now):
        """A port went up or down; routes change at once, not at the next tick: without local
        protection this is the outage."""
        self._last_change_s = now
        out = self._confirm(self.core.port_status(dpid, port, up, now), now)
        return out + self._confirm(self.core.flush(now), now)

    def probe_in(self, dpid, in_port, probe, eth_src, now):
        """An LLDP frame claiming to be our probe arrived; the core checks it (see
        :meth:`RoutingCore.probe_in`)."""
        return self._links_may_change(now, self.core.probe_in, dpid, in_port, probe, eth_src,
                                      now)

    def link_seen(self, src_dpid, src_port, dst_dpid, dst_port, now, sent_at=None):
        """A probe known to be ours arrived (see :meth:`RoutingCore.link_seen`)."""
        return self._links_may_change(now, self.core.link_seen, src_dpid, src_port, dst_dpid,
                                      dst_port, now, sent_at=sent_at)

    def _links_may_change(self, now, call, *args, **kwargs):
        learned = self.core.counters["links_learned"]
        out = self._confirm(call(*args, **kwargs), now)
        if self.core.counters["links_learned"] != learned:
            self._last_change_s = now
        return out

    # -- reconciliation --------------------------------------------------------------------
    def _settled(self, now):
        """Has discovery found what there is to find, so routes sent now are not those of a
        half-known fabric? Yes once the model is complete, or nothing changed for
        ``settle_s``."""
        return bool(self.core.discovery_complete()) or (
            self._last_change_s is not None and now - self._last_change_s >= self.settle_s)

    def _read(self, dpid, since, now, settle=True):
        """Ask ``dpid`` for every flow and group it holds; its table changes wait for the
        answer (``since``: when its state became unknown, for the reconcile time; ``settle``:
        a switch holding rules of ours then also waits for discovery to settle)."""
        self._parked.pop(dpid, None)
        self._reconciling.pop(dpid, None)
        asks = [FlowDumpRequest(dpid, self._new_xid(dpid)),
                GroupDumpRequest(dpid, self._new_xid(dpid)),
                MeterDumpRequest(dpid, self._new_xid(dpid))]
        self._reading[dpid] = [since, {a.xid for a in asks}, [], [], now, settle, []]
        self.counters["switch_reads"] += 1
        return asks

    def reading(self, dpid, xid):
        """Is ``xid`` one of the requests reading ``dpid``'s flows and groups back?"""
        entry = self._reading.get(dpid)
        return entry is not None and xid in entry[1]

    def state_reply(self, dpid, xid, now, flows=(), groups=(), meters=(), more=False):
        """A part of a switch's answer to the reading of its state.

        Parameters
        ----------
        dpid, xid : int
            The switch and the request answered.
        now : float
            Arrival time.
        flows : iterable of FlowRule
            Rules it holds (any table, any cookie; actions the app cannot express as ours
            are kept as values that equal none of ours, so such a rule is replaced).
        groups : iterable of Group
            Groups it holds.
        meters : iterable of MeterMod
            Meters it holds, as the MeterMod that would make each.
        more : bool
            More parts of this reply follow.

        Returns
        -------
        list
            Once both answers are in: the difference between what the switch holds and what
            it should hold (nothing if none), with a barrier; else empty.
            A switch that holds rules of ours waits for discovery to settle (see
            :meth:`tick`).
        """
        entry = self._reading.get(dpid)
        if entry is None or xid not in entry[1]:
            return []
        entry[2].extend(flows)
        entry[3].extend(groups)
        entry[6].extend(meters)
        if more:
            return []
        entry[1].discard(xid)
        if entry[1]:
            return []
        del self._reading[dpid]
        since, _, flows, groups, _, settle, meters = entry
        cold = not groups and not any(r.cookie in (COOKIE, COOKIE_FLOW) for r in flows)
        if cold or not settle or self._settled(now):
            return self._resync(dpid, since, flows, groups, meters, now)
        self._parked[dpid] = (since, flows, groups, meters)
        return []

    def _resync(self, dpid, since, flows, groups, meters, now):
        self.core.resync(dpid, flows, groups, now)
        return self._confirm(self._meters(dpid, meters), now) + \
            self._reconcile(dpid, since, now)

    def _meters(self, dpid, held=()):
        """The control meters (controllers/meters.py) a switch about to be reconciled lacks or
        holds otherwise, given the ``held`` ones (MeterMods, as read back), before the rules
        that use them: added where missing, set again where their rate or burst differ,
        nothing where they are right (a restart). A meter mod the switch refuses anyway is
        sent once with the other command (:meth:`openflow_error`)."""
        have = {m.meter_id: m for m in held}
        out = []
        for m in self.core.meters.switch_enter(dpid, sorted(self.core.ports.get(dpid, ()))):
            was = have.get(m.meter_id)
            if was is None:
                out.append(m)
            elif (was.rate_pps, was.burst_packets) != (m.rate_pps, m.burst_packets):
                out.append(m._replace(command="modify"))
        self.counters["reconcile_meter_mods"] += len(out)
        return out

    def _reconcile(self, dpid, since, now):
        msgs = self.core.flush(now)
        flow_mods = sum(1 for m in msgs if type(m) is FlowMod and m.dpid == dpid)
        group_mods = sum(1 for m in msgs if type(m) is GroupMod and m.dpid == dpid)
        self.counters["reconcile_flow_mods"] += flow_mods
        self.counters["reconcile_group_mods"] += group_mods
        out = self._confirm(msgs, now)
        if flow_mods or group_mods:
            self._reconciling[dpid] = (since, self.unconfirmed[dpid])
        else:
            self.counters["switches_unchanged"] += 1
            self._reconciled(dpid, since, now)
        return out

    def _reconciled(self, dpid, since, now):
        self._reconciling.pop(dpid, None)
        self.counters["switches_reconciled"] += 1
        took = now - since
        rec = self.reconcile
        rec["last_s"], rec["done_at_s"] = took, now
        rec["max_s"] = took if rec["max_s"] is None else max(rec["max_s"], took)
        if not self._reconciling_any() and self._episode_s is not None:
            rec["span_s"] = now - self._episode_s

    def _wipe(self, dpid, since, now):
        """A switch that did not answer the reading of its state: wiped, rebuilt whole."""
        del self._reading[dpid]
        self.counters["switches_wiped"] += 1
        self.core.resync(dpid, [], [], now)
        return self._confirm([ClearSwitch(dpid)] + self._meters(dpid), now) + \
            self._reconcile(dpid, since, now)

    # -- errors ----------------------------------------------------------------------------
    def sent(self, dpid, xid, msg):
        """The app sent rule or group change ``msg`` to ``dpid`` with transaction id ``xid``
        (remembered, the newest :data:`SENT_KEPT` per switch, to name what an error
        answers)."""
        kept = self._sent.get(dpid)
        if kept is None:
            kept = self._sent[dpid] = collections.OrderedDict()
        kept[xid] = msg
        if len(kept) > SENT_KEPT:
            kept.popitem(last=False)

    def openflow_error(self, dpid, xid, err_type, err_code, now):
        """A switch refused a message. The error is mapped back by ``xid`` to the change
        that caused it (kept in ``status()["errors"]``), and the switch is read back and
        reconciled, since what it holds is no longer what the core believes. An error whose
        xid names no change of ours (a reply to a request, or one too old) is only counted."""
        msg = self._sent.get(dpid, {}).get(xid)
        self.errors.append({"dpid": dpid, "xid": xid, "type": err_type, "code": err_code,
                            "message": None if msg is None else repr(msg)})
        if msg is None:
            self.counters["openflow_errors_unmatched"] += 1
            return []
        self.counters["openflow_errors_matched"] += 1
        if dpid not in self.core.ports or dpid in self._parked or dpid in self._reading:
            return []
        if type(msg) is MeterMod:
            # An add refused (the meter exists) or a modify (it does not): the other command,
            # once; nothing else of the switch's state is in doubt.
            if msg.command == "add" and (dpid, msg.meter_id) not in self._meter_retried:
                self._meter_retried.add((dpid, msg.meter_id))
                return self._confirm([msg._replace(command="modify")], now)
            if msg.command == "modify" and (dpid, msg.meter_id) not in self._meter_retried:
                self._meter_retried.add((dpid, msg.meter_id))
                return self._confirm([msg._replace(command="add")], now)
            return []
        self.counters["resyncs"] += 1
        if not self._reconciling_any():
            self._episode_s = now
        return self._read(dpid, now, now, settle=False)

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
        status["pending"] = status["pending"] or bool(
            self.unconfirmed or self._reconciling_any())
        c = self.counters
        status["reconcile"] = dict(
            self.reconcile, waiting=len(self._parked), reading=len(self._reading),
            confirming=len(self._reconciling), switches=c["switches_reconciled"],
            unchanged=c["switches_unchanged"], wiped=c["switches_wiped"],
            flow_mods=c["reconcile_flow_mods"], group_mods=c["reconcile_group_mods"],
            meter_mods=c["reconcile_meter_mods"], resyncs=c["resyncs"])
        status["errors"] = {"matched": c["openflow_errors_matched"],
                            "unmatched": c["openflow_errors_unmatched"],
                            "recent": list(self.errors)}
        status["stats_interval_s"] = self.stats_interval_s
        status["stats_rounds"] = self.counters["stats_rounds"]
        status["install"] = self.installs.as_dict()
        return status
