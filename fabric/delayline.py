"""Propagation delay without netem: a userspace forwarder in the middle of delayed links.

Where the kernel has no netem qdisc, fabric/emulate.py cuts every link whose scaled delay is
worth emulating in two and puts one network namespace between the halves (a Mininet node
holding both middle ends, ``dly0-eth<2i>`` toward one switch and ``dly0-eth<2i+1>`` toward
the other), so the switches keep the port names and numbers the topology model gives them.
This module is the process that runs in that namespace: it reads every frame arriving on a
middle end (raw AF_PACKET sockets, non-blocking, one ``select`` for all of them), stamps it,
and sends it out of the other end ``delay_s`` after it arrived. Each direction of each link
is a FIFO (:class:`ReleaseQueue`), so nothing is reordered; its buffer holds a bounded
number of bytes (sized from rate x delay by the caller) and frames beyond it are dropped
and counted. Rate shaping stays with htb on the switch ports: this only delays.

The scheduling (:class:`ReleaseQueue`) is pure and takes ``now`` as an argument, so it is
tested without root; :func:`main` is the process (``python -m fabric.delayline``). It
dies with the process that started it (PR_SET_PDEATHSIG) and on SIGTERM, writing its
counters (frames forwarded and dropped, peak buffer) as JSON to ``--stats``.
"""

import argparse
import collections
import ctypes
import json
import os
import select
import signal
import socket
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
MAX_FRAME_BYTES = 65536
# Frames read from one socket before the others get a turn (and due frames are sent).
READ_BATCH = 64
STATS_PERIOD_S = 0.5
PR_SET_PDEATHSIG = 1


class ReleaseQueue:
    """Frames of one direction of one link, each released ``delay_s`` after it arrived.

    The delay is the same for every frame, so release times follow arrival order and a
    FIFO is the schedule: nothing is reordered. The queue holds at most ``capacity_bytes``;
    a frame that does not fit is dropped and counted.

    Parameters
    ----------
    delay_s : float
        One-way delay applied to every frame (seconds, >= 0).
    capacity_bytes : int
        Most bytes held at once (> 0).

    Examples
    --------
    >>> q = ReleaseQueue(0.010, 8)
    >>> q.push(b"abc", now=1.000), q.push(b"def", now=1.002)
    (True, True)
    >>> q.push(b"ghi", now=1.003)  # 9 bytes would be held: dropped
    False
    >>> q.due(now=1.0105), round(q.next_release(), 4)
    ([b'abc'], 1.012)
    """

    def __init__(self, delay_s, capacity_bytes):
        if not delay_s >= 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s!r}")
        if not capacity_bytes > 0:
            raise ValueError(f"capacity_bytes must be > 0, got {capacity_bytes!r}")
        self.delay_s = float(delay_s)
        self.capacity_bytes = int(capacity_bytes)
        self._frames = collections.deque()
        self.held_bytes = 0
        self.peak_bytes = 0
        self.forwarded = 0
        self.dropped = 0

    def __len__(self):
        return len(self._frames)

    def push(self, frame, now):
        """Hold ``frame`` (arrived at ``now``, seconds) until ``now + delay_s``; False if it
        was dropped because the buffer is full."""
        if self.held_bytes + len(frame) > self.capacity_bytes:
            self.dropped += 1
            return False
        self._frames.append((now + self.delay_s, frame))
        self.held_bytes += len(frame)
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return True

    def due(self, now):
        """Remove and return, in arrival order, the frames whose release time is <= ``now``."""
        out = []
        frames = self._frames
        while frames and frames[0][0] <= now:
            frame = frames.popleft()[1]
            self.held_bytes -= len(frame)
            out.append(frame)
        self.forwarded += len(out)
        return out

    def next_release(self):
        """Release time of the oldest frame held, or None when empty."""
        return self._frames[0][0] if self._frames else None


def buffer_bytes(rate_mbps, delay_s, mtu):
    """Buffer of one direction: twice the bytes in flight at ``rate_mbps`` over ``delay_s``
    (the input is shaped to that rate, so this holds a line-rate stream with room for htb's
    bursts), and never less than 16 frames of ``mtu``."""
    return int(max(2 * rate_mbps * 1e6 / 8 * delay_s, 16 * (mtu + 14)))


