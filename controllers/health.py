"""Link health: gray failures found in port counters, and dampening of flapping links.

One job: from the port counters of every statistics round, say which inter-switch links must
be kept out of routing although they are up. A link is *degraded* (a gray failure) when, for
``detect_rounds`` rounds in a row, what it delivers collapsed against what is sent into it
(the far end received less than ``1 - loss_ratio`` of the rate the near end sent), or its drop
and error counters rose (what was dropped or errored at least ``drop_ratio`` of the volume
offered to it, a dropped frame weighed as the largest frames that end carries), or its
rate collapsed under a backlog: its LLDP probes waited at least ``backlog_s`` behind data in
its egress queue (or took ``delay_s`` longer to cross it than the quickest probes of its two
switches) while it delivered under ``rate_ratio`` of its capacity. The last
finds a link whose shaping was cut and whose queue drops nothing any counter sees (a policer,
a bad transceiver renegotiating to a tenth of its rate): its sent and received counters agree,
but a link with a standing queue delivers at its capacity unless the capacity is gone, so a
link that is merely congested (backlogged and delivering at capacity) is never flagged.
It is restored once no round looked bad for ``restore_s``: it carries no traffic while routed
around, so a link that is still bad is found again with the traffic that returns, and pays
for it in penalty.

Every time a link fails (a port went down, or the link was found degraded) it gets a penalty
of ``flap_penalty`` that decays exponentially with ``half_life_s``, as BGP route-flap
dampening does (RFC 2439): above ``suppress`` the link is suppressed, kept out of routing
even while it looks healthy, until the penalty decayed below ``reuse``. So a flapping link
costs a bounded number of route changes, not one pair per flap.

Pure: no clock (``now`` is an argument), no Ryu, no sockets. The routing core
(controllers/core.py) feeds it counters and applies what it decides to the topology state
(``TopologyState.set_excluded``): excluded links keep being probed by LLDP, only routes
leave them. What it remembers is per link of the fabric (pruned when a link disappears) and
a bounded list of events.
"""

import collections
import dataclasses
import math
from typing import NamedTuple

# Health events remembered for status (the newest ones).
EVENTS_KEPT = 50


class HealthError(ValueError):
    """A bad health option: one line naming it."""


class PortCounters(NamedTuple):
    """Cumulative counters of one switch port, as an OpenFlow port statistics reply has them
    (packets and bytes)."""
    tx_bytes: int
    rx_bytes: int = 0
    tx_packets: int = 0
    rx_packets: int = 0
    tx_dropped: int = 0
    rx_dropped: int = 0
    tx_errors: int = 0
    rx_errors: int = 0


