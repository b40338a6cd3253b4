"""The traffic agent: runs inside one emulated host and executes its part of a flow schedule.

Data goes over real TCP between hosts; control never touches the emulated network. Every
agent talks to the run's coordinator (:class:`traffic.coordinator.Coordinator`) over a Unix
socket in the run directory (the filesystem is shared by all network namespaces), with one
JSON object per line:

1. agent -> ``hello``: it listens on its TCP port;
2. coordinator -> ``connect``: every agent listens; open one TCP connection per flow this host
   sends and announce the flow id on it (connection set-up happens before the clock);
   While it connects, agent -> ``progress`` (at most every :data:`PROGRESS_S`, and only
   when a connection was opened or accepted since the last one), so the coordinator tells a
   slow set-up (thousands of connections through a saturated controller) from a stalled one;
3. agent -> ``ready``: every connection of its flows, sending and receiving, is up; it
   carries ``flows``, the 5-tuple of every connection it opened (flow id -> [src ip, dst ip,
   6, source port, destination port]), so the run can announce them to the controller;
4. coordinator -> ``go`` with ``t0`` (CLOCK_MONOTONIC, the same in every namespace of this
   machine): flows start at t0 + start_s once their dependencies are done;
5. agent -> ``done`` for every flow it has fully received; coordinator -> ``done`` relays it
   to the agents whose flows depend on it;
6. agent -> ``report`` with its flow records when all its flows are sent and received, or when
   the coordinator says ``stop``.

A flow's start is when its sender hands the first byte to TCP; its end is when its receiver
has read the last byte. Both are seconds since t0.

Usage (the runner starts it inside a Mininet host):
    python -m traffic.agent --host h1 --schedule run/schedule.jsonl --control run/ctl.sock
"""

import argparse
import json
import queue
import selectors
import socket
import struct
import sys
import threading
import time

from traffic.schedule import Schedule

PORT = 5001
HEADER = struct.Struct("!64sQ")   # flow id, bytes
CHUNK = 256 * 1024
# An agent gives up on set-up after this long without a new connection or header.
SETUP_QUIET_S = 120.0
# A handshake not answered in this long is tried again (the kernel alone would retry the
# SYN for two minutes on one source port).
CONNECT_TIMEOUT_S = 10.0
CONNECT_ATTEMPTS = 6
# Seconds between two progress messages of one agent while it sets up its connections.
PROGRESS_S = 2.0
_PAYLOAD = memoryview(bytes(CHUNK))