def next_timeout(queues, now):
    """Seconds until the earliest release among ``queues`` (0 if one is late), or None when
    all are empty (wait for input only)."""
    times = [t for t in (q.next_release() for q in queues) if t is not None]
    return None if not times else max(0.0, min(times) - now)


def _raw_socket(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        # Our own sends would otherwise be read back from the interface they leave by.
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    except OSError:
        pass  # filtered by packet type in the loop instead
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        s.setsockopt(socket.SOL_SOCKET, opt, 8 * 1024 * 1024)
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def _die_with_parent(parent_pid):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # it died before prctl took effect
        sys.exit(1)


class Forwarder:
    """Both directions of every link given: ``links`` is a list of ``(end_a, end_b, delay_s,
    capacity_bytes)``, interface names in this namespace."""

    def __init__(self, links):
        self.routes = {}   # socket fd -> (queue, output socket)
        self.queues = []
        self.socks = []
        self._out = []
        for a, b, delay_s, capacity in links:
            sa, sb = _raw_socket(a), _raw_socket(b)
            self.socks += [sa, sb]
            for src, dst in ((sa, sb), (sb, sa)):
                q = ReleaseQueue(delay_s, capacity)
                self.queues.append(q)
                self.routes[src.fileno()] = (q, src, dst)
                self._out.append((q, dst))
        self.send_errors = 0

    def stats(self):
        return {"frames_forwarded": sum(q.forwarded for q in self.queues),
                "frames_dropped": sum(q.dropped for q in self.queues),
                "send_errors": self.send_errors,
                "peak_buffer_bytes": max((q.peak_bytes for q in self.queues), default=0)}

    def _read(self, fd, now):
        q, src, _ = self.routes[fd]
        for _ in range(READ_BATCH):
            try:
                frame, addr = src.recvfrom(MAX_FRAME_BYTES)
            except BlockingIOError:
                return
            if addr[2] != PACKET_OUTGOING:
                q.push(frame, now)

    def _release(self, now):
        for q, dst in self._out:
            for frame in q.due(now):
                try:
                    dst.send(frame)
                except OSError:
                    self.send_errors += 1

    def run(self, stop, on_stats, clock=time.monotonic):
        """Forward until ``stop()`` is true; ``on_stats(dict)`` every STATS_PERIOD_S."""
        next_stats = clock()
        fds = [s.fileno() for s in self.socks]
        while not stop():
            now = clock()
            timeout = next_timeout(self.queues, now)
            timeout = STATS_PERIOD_S if timeout is None else min(timeout, STATS_PERIOD_S)
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except InterruptedError:
                continue
            now = clock()
            for fd in ready:
                self._read(fd, now)
            self._release(clock())
            if now >= next_stats:
                on_stats(self.stats())
                next_stats = now + STATS_PERIOD_S


def _link_arg(text):
    try:
        a, b, delay_s, capacity = text.split(",")
        return a, b, float(delay_s), int(capacity)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--link {text!r}: expected END_A,END_B,DELAY_S,CAPACITY_BYTES") from None


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fabric.delayline",
                                description="Delay every frame between pairs of interfaces.")
    p.add_argument("--link", type=_link_arg, action="append", required=True,
                   help="END_A,END_B,DELAY_S,CAPACITY_BYTES (repeat per link)")
    p.add_argument("--stats", required=True, help="JSON file the counters are written to")
    p.add_argument("--parent", type=int, help="die when this process (our parent) dies")
    a = p.parse_args(argv)
    if a.parent:
        _die_with_parent(a.parent)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        # Release times are what this process is for: ahead of the agents and the switch
        # when the two cores are busy, as long as the kernel lets us.
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except OSError:
        pass
    try:
        fwd = Forwarder(a.link)
    except OSError as e:
        print(f"error: delayline: {e}", file=sys.stderr)
        return 2

    def write(stats):
        tmp = a.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(stats, f)
        os.replace(tmp, a.stats)

    fwd.run(lambda: bool(stopping), write)
    write(fwd.stats())
    return 0


if __name__ == "__main__":
    sys.exit(main())
