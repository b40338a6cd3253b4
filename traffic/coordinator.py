"""The run's side of the agents' control channel: a Unix socket server in the runner.

It waits for every agent's ``hello``, tells them to connect, waits for every ``ready``
(collecting the 5-tuples of the connections the agents opened), calls the run's ``before_go``
hook with them if it has one (e.g. to announce the flows to the controller), starts the clock
(``go`` with a common CLOCK_MONOTONIC t0), relays ``done`` to the agents whose flows depend
on that flow, and collects the ``report`` of every agent; on timeout it sends ``stop`` and
collects what the agents measured so far. See traffic/agent.py for the
protocol. It never touches the emulated network.
"""

import collections
import json
import os
import selectors
import socket
import time


class CoordinatorError(RuntimeError):
    pass


class Coordinator:
    def __init__(self, path, schedule, peers, on_done=None):
        """``peers``: host name -> IP the agents use to reach it; ``on_done(flow id,
        seconds since the clock started)``, if given, is called as each flow is received."""
        self.on_done = on_done
        self.path = path
        self.schedule = schedule
        self.peers = peers
        self.hosts = set(peers)
        self.dependents = collections.defaultdict(set)
        for f in schedule.flows:
            for d in f.deps:
                self.dependents[d].add(f.src)
        if os.path.exists(path):
            os.remove(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(len(self.hosts) + 8)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.server, selectors.EVENT_READ)
        self.conns = {}        # host -> socket
        self.buffers = {}      # socket -> bytes not yet a full line
        self.owner = {}        # socket -> host
        self.events = collections.defaultdict(set)   # message type -> hosts that sent it
        self.reports = {}
        self.t0 = None
        self.done_at = {}
        self.five_tuples = {}  # flow id -> [src ip, dst ip, proto, sport, dport]
        self.progress_at = None  # when an agent last said it made a connection

    def close(self):
        for s in list(self.conns.values()) + [self.server]:
            try:
                s.close()
            except OSError:
                pass
        if os.path.exists(self.path):
            os.remove(self.path)

    def send(self, host, **msg):
        try:
            self.conns[host].sendall((json.dumps(msg) + "\n").encode())
        except OSError:
            pass

    def broadcast(self, **msg):
        for h in list(self.conns):
            self.send(h, **msg)

    def _handle(self, sock, msg):
        kind = msg["type"]
        if kind == "hello":
            self.conns[msg["host"]] = sock
            self.owner[sock] = msg["host"]
        host = self.owner.get(sock)
        self.events[kind].add(host)
        if kind == "done":
            self.done_at[msg["id"]] = time.monotonic()
            if self.on_done is not None:
                self.on_done(msg["id"], self.done_at[msg["id"]] - self.t0)
            for h in self.dependents.get(msg["id"], ()):
                self.send(h, type="done", id=msg["id"])
        elif kind == "report":
            self.reports[host] = msg["records"]
        elif kind == "ready":
            self.five_tuples.update(msg.get("flows", {}))
        if kind in ("progress", "ready"):
            self.progress_at = time.monotonic()

    def pump(self, timeout):
        for key, _ in self.sel.select(timeout=timeout):
            if key.fileobj is self.server:
                conn, _ = self.server.accept()
                self.sel.register(conn, selectors.EVENT_READ)
                self.buffers[conn] = b""
                continue
            sock = key.fileobj
            data = sock.recv(65536)
            if not data:
                self.sel.unregister(sock)
                self.events["gone"].add(self.owner.get(sock))
                continue
            self.buffers[sock] += data
            *lines, self.buffers[sock] = self.buffers[sock].split(b"\n")
            for line in lines:
                self._handle(sock, json.loads(line))

    connect_s = None  # seconds from "connect" to every agent's "ready" (connection setup)

    def wait_for(self, kind, deadline, alive=lambda: True, stall_s=None, cap=None):
        """Until every agent sent ``kind``; past ``deadline`` a CoordinatorError. With
        ``stall_s`` the deadline moves on while agents report progress: it is then
        ``stall_s`` after the newest progress, but never past ``cap``."""
        while not self.hosts <= self.events[kind]:
            now = time.monotonic()
            if stall_s is not None and self.progress_at is not None:
                deadline = max(deadline, min(cap, self.progress_at + stall_s))
            if now > deadline:
                missing = sorted(self.hosts - self.events[kind])
                why = ""
                if stall_s is not None and self.progress_at is not None:
                    why = " (still connecting when the set-up limit was reached)" \
                        if deadline >= cap else \
                        f" (no connection made for {now - self.progress_at:.0f} s)"
                raise CoordinatorError(f"no '{kind}' from {len(missing)} agents: "
                                       f"{missing[:8]}{why}")
            if self.events["gone"] - self.events["report"]:
                gone = sorted(h or "?" for h in self.events["gone"] - self.events["report"])
                raise CoordinatorError(f"agents exited early: {gone[:8]}")
            alive()
            self.pump(0.05)

    def run(self, setup_timeout_s, run_timeout_s, alive=lambda: True, start_delay_s=0.2,
            before_go=None, setup_cap_s=None):
        """Drive one execution; return (records by flow id, whether it timed out).

        Connection set-up may take ``setup_timeout_s``, and longer while the agents report
        progress: until ``setup_timeout_s`` passed without any, or ``setup_cap_s`` (default
        ``setup_timeout_s``) in all.

        ``before_go(five_tuples)``, if given, runs once every agent is ready and before the
        clock starts, with ``{flow id: [src ip, dst ip, proto, sport, dport]}``.
        """
        self.wait_for("hello", time.monotonic() + setup_timeout_s, alive)
        connect_at = time.monotonic()
        self.broadcast(type="connect", peers=self.peers)
        self.wait_for("ready", connect_at + setup_timeout_s, alive, stall_s=setup_timeout_s,
                      cap=connect_at + max(setup_timeout_s, setup_cap_s or 0.0))
        self.connect_s = time.monotonic() - connect_at
        if before_go is not None:
            before_go(dict(self.five_tuples))
        self.t0 = time.monotonic() + start_delay_s
        self.broadcast(type="go", t0=self.t0)
        timed_out = False
        try:
            self.wait_for("report", self.t0 + run_timeout_s, alive)
        except CoordinatorError:
            timed_out = True
            self.broadcast(type="stop")
            try:
                self.wait_for("report", time.monotonic() + 5.0, alive)
            except CoordinatorError:
                pass
        self.broadcast(type="exit")
        return self.merge(), timed_out

    def merge(self):
        """One record per flow: start from its sender, end and bytes from its receiver."""
        records = {f.id: {"id": f.id, "src": f.src, "dst": f.dst, "bytes": f.bytes,
                          "start_s": None, "end_s": None, "bytes_received": 0}
                   for f in self.schedule.flows}
        for recs in self.reports.values():
            for r in recs:
                rec = records.get(r["id"])
                if rec is not None:
                    rec.update({k: v for k, v in r.items() if k in rec and k != "id"})
        return list(records.values())