@dataclasses.dataclass(frozen=True)
class HealthConfig:
    """Thresholds of gray-failure detection and flap dampening, validated once and frozen.

    Attributes
    ----------
    loss_ratio : float
        A direction of a link is bad in a round if its far end received less than
        ``1 - loss_ratio`` of the rate its near end sent.
    drop_ratio : float
        ... or if what was dropped or errored at its ends is at least this share of the
        volume offered to it (sent plus dropped), a dropped frame weighed as the largest
        that end carries (its highest mean frame size in a round): a link black-holing
        large frames passes the small acknowledgements of the flows the other way, which
        outnumber the few retransmissions it drops once its own flows back off.
    min_packets : int
        A direction is judged by its counters only if at least this many packets were sent
        into it (or dropped) in the round, or if most of the little offered was dropped (TCP
        flows across a link that drops their segments wait out timeouts: a packet or two a
        second): an idle link is neither healthy nor sick.
    backlog_s : float
        A direction is backlogged in a round if its newest probe was sent at least this long
        (s) before the newest probes its far switch reported and its near switch sent over
        other links (``TopologyState.probe_lag_s``): a probe waits behind the data queued
        before it, or is dropped at its tail. A controller that falls behind delays every
        probe of a switch alike, so this is relative to the switches, not to the clock.
        Longer than one probe round (2 s by default), so that one probe lost at the tail of a
        short queue, which then drained, is not taken for a backlog.
    delay_s : float
        ... or if its last two probes each took at least this long (s) more to arrive than
        the quickest probes of its two switches (``TopologyState.probe_delay_s``): a queue
        shorter than a probe round, as TCP flows with bounded windows build on a link whose
        rate was cut (each flow's window waits in it), while the same flows queue a tenth as
        long on links that kept their rate. Compared per switch, as ``backlog_s``, so a
        controller that falls behind judges nothing; a link whose probes all arrive
        (nothing lost, under a probe round late) is judged by this alone.
    rate_ratio : float
        A backlogged direction is bad if it delivered (its far end received) less than this
        share of its capacity (from the fabric model, else the highest rate it carried).
    detect_rounds : int
        Bad rounds in a row that make a link degraded.
    restore_s : float
        A degraded link returns after this long without a bad round.
    flap_penalty : float
        Penalty added each time a link fails (port down, or found degraded).
    half_life_s : float
        Half-life (s) of the penalty's exponential decay.
    suppress : float
        A link whose penalty reaches this is suppressed (kept out of routing).
    reuse : float
        A suppressed link returns once its penalty decayed below this.
    max_penalty : float
        Ceiling of the penalty, so a link that flapped for hours comes back in bounded time
        (``half_life_s * log2(max_penalty / reuse)`` after its last flap).
    """

    loss_ratio: float = 0.5
    drop_ratio: float = 0.05
    min_packets: int = 50
    backlog_s: float = 3.0
    delay_s: float = 0.5
    rate_ratio: float = 0.5
    detect_rounds: int = 2
    restore_s: float = 10.0
    flap_penalty: float = 1000.0
    half_life_s: float = 30.0
    suppress: float = 2000.0
    reuse: float = 750.0
    max_penalty: float = 8000.0

    @classmethod
    def from_options(cls, options):
        """A config from keyword options; HealthError names an unknown or bad option.

        Examples
        --------
        >>> HealthConfig.from_options({"restore_s": 5}).restore_s
        5
        >>> HealthConfig.from_options({"reuse": 3000})  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ...
        HealthError: health option reuse must be below suppress (2000.0), got 3000
        """
        known = [f.name for f in dataclasses.fields(cls)]
        for name in options:
            if name not in known:
                raise HealthError(f"unknown health option {name!r}; known: {', '.join(known)}")
        config = cls(**options)
        checks = {
            "loss_ratio": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "drop_ratio": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "min_packets": (lambda v: v >= 1, ">= 1"),
            "backlog_s": (lambda v: v > 0, "> 0"),
            "delay_s": (lambda v: v > 0, "> 0"),
            "rate_ratio": (lambda v: 0 < v <= 1, "in (0, 1]"),
            "detect_rounds": (lambda v: v >= 1 and v == int(v), "an integer >= 1"),
            "restore_s": (lambda v: v >= 0, ">= 0"),
            "flap_penalty": (lambda v: v >= 0, ">= 0"),
            "half_life_s": (lambda v: v > 0, "> 0"),
            "reuse": (lambda v: v > 0, "> 0"),
        }
        for name, (ok, what) in checks.items():
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
                raise HealthError(f"health option {name} must be {what}, got {value!r}")
        if not config.reuse < config.suppress:
            raise HealthError(f"health option reuse must be below suppress "
                              f"({config.suppress}), got {config.reuse!r}")
        if not config.suppress <= config.max_penalty:
            raise HealthError(f"health option max_penalty must be at least suppress "
                              f"({config.suppress}), got {config.max_penalty!r}")
        return config


