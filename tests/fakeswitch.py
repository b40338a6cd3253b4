"""Small OpenFlow 1.3 speakers over TCP, for testing the real controller without Mininet.

:class:`GoodSwitch` behaves: HELLO, a FEATURES_REPLY with its dpid, port descriptions,
answers to echo, barrier and statistics requests, and it counts what the controller asks.
:class:`HostileSwitch` connects again and again and sends valid, mutated and malformed
messages (tests/ofwire.py) from a seeded RNG; after each message the guard would refuse
(its own copy of controllers/ofguard.check says which) it expects the controller to close
the connection, and counts whether it did. Threads, not processes: they only move bytes.
"""

import collections
import random
import socket
import struct
import threading
import time

import ofwire
from controllers import ofguard


def read_messages(sock, buf):
    """Whole messages read so far (``buf`` keeps the rest); None once the peer closed."""
    try:
        data = sock.recv(65536)
    except socket.timeout:
        data = b"?"
        if not buf:
            return []
    except OSError:
        return None
    if not data:
        return None
    if data != b"?":
        buf += data
    out = []
    while len(buf) >= 8:
        length = max(struct.unpack_from("!H", buf, 2)[0], 8)
        if len(buf) < length:
            break
        out.append(bytes(buf[:length]))
        del buf[:length]
    return out


class GoodSwitch(threading.Thread):
    """A well-behaved switch with ports 1 and 2; ``counts`` of requests by type name."""

    def __init__(self, port, dpid, answer_echo=True):
        super().__init__(daemon=True)
        self.port, self.dpid, self.answer_echo = port, dpid, answer_echo
        self.counts = collections.Counter()
        self.closed_by_peer = threading.Event()
        self.stop = threading.Event()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.settimeout(0.2)

    def run(self):
        s, buf = self.sock, bytearray()
        s.sendall(ofwire.hello())
        while not self.stop.is_set():
            msgs = read_messages(s, buf)
            if msgs is None:
                self.closed_by_peer.set()
                return
            for m in msgs:
                self._answer(s, m)

    def _answer(self, s, m):
        mtype, xid = m[1], struct.unpack_from("!I", m, 4)[0]
        if mtype == 5:
            self.counts["features_request"] += 1
            s.sendall(ofwire.features_reply(self.dpid, xid))
        elif mtype == 2:
            self.counts["echo_request"] += 1
            if self.answer_echo:
                s.sendall(ofwire.echo_reply(m[8:], xid))
        elif mtype == 20:
            self.counts["barrier_request"] += 1
            s.sendall(ofwire.barrier_reply(xid))
        elif mtype == 18:
            mptype = struct.unpack_from("!H", m, 8)[0]
            if mptype == 13:
                self.counts["port_desc_request"] += 1
                s.sendall(ofwire.port_desc_reply([1, 2], xid))
            elif mptype == 4:
                self.counts["port_stats_request"] += 1
                s.sendall(ofwire.port_stats_reply([1, 2], xid, tx_bytes=1000))
            elif mptype == 1:
                self.counts["flow_stats_request"] += 1
                s.sendall(ofwire.flow_stats_reply(xid, entries=b""))
        else:
            self.counts[f"type_{mtype}"] += 1

    def close(self):
        self.stop.set()
        self.join(timeout=5)
        self.sock.close()


def random_frame(rnd):
    """An Ethernet frame a host might send: ARP, IPv4 TCP/UDP, LLDP, or noise."""
    mac = bytes([2, 0, 0, 0, rnd.randrange(256), rnd.randrange(256)])
    kind = rnd.randrange(4)
    if kind == 0:
        ip = bytes([10, 0, rnd.randrange(4), rnd.randrange(1, 250)])
        return b"\xff" * 6 + mac + b"\x08\x06" + struct.pack(
            "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, bytes([10, 0, 0, 9]))
    if kind == 1:
        tcp = struct.pack("!HHIIBBHHH", rnd.randrange(65536), 5001, 0, 0, 6 << 4, 2, 1000, 0,
                          0) + bytes([rnd.randrange(256), 0, 0, 0])
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0,
                         bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
        return b"\x02\0\0\0\0\x02" + mac + b"\x08\x00" + ip + tcp
    if kind == 2:
        return bytes.fromhex("0180c200000e") + mac + b"\x88\xcc" + bytes(
            rnd.randrange(256) for _ in range(rnd.randrange(2, 40)))
    return bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 64)))


