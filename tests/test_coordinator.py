"""The coordinator's connection set-up limit: slow set-up that keeps making progress goes on,
a stalled one fails after its limit, and nothing goes on past the cap. Fake agents speak the
control protocol (traffic/agent.py) over the run's Unix socket; no network."""

import json
import socket
import threading
import time

import pytest

from traffic.coordinator import Coordinator, CoordinatorError
from traffic.schedule import Flow, Schedule


def agents(tmp_path, hosts=("h1", "h2")):
    sched = Schedule([Flow("f1", "h1", "h2", 1000)])
    coord = Coordinator(str(tmp_path / "ctl.sock"), sched, {h: "10.0.0.1" for h in hosts})
    socks = {}
    for h in hosts:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(coord.path)
        socks[h] = s
        tell(s, type="hello", host=h)
    coord.wait_for("hello", time.monotonic() + 5)
    return coord, socks


def tell(sock, **msg):
    sock.sendall((json.dumps(msg) + "\n").encode())


def later(steps):
    """Run ``(delay_s, sock, msg)`` steps in a thread, in order."""
    def run():
        for delay_s, sock, msg in steps:
            time.sleep(delay_s)
            try:
                tell(sock, **msg)
            except OSError:   # the coordinator gave up and closed
                return
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_set_up_that_keeps_making_progress_outlasts_its_limit(tmp_path):
    coord, socks = agents(tmp_path)
    try:
        prog = {"type": "progress", "opened": 1, "accepted": 0}
        steps = [(0.3, socks["h1"], dict(prog, host="h1")) for _ in range(6)]
        steps += [(0.1, socks["h1"], {"type": "ready", "host": "h1", "flows": {}}),
                  (0.1, socks["h2"], {"type": "ready", "host": "h2", "flows": {}})]
        later(steps)
        t0 = time.monotonic()
        coord.wait_for("ready", t0 + 0.6, stall_s=0.6, cap=t0 + 10)
        assert time.monotonic() - t0 >= 1.8   # three times the limit, without failing
    finally:
        coord.close()


def test_set_up_that_stalls_fails_its_limit_after_the_last_progress(tmp_path):
    coord, socks = agents(tmp_path)
    try:
        later([(0.2, socks["h1"], {"type": "progress", "host": "h1", "opened": 1,
                                   "accepted": 0})] * 3)
        t0 = time.monotonic()
        with pytest.raises(CoordinatorError, match=r"no 'ready' from 2 agents.*no connection "
                                                   r"made for 1 s"):
            coord.wait_for("ready", t0 + 0.5, stall_s=1.0, cap=t0 + 30)
        assert 1.5 <= time.monotonic() - t0 < 5
    finally:
        coord.close()


def test_set_up_does_not_go_on_past_its_cap(tmp_path):
    coord, socks = agents(tmp_path)
    try:
        later([(0.1, socks["h2"], {"type": "progress", "host": "h2", "opened": 0,
                                   "accepted": 1})] * 40)
        t0 = time.monotonic()
        with pytest.raises(CoordinatorError, match="still connecting when the set-up limit"):
            coord.wait_for("ready", t0 + 0.3, stall_s=0.3, cap=t0 + 1.5)
        assert 1.5 <= time.monotonic() - t0 < 3
    finally:
        coord.close()


def test_without_progress_the_limit_is_the_deadline(tmp_path):
    coord, _ = agents(tmp_path)
    try:
        t0 = time.monotonic()
        with pytest.raises(CoordinatorError, match=r"no 'ready' from 2 agents: \['h1', 'h2'\]$"):
            coord.wait_for("ready", t0 + 0.5, stall_s=0.5, cap=t0 + 30)
        assert time.monotonic() - t0 < 2
    finally:
        coord.close()