class _Link:
    """What is known of one link's health."""

    __slots__ = ("bad_rounds", "onset_s", "last_bad_s", "degraded_s", "detection_s",
                 "penalty", "penalty_s", "suppressed", "why")

    def __init__(self):
        self.bad_rounds = 0
        self.onset_s = None       # start of the first bad round of the current streak
        self.last_bad_s = None
        self.degraded_s = None    # when it was found degraded; None while healthy
        self.detection_s = None
        self.penalty = 0.0
        self.penalty_s = 0.0
        self.suppressed = False
        self.why = None


class LinkHealth:
    """Gray-failure detection and flap dampening over the links of one fabric.

    Links are named by their two ends, ``((dpid, port), (dpid, port))`` in sorted order, as
    the topology state names them.

    Parameters
    ----------
    config : HealthConfig, optional
        Thresholds; the defaults if omitted.

    Examples
    --------
    A link whose far end receives a tenth of what the near end sends, sampled every second:

    >>> health = LinkHealth(HealthConfig(restore_s=5.0))
    >>> link = ((1, 1), (2, 1))
    >>> peers = {(1, 1): (2, 1), (2, 1): (1, 1)}
    >>> for t in range(4):
    ...     health.sample(1, {1: PortCounters(tx_bytes=10**6 * t, tx_packets=1000 * t)}, t)
    ...     health.sample(2, {1: PortCounters(tx_bytes=0, rx_bytes=10**5 * t,
    ...                                       rx_packets=100 * t)}, t)
    ...     out, back = health.evaluate(peers, t)
    ...     if out:
    ...         print(t, out, health.excluded())
    2 [((1, 1), (2, 1))] {((1, 1), (2, 1))}
    """

    def __init__(self, config=None):
        self.config = config or HealthConfig()
        self.counters = collections.Counter()
        self.events = collections.deque(maxlen=EVENTS_KEPT)
        self._links = {}      # link -> _Link
        self._last = {}       # (dpid, port) -> (PortCounters, sampled at)
        self._delta = {}      # (dpid, port) -> (sampled at, seconds, deltas) of this round
        self._peak_bps = {}   # (dpid, port) -> highest rate delivered from that link end
        self._frame_bytes = {}  # (dpid, port) -> highest mean frame size sent from that end

    # -- input -----------------------------------------------------------------------------
    def sample(self, dpid, counters, now):
        """Cumulative counters of switch ``dpid``'s ports, read at ``now``.

        ``counters`` is ``{port: PortCounters}``; a counter that went backwards (the switch
        restarted) starts over without a judgement.
        """
        for port, c in counters.items():
            key = (dpid, port)
            last = self._last.get(key)
            self._last[key] = (c, now)
            if last is None or now <= last[1]:
                continue
            d = PortCounters(*(x - y for x, y in zip(c, last[0])))
            if min(d) < 0:
                self._delta.pop(key, None)
                continue
            self._delta[key] = (now, now - last[1], d)

    def forget_switch(self, dpid):
        """A switch left: its counters start over when it returns."""
        for key in [k for k in self._last if k[0] == dpid]:
            del self._last[key]
            self._delta.pop(key, None)

    def link_down(self, link, now):
        """A port of ``link`` went down: a flap, penalized (see :class:`HealthConfig`)."""
        self.counters["link_downs"] += 1
        self._flap(self._links.setdefault(link, _Link()), link, now)

    # -- decisions -------------------------------------------------------------------------
    def evaluate(self, peers, now, probe_lag_s=None, capacity_bps=None, probe_delay_s=None):
        """Judge the round sampled since the last call; say which links leave and return.

        Parameters
        ----------
        peers : dict
            ``{(dpid, port): (peer dpid, peer port)}`` of every link end (both directions),
            as ``TopologyState.peers`` gives it.
        now : float
            Time of the round's end.
        probe_lag_s : dict, optional
            ``{(dpid, port): seconds}``: how late the newest probe sent out of that link end
            is against the probes of its two switches' other links
            (``TopologyState.probe_lag_s``). Without it no direction is judged backlogged.
        capacity_bps : dict, optional
            ``{(dpid, port): bit/s}`` of link ends, from the fabric model; an end missing
            from it is measured against the highest rate it delivered.
        probe_delay_s : dict, optional
            ``{(dpid, port): seconds}``: how much longer the probes out of that link end took
            to arrive than the quickest of its two switches'
            (``TopologyState.probe_delay_s``). Without it only ``probe_lag_s`` says backlog.

        Returns
        -------
        leave, back : list
            Links to keep out of routing from now on, and links to route over again (each
            sorted).
        """
        cfg = self.config
        probe_lag_s, capacity_bps = probe_lag_s or {}, capacity_bps or {}
        probe_delay_s = probe_delay_s or {}
        for table in (self._peak_bps, self._frame_bytes):
            for end in [e for e in table if e not in peers]:
                del table[end]
        verdicts = {}
        for near, far in peers.items():
            why = self._judge(near, far, probe_lag_s.get(near), probe_delay_s.get(near),
                              capacity_bps.get(near))
            if why is not None:
                link = (near, far) if near < far else (far, near)
                if why or link not in verdicts:
                    verdicts[link] = why
        self._delta.clear()
        was = self.excluded()
        for link, why in verdicts.items():
            if not why:
                state = self._links.get(link)
                if state is not None:
                    state.bad_rounds = 0
                continue
            state = self._links.setdefault(link, _Link())
            onset = why.pop("onset_s")
            if state.bad_rounds == 0:
                state.onset_s = onset
            state.bad_rounds += 1
            state.last_bad_s = now
            state.why = why
            if state.degraded_s is None and state.bad_rounds >= cfg.detect_rounds:
                state.degraded_s = now
                state.detection_s = now - state.onset_s
                self.counters["degraded"] += 1
                self._event("degraded", link, now, detection_s=round(state.detection_s, 3),
                            **why)
                self._flap(state, link, now)
        for link, state in list(self._links.items()):
            if state.degraded_s is not None and now - state.last_bad_s >= cfg.restore_s:
                state.degraded_s = None
                state.bad_rounds = 0
                self.counters["restored"] += 1
                self._event("restored", link, now)
            penalty = self._decayed(state, now)
            if state.suppressed and penalty < cfg.reuse:
                state.suppressed = False
                self.counters["reused"] += 1
                self._event("reused", link, now)
            if state.degraded_s is None and not state.suppressed and not state.bad_rounds \
                    and penalty < 1.0:
                del self._links[link]   # nothing left to remember: memory stays per fault
        now_out = self.excluded()
        return sorted(now_out - was), sorted(was - now_out)

    def _judge(self, near, far, lag_s, delay_s, capacity_bps):
        """Why the direction near -> far looked bad in this round (with ``onset_s``, when
        the round's window began), ``{}`` if it looked fine, None if there is nothing to
        judge (an end not sampled, or too little sent)."""
        cfg = self.config
        a, b = self._delta.get(near), self._delta.get(far)
        if a is None or b is None:
            return None
        (at_a, dt_a, d_a), (at_b, dt_b, d_b) = a, b
        # A packet lost on the wire may be counted at both ends: the larger count, not the sum.
        dropped = max(d_a.tx_dropped + d_a.tx_errors, d_b.rx_dropped + d_b.rx_errors)
        enough = d_a.tx_packets + dropped >= cfg.min_packets
        # What was sent, in frames as large as the largest this end carries (what a dropped
        # frame is weighed as): counted in packets, the acknowledgements a link black-holing
        # large frames still passes hide the few retransmissions it drops.
        frame_bytes = self._frame_bytes.get(near, 0.0)
        if d_a.tx_packets:
            frame_bytes = max(frame_bytes, d_a.tx_bytes / d_a.tx_packets)
            self._frame_bytes[near] = frame_bytes
        sent_frames = d_a.tx_bytes / frame_bytes if frame_bytes else d_a.tx_packets
        # A link that black-holes TCP's large segments goes quiet at once: its flows wait
        # out retransmission timeouts, a packet or two a second, most of them dropped. A
        # round where most of the little sent was dropped is judged by its drops.
        mostly_dropped = dropped > sent_frames
        by_counters = enough or mostly_dropped
        # A backlog says the link is busy however few (large, slow) packets crossed it.
        by_backlog = (lag_s is not None or delay_s is not None) and d_a.tx_packets > 0
        if not (by_counters or by_backlog):
            return None
        why = {}
        if by_counters:
            drop_share = dropped / (sent_frames + dropped)
            if drop_share >= cfg.drop_ratio:
                why["drop_share"] = round(drop_share, 3)
            # Rates, not bytes: the two ends' replies come at slightly different times.
            if enough and d_a.tx_bytes:
                delivered = (d_b.rx_bytes / dt_b) / (d_a.tx_bytes / dt_a)
                if delivered < 1 - cfg.loss_ratio:
                    why["delivered_share"] = round(delivered, 3)
        delivered_bps = d_b.rx_bytes * 8 / dt_b
        peak_bps = max(delivered_bps, self._peak_bps.get(near, 0.0))
        self._peak_bps[near] = peak_bps
        full_bps = capacity_bps or peak_bps
        lagged = lag_s is not None and lag_s >= cfg.backlog_s
        delayed = delay_s is not None and delay_s >= cfg.delay_s
        if by_backlog and (lagged or delayed) and full_bps > 0:
            share = delivered_bps / full_bps
            if share < cfg.rate_ratio:
                if lagged:
                    why["probe_lag_s"] = round(lag_s, 3)
                if delayed:
                    why["probe_delay_s"] = round(delay_s, 3)
                why["rate_share"] = round(share, 3)
        if why:
            why["direction"] = [list(near), list(far)]
            why["onset_s"] = min(at_a - dt_a, at_b - dt_b)
        return why

    def _flap(self, state, link, now):
        cfg = self.config
        state.penalty = min(self._decayed(state, now) + cfg.flap_penalty, cfg.max_penalty)
        state.penalty_s = now
        self.counters["flaps"] += 1
        if not state.suppressed and state.penalty >= cfg.suppress:
            state.suppressed = True
            self.counters["suppressed"] += 1
            self._event("suppressed", link, now, penalty=round(state.penalty, 1))

    def _decayed(self, state, now):
        if not state.penalty:
            return 0.0
        return state.penalty * math.pow(0.5, max(now - state.penalty_s, 0.0)
                                        / self.config.half_life_s)

    def _event(self, kind, link, now, **info):
        self.events.append(dict({"event": kind, "link": [list(link[0]), list(link[1])],
                                 "at_s": now}, **info))

    # -- what the core and status read -----------------------------------------------------
    @property
    def active(self):
        """Is there anything to judge or remember? (Not in the flow-level simulator, which
        samples transmitted bytes only: its rounds skip building the link list.)"""
        return bool(self._delta or self._links)

    def excluded(self):
        """Links to keep out of routing: degraded or suppressed."""
        return {link for link, s in self._links.items()
                if s.degraded_s is not None or s.suppressed}

    def status(self, now):
        """JSON-able: links kept out (why, since when, detection time, penalty), counters
        and the newest events."""
        out = []
        for link, s in sorted(self._links.items()):
            if s.degraded_s is None and not s.suppressed:
                continue
            out.append({"link": [list(link[0]), list(link[1])],
                        "degraded": s.degraded_s is not None, "degraded_at_s": s.degraded_s,
                        "detection_s": s.detection_s, "suppressed": s.suppressed,
                        "penalty": round(self._decayed(s, now), 1), "why": s.why})
        return {"excluded": out, "counters": dict(self.counters), "events": list(self.events)}
