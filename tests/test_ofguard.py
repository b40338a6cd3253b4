"""Tests of the OpenFlow guard (controllers/ofguard.py) on crafted and mutated messages.

Each zero-length case Ryu 4.34's parser loops on is shown to loop (Ryu's own parser, stopped
by an alarm) and to be refused; truncated headers, lengths past the message or past what
contains them, huge lengths, foreign versions and types are refused with a message naming
the fault; every well-formed message passes. Then thousands of seeded mutants: whatever the
guard passes, Ryu parses at once. No sockets: the launcher's wrapper is tested on a stub.
"""

import random
import signal
import struct

import pytest

import ofwire
from controllers import launcher, ofguard
from controllers.ofguard import Malformed, check

launcher.apply_shim()
from ryu.ofproto import ofproto_parser, ofproto_v1_3_parser  # noqa: E402,F401 - registers 1.3

RYU_MSG = ofproto_parser.msg if not getattr(ofproto_parser.msg, "guarded", False) else None


class Stalled(BaseException):
    """Not an Exception: a handler in Ryu's parser that catches Exception would swallow it
    and loop on, eating memory (once, on a loaded machine, 23 GB)."""


def _alarm(signum, frame):
    raise Stalled()


def ryu_parse(buf, limit_s, catch=False):
    """Ryu's own parse of one message; raises Stalled if it takes more than ``limit_s``.

    The version's parser is called directly: ``ofproto_parser.msg`` catches everything,
    the alarm too. With ``catch``, what Ryu's ``msg`` would catch and log answers None."""
    version, mtype, length, xid = struct.unpack_from("!BBHI", buf)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit_s, limit_s)  # and again, should one be lost
    try:
        parser = ofproto_parser._MSG_PARSERS[version]
        try:
            return parser(None, version, mtype, max(length, 8), xid, bytearray(buf))
        except Stalled:
            raise
        except Exception:  # noqa: BLE001 - what ofproto_parser.msg logs and drops
            if not catch:
                raise
            return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("name", sorted(ofwire.valid_messages()))
def test_well_formed_messages_pass_and_ryu_parses_them(name):
    buf = ofwire.valid_messages()[name]
    check(buf)
    assert ryu_parse(buf, 1.0) is not None


@pytest.mark.parametrize("name", sorted(ofwire.cve_cases()))
def test_each_zero_length_case_stalls_ryu_and_is_refused(name):
    buf = ofwire.cve_cases()[name]
    with pytest.raises(Malformed):
        check(buf)
    # A short alarm: the loops append to a list, and a long one would eat memory.
    with pytest.raises(Stalled):
        ryu_parse(buf, 0.05)


@pytest.mark.parametrize("buf, fault", [
    (b"", "shorter than an OpenFlow header"),
    (b"\x04\x00\x00", "shorter than an OpenFlow header"),
    (ofwire.header("barrier_reply", b"", length=0), "header length 0, message of 8"),
    (ofwire.header("echo_reply", b"abc", length=7), "header length 7"),
    (ofwire.header("echo_reply", b"abc", length=0xFFFF), "header length 65535"),
    (ofwire.header("barrier_reply", b"", version=1), "not 1.3"),
    (ofwire.header(18, b"\0" * 8), "not one a switch sends"),
    (ofwire.header(99, b""), "not one a switch sends"),
    (ofwire.header("features_reply", b"\0" * 8), "< 32"),
    (ofwire.multipart(42, b""), "unknown multipart reply type 42"),
    (ofwire.multipart(0, b"\0" * 100), "must be 1056"),
    (ofwire.multipart(4, b"\0" * 111), "whole number of 112-byte"),
    (ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.in_port_match(1), ofwire.instruction_actions(ofwire.action_output(2)),
        length=0xFFF0)), "runs past"),
    (ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.match(length=0xFFFF), b"")), "match length 65535 runs past"),
    (ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.in_port_match(1), ofwire.instruction_actions(ofwire.action_output(2, 8)))),
     "length 8, must be 16"),
    (ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.in_port_match(1), ofwire.instruction_actions(struct.pack("!HHI", 77, 8, 0)))),
     "unknown action type 77"),
    (ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.in_port_match(1), ofwire.instruction_goto(1, length=16) + b"\0" * 8)),
     "must be 8"),
    (ofwire.header("experimenter", struct.pack("!IIIHHHH4x", 0x4F4E4600, 2300, 1, 0, 0, 1,
                                               0)), "bundle control property at byte 24"),
])
def test_truncated_and_oversized_lengths_are_refused_with_the_fault_named(buf, fault):
    with pytest.raises(Malformed, match=fault):
        check(buf)


