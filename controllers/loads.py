"""Measured load: smoothed rates of switch ports and of flows, from cumulative byte counters.

Bookkeeping for the routing core. OpenFlow port and flow statistics arrive as cumulative
counters at whatever times the app polls; this turns them into rates (bit/s) smoothed by an
exponentially weighted moving average with time constant ``tau_s``, so the smoothing does not
depend on the polling period. It must not decide anything, send anything or read a clock:
every call takes ``now``.

A placement decision changes a link's load before its counters can show it.
:meth:`PortLoads.shift` records such an expected change; it fades as ``exp(-age / tau_s)``,
the rate at which the moving average itself catches up, so a decision is neither forgotten
before the measurements show it nor counted twice once they do.
"""

import dataclasses
import math

from controllers.rules import FlowKey


def ewma_weight(dt, tau_s):
    """Weight of a new sample taken ``dt`` seconds after the previous one."""
    return 1.0 - math.exp(-dt / tau_s) if tau_s > 0 else 1.0


class RateMeter:
    """Rate of one cumulative byte counter.

    A counter that goes backwards (a rule or switch was replaced) starts a new baseline
    instead of producing a negative rate.
    """

    __slots__ = ("bytes", "at", "rate_bps")

    def __init__(self):
        self.bytes = None
        self.at = None
        self.rate_bps = None

    def update(self, total, now, tau_s):
        """Take a counter reading; return the bytes it grew by since the previous one."""
        if self.at is None or total < self.bytes:
            self.bytes, self.at = total, now
            return 0
        dt = now - self.at
        if dt <= 0:
            return 0
        grown = total - self.bytes
        inst = grown * 8.0 / dt
        if self.rate_bps is None:
            self.rate_bps = inst
        else:
            self.rate_bps += ewma_weight(dt, tau_s) * (inst - self.rate_bps)
        self.bytes, self.at = total, now
        return grown


class PortLoads:
    """Smoothed transmit rate of switch ports, plus the expected effect of recent decisions.

    Parameters
    ----------
    tau_s : float
        Time constant of the moving average and of the fading of shifts, in seconds.
    """

    # A shift this faded no longer matters; dropping it keeps the lists short.
    _FADED = 0.01

    def __init__(self, tau_s):
        self.tau_s = tau_s
        self._meters = {}   # (dpid, port) -> RateMeter
        self._shifts = {}   # (dpid, port) -> [(bps, at)]

    def sample(self, dpid, port, tx_bytes, now):
        """Feed the cumulative ``tx_bytes`` counter of a port, read at ``now``."""
        meter = self._meters.get((dpid, port))
        if meter is None:
            meter = self._meters[(dpid, port)] = RateMeter()
        meter.update(tx_bytes, now, self.tau_s)

    def measured_bps(self, dpid, port):
        """The smoothed measured rate of a port (0 before two samples)."""
        meter = self._meters.get((dpid, port))
        return 0.0 if meter is None or meter.rate_bps is None else meter.rate_bps

    def shift(self, dpid, port, bps, now):
        """Expect the port's rate to change by ``bps`` from ``now`` (negative: less load)."""
        self._shifts.setdefault((dpid, port), []).append((bps, now))

    def rate_bps(self, dpid, port, now):
        """Measured rate plus the expected changes not yet visible in it, never negative."""
        rate = self.measured_bps(dpid, port)
        shifts = self._shifts.get((dpid, port))
        if shifts:
            kept = []
            for bps, at in shifts:
                left = math.exp(-max(0.0, now - at) / self.tau_s) if self.tau_s > 0 else 0.0
                if left > self._FADED:
                    kept.append((bps, at))
                    rate += bps * left
            if kept:
                self._shifts[(dpid, port)] = kept
            else:
                del self._shifts[(dpid, port)]
        return max(0.0, rate)

    def forget(self, dpid):
        """Drop everything about a switch (it disconnected; its counters restart)."""
        for table in (self._meters, self._shifts):
            for key in [k for k in table if k[0] == dpid]:
                del table[key]


@dataclasses.dataclass
class Flow:
    """What the core knows about one learned IPv4 flow.

    ``path`` is the switch path it is pinned to, or None while it follows the destination's
    groups (ECMP). ``started`` turns true once it has sent more than a handshake; before that
    its rate says nothing about its demand.
    """

    key: FlowKey
    src: str                    # MAC of the sending host
    dst: str                    # MAC of the receiving host
    seen_at: float
    active_at: float
    meter: RateMeter = dataclasses.field(default_factory=RateMeter)
    sent_bytes: int = 0
    started: bool = False
    path: tuple = None
    placed_at: float = None
    elephant: bool = False
    demand_bps: float = None

    @property
    def rate_bps(self):
        return self.meter.rate_bps