def framed(msg):
    """``(bytes to send, whether the guard refuses any of them)``, as Ryu frames the stream:
    each message is as long as its header says (at least 8 bytes). A message cut short of
    its header's length is padded with zeros to it: the controller must see it whole, not
    wait for the rest (waiting is no fault; echo liveness ends such a connection)."""
    wire = bytearray(msg)
    at, bad = 0, False
    while at < len(wire):
        if len(wire) - at < 8:
            wire += bytes(8 - (len(wire) - at))
        length = max(struct.unpack_from("!H", wire, at + 2)[0], 8)
        if len(wire) - at < length:
            wire += bytes(length - (len(wire) - at))
        try:
            ofguard.check(wire[at:at + length])
        except ofguard.Malformed:
            bad = True
        at += length
    return bytes(wire), bad


class HostileSwitch(threading.Thread):
    """Connects, optionally completes the handshake with a dpid of its own, then sends
    messages until it sends one the guard refuses; waits for the controller to close the
    connection, and starts again, until ``total`` messages were sent or ``stop`` is set.

    Attributes
    ----------
    sent, malformed, closed, unexpected_closes, not_closed : int
        Messages sent; of them refused by the guard; connections the controller closed
        after one; connections it closed after only accepted messages; refused messages
        after which the connection stayed open (should stay 0).
    """

    def __init__(self, port, seed, total, handshake, dpid_base, mutate_share=0.3):
        super().__init__(daemon=True)
        self.port, self.total, self.handshake = port, total, handshake
        self.rnd = random.Random(seed)
        self.dpid_base, self.mutate_share = dpid_base, mutate_share
        self.stop = threading.Event()
        self.sent = self.malformed = self.closed = 0
        self.unexpected_closes = self.not_closed = self.connections = 0
        self.seeds = list(ofwire.valid_messages().values())
        self.cves = list(ofwire.cve_cases().values())

    def _message(self):
        rnd = self.rnd
        r = rnd.random()
        if r < 0.02:
            return rnd.choice(self.cves)
        if r < 0.45:
            return ofwire.packet_in(random_frame(rnd), in_port=rnd.choice([1, 2, 3]))
        buf = rnd.choice(self.seeds)
        if rnd.random() < self.mutate_share:
            buf = ofwire.mutate(buf, rnd)
        return buf

    def run(self):
        while self.sent < self.total and not self.stop.is_set():
            try:
                self._connection()
            except OSError:
                time.sleep(0.05)

    def _connection(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.connections += 1
        buf = bytearray()
        try:
            s.settimeout(0.0)
            if self.handshake:
                s.sendall(ofwire.hello() + ofwire.features_reply(
                    self.dpid_base + self.connections) + ofwire.port_desc_reply([1, 2, 3]))
            while self.sent < self.total and not self.stop.is_set():
                msg, bad = framed(self._message())
                s.settimeout(5)
                s.sendall(msg)
                self.sent += 1
                s.settimeout(0.0)
                if self._closed(s, buf):      # read what the controller sends meanwhile
                    self.unexpected_closes += 1
                    return
                if bad:
                    self.malformed += 1
                    # Generous: the close follows at once, but a loaded machine can hold
                    # the controller's green thread for seconds.
                    if self._wait_closed(s, buf, 20.0):
                        self.closed += 1
                    else:
                        self.not_closed += 1
                    return
        finally:
            s.close()

    @staticmethod
    def _closed(s, buf):
        """Whether the controller closed the connection; reads what it sent meanwhile and
        answers its echo requests, as a live switch does: a connection that only ever sent
        valid messages must not end by echo liveness while this thread is slowed down."""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return True
                buf += data
                while len(buf) >= 8:
                    length = max(struct.unpack_from("!H", buf, 2)[0], 8)
                    if len(buf) < length:
                        break
                    m = bytes(buf[:length])
                    del buf[:length]
                    if m[1] == 2:   # ECHO_REQUEST
                        s.settimeout(5)
                        s.sendall(ofwire.echo_reply(m[8:], struct.unpack_from("!I", m, 4)[0]))
                        s.settimeout(0.0)
        except (BlockingIOError, socket.timeout):
            return False
        except OSError:
            return True

    @staticmethod
    def _wait_closed(s, buf, timeout_s):
        deadline = time.monotonic() + timeout_s
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                if not s.recv(65536):
                    return True
            except socket.timeout:
                continue
            except OSError:
                return True
        return False