def test_nicira_actions_nested_too_deep_are_refused():
    inner = ofwire.action_output(1)
    for _ in range(ofguard.MAX_DEPTH + 2):
        inner = ofwire.nicira_ct(inner)
    msg = ofwire.flow_stats_reply(entries=ofwire.flow_stats_entry(
        ofwire.in_port_match(1), ofwire.instruction_actions(inner)))
    with pytest.raises(Malformed, match="nested"):
        check(msg)


def test_thousands_of_mutants_are_refused_or_parsed_by_ryu_at_once():
    rnd = random.Random(2024)
    seeds = list(ofwire.valid_messages().values()) + list(ofwire.cve_cases().values())
    refused = passed = 0
    for _ in range(4000):
        buf = rnd.choice(seeds)
        for _ in range(rnd.choice([1, 1, 2, 3])):
            buf = ofwire.mutate(buf, rnd)
        try:
            check(buf)
        except Malformed:
            refused += 1
            continue
        passed += 1
        version = buf[0]
        if buf[1] != 0 or version == ofguard.VERSION:
            ryu_parse(buf, 1.0, catch=True)   # may fail to read it (Ryu logs), never hangs
    assert refused > 1000 and passed > 1000, (refused, passed)


class StubDatapath:
    address = ("192.0.2.7", 40000)
    id = 0xBAD

    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


@pytest.fixture
def guarded(monkeypatch):
    """``(guard, parse)``: a fresh guard installed over Ryu's own message parser."""
    monkeypatch.setattr(ofproto_parser, "msg", RYU_MSG)
    guard = ofguard.Guard()
    monkeypatch.setattr(ofguard, "GUARD", guard)
    assert launcher.install_guard() is guard
    return guard, ofproto_parser.msg


def test_the_launchers_guard_closes_the_connection_once_and_drops_the_rest(guarded):
    guard, parse = guarded
    assert parse.guarded and launcher.install_guard() is guard   # installed once
    dp = StubDatapath()
    good = ofwire.barrier_reply(3)
    assert parse(dp, 4, 21, 8, 3, bytearray(good)) is not None
    bad = ofwire.cve_cases()["hello_element"]
    assert parse(dp, 4, 0, len(bad), 0, bytearray(bad)) is None
    assert parse(dp, 4, 21, 8, 3, bytearray(good)) is None   # the rest is not parsed
    assert dp.closed == 1
    status = guard.status()
    assert status["messages_malformed"] == 1 and status["connections_closed"] == 1
    assert status["last_rejected"][0]["peer"] == "192.0.2.7:40000 (dpid 0000000000000bad)"
    assert "hello element" in status["last_rejected"][0]["reason"]


def test_echo_options_are_taken_from_the_command_line_and_checked():
    rest, values = launcher.take_echo_options(
        ["--ofp-tcp-listen-port", "1", "--echo-request-interval", "0.5",
         "--maximum-unreplied-echo-requests=2", "controllers.app"])
    assert rest == ["--ofp-tcp-listen-port", "1", "controllers.app"]
    assert values == {"echo_request_interval": 0.5, "maximum_unreplied_echo_requests": 2}
    assert launcher.take_echo_options(["x.app"]) == (["x.app"], {})
    for bad in (["--echo-request-interval", "soon"], ["--echo-request-interval", "0"],
                ["--maximum-unreplied-echo-requests=-1"], ["--echo-request-interval"]):
        with pytest.raises(launcher.LauncherError, match="echo"):
            launcher.take_echo_options(bad)


class EchoDatapath(StubDatapath):
    def __init__(self):
        super().__init__()
        self.acknowledged = []

    def acknowledge_echo_reply(self, xid):
        self.acknowledged.append(xid)


def test_an_echo_reply_counts_as_it_is_read(guarded):
    # Ryu would take the reply off the switch's unanswered echoes only once its handler ran,
    # behind every packet-in already queued: a busy controller dropped live switches.
    _guard, parse = guarded
    dp = EchoDatapath()
    echo = ofwire.echo_reply(b"", 41)
    assert parse(dp, 4, 3, len(echo), 41, bytearray(echo)) is not None
    barrier = ofwire.barrier_reply(3)
    assert parse(dp, 4, 21, 8, 3, bytearray(barrier)) is not None
    assert dp.acknowledged == [41] and dp.closed == 0