class Agent:
    def __init__(self, host, schedule, control_path, ip="0.0.0.0", port=PORT,
                 congestion_control="cubic", window_bytes=None, ports=None):
        self.host = host
        self.schedule = schedule
        self.ports = ports or {}      # flow id -> source port to bind its connection to
        self.cc = congestion_control.encode()
        self.port = port
        self.ip = ip
        self.send_flows = {f.id: f for f in schedule.sending(host)}
        self.recv_flows = {f.id: f for f in schedule.receiving(host)}
        self.records = {}             # flow id -> partial record
        self.lock = threading.Lock()
        self.done = {}                # flow id -> clock time its completion was learned
        self.started = set()
        self.t0 = None
        self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.ctl.connect(control_path)
        self.ctl_lock = threading.Lock()
        self.inbox = queue.Queue()
        threading.Thread(target=self._read_control, daemon=True).start()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if window_bytes:
            # Set before listen so accepted sockets inherit it and the SYN-ACK already
            # advertises the clamped window: the sum of windows then fits the queues, so
            # the fabric behaves losslessly, as RoCE fabrics are run.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, window_bytes)
        self.listener.bind((ip, port))
        self.listener.listen(1024)
        self.out_socks = {}           # flow id -> connected socket
        self.five_tuples = {}         # flow id -> [src ip, dst ip, 6, sport, dport]
        self.in_socks = {}            # socket -> [flow id, remaining]
        self.progress_at = 0.0        # when the last progress message went out
        self.all_received = threading.Event()
        self.sends_left = len(self.send_flows)
        self.sends_done = threading.Event()
        if not self.recv_flows:
            self.all_received.set()
        if not self.send_flows:
            self.sends_done.set()

    # -- control channel -------------------------------------------------------------------
    def tell(self, **msg):
        line = (json.dumps(msg) + "\n").encode()
        with self.ctl_lock:
            self.ctl.sendall(line)

    def _read_control(self):
        for line in self.ctl.makefile("r"):
            self.inbox.put(json.loads(line))
        self.inbox.put({"type": "gone"})

    def next_message(self, timeout=None):
        msg = self.inbox.get(timeout=timeout)
        if msg["type"] == "gone":
            raise SystemExit(f"agent {self.host}: coordinator went away")
        return msg

    def expect(self, kind):
        while True:
            msg = self.next_message()
            if msg["type"] == kind:
                return msg
            if msg["type"] == "done":
                self.done[msg["id"]] = self.now() if self.t0 is not None else 0.0
            elif msg["type"] == "stop":
                self.report()
                raise SystemExit(0)

    def report(self):
        self.tell(type="report", host=self.host, records=list(self.records.values()))

    # -- setup -----------------------------------------------------------------------------
    def _tcp(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.cc)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def connect_all(self, peers):
        # Every agent starts with the peer after it (not all with the first host, which
        # would take every host's first handshake at once).
        order = sorted(peers)
        me = order.index(self.host) if self.host in order else 0
        rank = {h: (i - me) % len(order) for i, h in enumerate(order)}
        for f in sorted(self.send_flows.values(), key=lambda f: (rank.get(f.dst, 0), f.id)):
            s = self._connect(f, peers[f.dst])
            got = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0")
            if got != self.cc:
                raise SystemExit(f"agent {self.host}: congestion control {got!r} not {self.cc!r}")
            s.sendall(HEADER.pack(f.id.encode(), f.bytes))
            self.out_socks[f.id] = s
            (src, sport), (dst, dport) = s.getsockname(), s.getpeername()
            self.five_tuples[f.id] = [src, dst, socket.IPPROTO_TCP, sport, dport]
            self._progress()

    def _progress(self):
        """Tell the coordinator that connections are being made (rate-limited; called by
        the connecting thread and the accepting one)."""
        now = time.monotonic()
        if now - self.progress_at >= PROGRESS_S:
            self.progress_at = now
            self.tell(type="progress", host=self.host,
                      opened=len(self.out_socks), accepted=len(self.in_socks))

    def _connect(self, f, ip):
        """A connected socket for flow ``f``, from the source port drawn for it if the run
        gave one (see traffic/ports.py). A handshake lost on the way is tried again on a new
        socket with a port the kernel picks (a new source port, so ECMP may hash it
        elsewhere), and so is a drawn port this host holds already (at bind, or at connect:
        the same connection of an earlier run waiting out TIME_WAIT); the 5-tuple the run
        records is the connection's own."""
        sport = self.ports.get(f.id)
        for attempt in range(CONNECT_ATTEMPTS):
            s = self._tcp()
            if sport is not None and attempt == 0:
                try:
                    # Another socket of this host may keep the port in TIME_WAIT.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((self.ip, sport))
                except OSError:
                    s.close()
                    s = self._tcp()
            s.settimeout(CONNECT_TIMEOUT_S)
            try:
                s.connect((ip, self.port))
                s.settimeout(None)
                return s
            except OSError as e:
                s.close()
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise SystemExit(f"agent {self.host}: flow {f.id} to {f.dst} ({ip}): "
                                     f"connect failed {CONNECT_ATTEMPTS} times: {e}") from None

    def accept_all(self):
        """Accept one connection per flow this host receives and read its header.

        Connections are accepted as fast as they arrive and their headers read as they come
        (one selector, no blocking read): with a hundred peers connecting at once, waiting
        on one slow peer's header would let the accept queue overflow and the kernel drop
        the others' handshakes, which TCP retries only after seconds.
        """
        pending = set(self.recv_flows)
        headers = {}   # connection -> bytes of its header so far
        sel = selectors.DefaultSelector()
        self.listener.setblocking(False)
        sel.register(self.listener, selectors.EVENT_READ)
        quiet_since = time.monotonic()
        try:
            while pending:
                events = sel.select(timeout=1.0)
                if events:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since > SETUP_QUIET_S:
                    raise SystemExit(f"agent {self.host}: no connection for {SETUP_QUIET_S} s; "
                                     f"{len(pending)} flows never connected")
                for key, _ in events:
                    if key.fileobj is self.listener:
                        self._accept_ready(sel, headers)
                    else:
                        self._read_header(sel, key.fileobj, headers, pending)
        finally:
            sel.close()

    def _accept_ready(self, sel, headers):
        while True:
            try:
                conn, _ = self.listener.accept()
            except BlockingIOError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, self.cc)
            conn.setblocking(False)
            headers[conn] = b""
            sel.register(conn, selectors.EVENT_READ)

    def _read_header(self, sel, conn, headers, pending):
        try:
            chunk = conn.recv(HEADER.size - len(headers[conn]))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            # A handshake the peer gave up on and retried (see _connect): not a flow.
            sel.unregister(conn)
            del headers[conn]
            conn.close()
            return
        headers[conn] += chunk
        if len(headers[conn]) < HEADER.size:
            return
        sel.unregister(conn)
        fid, nbytes = HEADER.unpack(headers.pop(conn))
        fid = fid.rstrip(b"\0").decode()
        if fid not in pending or self.recv_flows[fid].bytes != nbytes:
            raise SystemExit(f"agent {self.host}: unexpected flow {fid!r} ({nbytes} bytes)")
        pending.discard(fid)
        self.in_socks[conn] = [fid, nbytes]
        self.records[fid] = {"id": fid, "bytes_received": 0, "end_s": None}
        self._progress()

    # -- the timed part --------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def _record(self, fid, **fields):
        with self.lock:
            self.records.setdefault(fid, {"id": fid}).update(fields)

    def receive_loop(self):
        sel = selectors.DefaultSelector()
        for s in self.in_socks:
            sel.register(s, selectors.EVENT_READ)
        buf = bytearray(CHUNK)
        left = len(self.in_socks)
        while left:
            for key, _ in sel.select(timeout=1.0):
                s = key.fileobj
                state = self.in_socks[s]
                n = s.recv_into(buf, min(CHUNK, state[1]) or CHUNK)
                if n == 0:
                    sel.unregister(s)
                    left -= 1
                    continue
                state[1] -= n
                fid = state[0]
                with self.lock:
                    rec = self.records[fid]
                    rec["bytes_received"] += n
                    if state[1] == 0:
                        rec["end_s"] = self.now()
                if state[1] == 0:
                    sel.unregister(s)
                    s.close()
                    left -= 1
                    self.tell(type="done", id=fid)
        self.all_received.set()

    def send_flow(self, f):
        s = self.out_socks.pop(f.id)
        self._record(f.id, start_s=self.now())
        remaining = f.bytes
        while remaining:
            n = s.send(_PAYLOAD[:min(CHUNK, remaining)])
            remaining -= n
        self._record(f.id, sent_s=self.now())
        s.shutdown(socket.SHUT_WR)
        s.close()
        with self.lock:
            self.sends_left -= 1
            if self.sends_left == 0:
                self.sends_done.set()

    def maybe_start(self):
        """Start every flow whose start time has come and whose dependencies are done.
        Returns seconds until the next timed start, or None."""
        wait = None
        now = self.now()
        for f in self.send_flows.values():
            if f.id in self.started or not all(d in self.done for d in f.deps):
                continue
            at = f.start_time(self.done[d] for d in f.deps)
            if at > now:
                wait = at - now if wait is None else min(wait, at - now)
                continue
            self.started.add(f.id)
            threading.Thread(target=self.send_flow, args=(f,), daemon=True).start()
        return wait

    def control_loop(self):
        """Read ``done`` relays from the coordinator and start flows as they unblock."""
        while True:
            wait = self.maybe_start()
            if len(self.started) == len(self.send_flows):
                return
            try:
                msg = self.next_message(timeout=wait)
            except queue.Empty:
                continue
            if msg["type"] == "done":
                self.done[msg["id"]] = self.now()
            elif msg["type"] == "stop":
                raise _Stopped()

    def run(self):
        self.tell(type="hello", host=self.host)
        peers = self.expect("connect")["peers"]
        acceptor = threading.Thread(target=self.accept_all, daemon=True)
        acceptor.start()
        self.connect_all(peers)
        acceptor.join()
        for f in self.send_flows.values():
            self.records[f.id] = {"id": f.id, "start_s": None}
        self.tell(type="ready", host=self.host, flows=self.five_tuples)
        self.t0 = self.expect("go")["t0"]
        time.sleep(max(0.0, self.t0 - time.monotonic()))
        threading.Thread(target=self.receive_loop, daemon=True).start()
        try:
            self.control_loop()
            while not (self.sends_done.is_set() and self.all_received.is_set()):
                try:
                    if self.next_message(timeout=0.05)["type"] == "stop":
                        break
                except queue.Empty:
                    pass
        except _Stopped:
            pass
        self.report()
        self.expect("exit")


class _Stopped(Exception):
    """The coordinator ended the run before this agent finished."""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--schedule", required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--port", type=int, default=PORT)
    p.add_argument("--cc", default="cubic")
    p.add_argument("--window", type=int, default=0,
                   help="receive buffer per connection in bytes (0: kernel autotuning)")
    p.add_argument("--ports", help="JSON file {flow id: source port} of the run's flows "
                                   "(default: the kernel picks every port)")
    a = p.parse_args(argv)
    schedule = Schedule.from_jsonl(a.schedule)
    ports = None
    if a.ports:
        with open(a.ports) as f:
            ports = json.load(f)
    Agent(a.host, schedule, a.control, port=a.port, congestion_control=a.cc,
          window_bytes=a.window, ports=ports).run()


if __name__ == "__main__":
    sys.exit(main())
