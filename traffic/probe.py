"""A 1 kHz UDP probe stream: how long traffic stops when a link fails, and how much is lost.

The sender (inside one emulated host) sends small sequence-numbered UDP datagrams at a fixed
rate, then a few end markers carrying how many it sent; the receiver (inside another host)
notes the arrival time of every datagram and writes one JSON object: sent, received, lost,
the longest run of consecutive lost sequence numbers, the *gap* (the longest interval between
two consecutive arrivals, ms, with when it began) and every arrival, so a caller can look at
the gap around a moment of its choosing. At 1 kHz a path that keeps working shows gaps of
about 1 ms; a failure shows as one long gap (and so does a sender the scheduler stalls, which
loses nothing: the loss run tells them apart).

Used by bench/failover.py; it only measures, it does not fail links. The analysis
(:func:`analyze`) is a pure function of arrival times.

Usage (inside Mininet hosts):
    python -m traffic.probe recv --port 5002 --out result.json --timeout 20
    python -m traffic.probe send --dst 10.0.0.16 --port 5002 --rate 1000 --duration 4
"""

import argparse
import json
import socket
import struct
import sys
import time

PORT = 5002
PACKET = struct.Struct("!cQ")      # kind (b"p" probe, b"e" end), sequence number or count
PAYLOAD_BYTES = 64                  # small: the probe must not load the path it measures
END_MARKERS = 5


def analyze(arrivals, sent):
    """What a probe stream saw.

    Parameters
    ----------
    arrivals : list of (seq, seconds)
        Every probe received, in arrival order, with its arrival time.
    sent : int or None
        How many the sender sent (None if its end marker never arrived).

    Returns
    -------
    dict
        ``sent``, ``received`` (distinct sequence numbers), ``lost`` (sent - received, None
        without ``sent``), ``duplicates``, ``reordered`` (arrivals with a lower sequence number
        than one before them), ``longest_loss_run`` (most consecutive sequence numbers that
        never arrived, counting up to ``sent``), ``gap_ms`` (longest interval between
        consecutive arrivals), ``gap_start_s`` (arrival time before that gap) and
        ``gap_seqs`` (the sequence numbers around it).

    Examples
    --------
    >>> r = analyze([(0, 0.0), (1, 0.001), (5, 0.050), (6, 0.051)], sent=7)
    >>> r["lost"], r["longest_loss_run"], round(r["gap_ms"]), r["gap_seqs"]
    (3, 3, 49, [1, 5])
    """
    seqs = [s for s, _ in arrivals]
    distinct = set(seqs)
    highest, reordered = -1, 0
    for s in seqs:
        if s < highest:
            reordered += 1
        highest = max(highest, s)
    run = longest_run = 0
    for seq in range(sent if sent is not None else max(distinct, default=-1) + 1):
        run = 0 if seq in distinct else run + 1
        longest_run = max(longest_run, run)
    gap, gap_at, gap_seqs = 0.0, None, None
    for (s0, t0), (s1, t1) in zip(arrivals, arrivals[1:]):
        if t1 - t0 > gap:
            gap, gap_at, gap_seqs = t1 - t0, t0, [s0, s1]
    return {
        "sent": sent,
        "received": len(distinct),
        "lost": None if sent is None else sent - len(distinct),
        "duplicates": len(seqs) - len(distinct),
        "reordered": reordered,
        "longest_loss_run": longest_run,
        "gap_ms": gap * 1000.0,
        "gap_start_s": gap_at,
        "gap_seqs": gap_seqs,
    }


def send(dst, port, rate_hz, duration_s):
    """Send ``rate_hz * duration_s`` probes to (dst, port) at a steady rate; return the count."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pad = bytes(PAYLOAD_BYTES - PACKET.size)
    period = 1.0 / rate_hz
    total = int(rate_hz * duration_s)
    start = time.monotonic()
    for seq in range(total):
        # Pace against the start time, not the previous send, so delays do not accumulate.
        delay = start + seq * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        try:
            sock.sendto(PACKET.pack(b"p", seq) + pad, (dst, port))
        except OSError:
            pass  # no route for a moment is what we measure, not a reason to stop
    for _ in range(END_MARKERS):
        sock.sendto(PACKET.pack(b"e", total) + pad, (dst, port))
        time.sleep(0.01)
    return total


def receive(port, timeout_s):
    """Receive probes until an end marker arrives or ``timeout_s`` passes; return
    :func:`analyze` of what arrived, with the arrivals themselves (``[seq, seconds]``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    deadline = time.monotonic() + timeout_s
    arrivals, sent = [], None
    while sent is None:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            data = sock.recv(2048)
        except socket.timeout:
            break
        now = time.monotonic()
        if len(data) < PACKET.size:
            continue
        kind, value = PACKET.unpack_from(data)
        if kind == b"p":
            arrivals.append((value, now))
        elif kind == b"e":
            sent = value
    return dict(analyze(arrivals, sent), arrivals=arrivals)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="role", required=True)
    s = sub.add_parser("send")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, default=PORT)
    s.add_argument("--rate", type=float, default=1000.0, help="probes per second")
    s.add_argument("--duration", type=float, required=True, help="seconds")
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, default=PORT)
    r.add_argument("--out", required=True, help="JSON result file")
    r.add_argument("--timeout", type=float, default=30.0, help="give up after this long (s)")
    a = p.parse_args(argv)
    if a.role == "send":
        send(a.dst, a.port, a.rate, a.duration)
        return 0
    result = receive(a.port, a.timeout)
    with open(a.out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
