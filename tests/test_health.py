"""Gray failures and flap dampening: controllers/health.py alone, then in the routing core on
a fake datapath with mocked time, for every policy.

A gray link is one that stays up (its ports live, its LLDP probes answered) while what it
delivers collapsed or its drop counters rise; the core must route around it, keep it out
while it is sick, bring it back once healthy for ``restore_s``, and report when and how fast
it was found. A link that keeps failing is suppressed by an exponentially decaying penalty
(BGP-style dampening) so routes do not churn with it. The emulation variant (a real link
made gray under traffic) is in tests/test_health_emulation.py.
"""

import collections
import doctest
import itertools
import math

import pytest

from controllers import health as health_module
from controllers.core import POLICIES, PolicyError, RoutingCore
from controllers.health import HealthConfig, HealthError, LinkHealth, PortCounters
from controllers.rules import FlowKey, PacketOut
from fabric.model import host_switch, hosts, switches
from fakedp import FakeFabric
from topologies import build

LINK = ((1, 1), (2, 1))
PEERS = {(1, 1): (2, 1), (2, 1): (1, 1)}


def test_the_module_examples_hold():
    assert doctest.testmod(health_module).failed == 0


class Wire:
    """Cumulative counters of the two ends of LINK; each round sends ``pps`` packets of
    1,000 bytes each way, of which ``delivered`` reach the far end and ``dropped`` are
    counted as dropped at the near end."""

    def __init__(self):
        self.c = {end: collections.Counter() for end in PEERS}

    def round(self, health, t, pps=1000, delivered=1.0, dropped=0.0, dt=1.0):
        for near, far in PEERS.items():
            sent = int(pps * dt * (1 - dropped))
            self.c[near]["tx_packets"] += sent
            self.c[near]["tx_bytes"] += 1000 * sent
            self.c[near]["tx_dropped"] += int(pps * dt) - sent
            self.c[far]["rx_packets"] += int(sent * delivered)
            self.c[far]["rx_bytes"] += int(1000 * sent * delivered)
        for (dpid, port), c in self.c.items():
            health.sample(dpid, {port: PortCounters(**c)}, t)
        return health.evaluate(PEERS, t)


def test_a_link_delivering_a_tenth_of_what_is_sent_is_degraded_after_two_rounds():
    health, wire = LinkHealth(HealthConfig(restore_s=5.0)), Wire()
    assert wire.round(health, 0.0) == ([], [])
    assert wire.round(health, 1.0) == ([], [])
    assert wire.round(health, 2.0, delivered=0.1) == ([], [])      # one bad round: not yet
    assert wire.round(health, 3.0, delivered=0.1) == ([LINK], [])
    (out,) = health.status(3.0)["excluded"]
    assert out["degraded"] and not out["suppressed"]
    # The collapse began with the window of the first bad round (from t=1): found 2 s later.
    assert out["detection_s"] == pytest.approx(2.0)
    assert out["why"]["delivered_share"] == pytest.approx(0.1)
    assert health.counters["degraded"] == 1


def test_drops_rising_degrade_a_link_whose_deliveries_look_fine():
    health, wire = LinkHealth(), Wire()
    wire.round(health, 0.0)
    wire.round(health, 1.0, dropped=0.2)
    assert wire.round(health, 2.0, dropped=0.2) == ([LINK], [])
    assert health.status(2.0)["excluded"][0]["why"]["drop_share"] == pytest.approx(0.2)


def test_one_bad_round_idle_rounds_and_small_noise_degrade_nothing():
    health, wire = LinkHealth(), Wire()
    wire.round(health, 0.0)
    for t, kw in enumerate([dict(delivered=0.1), dict(), dict(delivered=0.1),
                            dict(pps=10, delivered=0.0), dict(pps=10, delivered=0.0),
                            dict(pps=10, dropped=0.5), dict(delivered=0.9),
                            dict(delivered=0.9), dict(dropped=0.01), dict(dropped=0.01)],
                           start=1):
        assert wire.round(health, float(t), **kw) == ([], []), (t, kw)
    assert health.excluded() == set() and not health.counters["degraded"]


class Ends:
    """Running counters of LINK's two ends; each round adds its deltas and judges."""

    def __init__(self):
        self.total = {end: collections.Counter() for end in sorted(PEERS)}

    def round(self, health, t, near, far):
        for end, d in zip(sorted(PEERS), (near, far)):
            self.total[end].update(d)
            health.sample(end[0], {end[1]: PortCounters(
                **{f: self.total[end][f] for f in PortCounters._fields})}, t)
        return health.evaluate(PEERS, t)


def test_a_link_black_holing_tcp_segments_is_found_though_its_flows_go_quiet():
    """Counters measured on the emulator (k=4, TCP, the far end's MTU cut to 1,500): 13 of
    55 packets dropped in the first second, then the flows wait out retransmission
    timeouts: 1 sent, 2 dropped; too few for ``min_packets``, but mostly dropped. Weighed
    as the 8.3 kB frames the link carried, the 2 dropped are 99% of the volume offered."""
    health, ends = LinkHealth(), Ends()
    busy = (dict(tx_packets=300, tx_bytes=2_500_000), dict(rx_packets=300, rx_bytes=2_500_000))
    for t in range(3):
        assert ends.round(health, float(t), *busy) == ([], [])
    assert ends.round(health, 3.0, dict(tx_packets=42, tx_bytes=350_000, tx_dropped=13),
                     dict(rx_packets=42, rx_bytes=350_000)) == ([], [])
    assert ends.round(health, 4.0, dict(tx_packets=1, tx_bytes=108, tx_dropped=2),
                     dict(rx_packets=1, rx_bytes=108, rx_dropped=2)) == ([LINK], [])
    frame_bytes = 2_500_000 / 300
    assert health.status(4.0)["excluded"][0]["why"]["drop_share"] == pytest.approx(
        2 * frame_bytes / (108 + 2 * frame_bytes), abs=0.001)


# Counters of an aggregation -> core direction measured on the emulator (chaos seed 4,
# congestion, a2 -> c4 made gray at 0.37 utilization), per second: jumbo data before; after,
# the flows across it back off and it carries only the acknowledgements of other flows
# (66-69 bytes each) plus the few retransmissions it drops.
AGG_CORE_BEFORE = [(159, 1_414_648), (170, 1_520_988), (117, 1_045_732)]
AGG_CORE_GRAY = [(43, 2880, 4), (138, 9452, 1), (16, 1108, 7), (30, 1980, 10),
                 (22, 1494, 10), (40, 2640, 3), (25, 1692, 3)]


def _both_ends(tx_packets, tx_bytes, dropped=0, far_dropped=None):
    """One round's deltas of LINK's near and far end: what the near end sent arrives, and
    what it dropped is counted at both ends (as a veth does)."""
    far_dropped = dropped if far_dropped is None else far_dropped
    return (dict(tx_packets=tx_packets, tx_bytes=tx_bytes, tx_dropped=dropped),
            dict(rx_packets=tx_packets, rx_bytes=tx_bytes, rx_dropped=far_dropped))


def test_a_link_black_holing_large_frames_under_acknowledgements_is_found_in_two_rounds():
    """Counted in packets, those rounds were 8.5%, 0.7% (resetting the streak), then under
    ``min_packets`` and never mostly dropped: not found in 7 s (the chaos run found it after
    11.8 s, once its last flows timed out). Weighed as the 8.9 kB frames it carried, the
    drops are most of the volume offered from the first round on."""
    health, ends = LinkHealth(), Ends()
    for t, (pk, b) in enumerate(AGG_CORE_BEFORE):
        assert ends.round(health, float(t), *_both_ends(pk, b)) == ([], [])
    t0 = len(AGG_CORE_BEFORE)
    assert ends.round(health, float(t0), *_both_ends(*AGG_CORE_GRAY[0])) == ([], [])
    assert ends.round(health, t0 + 1.0, *_both_ends(*AGG_CORE_GRAY[1])) == ([LINK], [])
    (out,) = health.status(t0 + 1.0)["excluded"]
    assert out["detection_s"] == pytest.approx(2.0) and out["why"]["drop_share"] > 0.4
    # Judged in packets (its frames never larger than an acknowledgement), the same rounds
    # find nothing: the history of large frames is what weighs the drops.
    health, ends = LinkHealth(), Ends()
    for t, round_ in enumerate(AGG_CORE_GRAY):
        assert ends.round(health, float(t), *_both_ends(*round_)) == ([], []), t


def test_a_congested_link_at_capacity_dropping_at_its_tail_is_not_degraded():
    """Both ways at capacity, jumbo data and acknowledgements mixed, 1% of the packets
    dropped at the tail of its queue each round: congestion, not a gray link."""
    health, ends = LinkHealth(), Ends()
    for t in range(12):
        # 280 data frames of 8,948 bytes and 120 acknowledgements of 66, 4 dropped.
        assert ends.round(health, float(t),
                          *_both_ends(396, 280 * 8948 + 116 * 66, dropped=4)) == ([], []), t
    assert not health.counters["degraded"]


def test_an_idle_link_and_a_link_carrying_only_acknowledgements_are_not_degraded():
    """After carrying jumbo data, a direction carries only the acknowledgements of the flows
    the other way (no drop), then nothing, then one stray drop in one round: nothing is
    flagged (the stray round is bad alone, the next fine one ends its streak)."""
    health, ends = LinkHealth(), Ends()
    rounds = ([_both_ends(pk, b) for pk, b in AGG_CORE_BEFORE]
              + [_both_ends(300, 300 * 66)] * 6 + [_both_ends(0, 0)] * 3
              + [_both_ends(0, 0, dropped=1)] + [_both_ends(300, 300 * 66)] * 3
              + [_both_ends(300, 300 * 66, dropped=1)] + [_both_ends(300, 300 * 66)] * 3)
    for t, (near, far) in enumerate(rounds):
        assert ends.round(health, float(t), near, far) == ([], []), t
    assert not health.counters["degraded"]


def test_counters_read_late_by_a_slow_controller_degrade_no_healthy_link():
    """A controller behind reads the near end 1.5 s after the far end, rounds 0.3 to 3 s
    long: each end's rate is its own bytes over its own interval, nothing is dropped, so
    a busy healthy link is judged fine, never gray."""
    health = LinkHealth()
    near, far = sorted(PEERS)
    total_bytes = 0
    rate_bps, frame_bytes = 16e6, 8948
    t = 0.0
    for dt in (1.0, 3.0, 0.3, 2.0, 0.5, 3.0, 1.0, 0.3, 2.5):
        t += dt
        # The far end read at t, the near end at t + 1.5 with what it sent by then.
        far_bytes = int(rate_bps / 8 * t)
        near_bytes = int(rate_bps / 8 * (t + 1.5))
        total_bytes = near_bytes
        health.sample(far[0], {far[1]: PortCounters(
            tx_bytes=0, rx_bytes=far_bytes, rx_packets=far_bytes // frame_bytes)}, t)
        health.sample(near[0], {near[1]: PortCounters(
            tx_bytes=total_bytes, tx_packets=total_bytes // frame_bytes)}, t + 1.5)
        assert health.evaluate(PEERS, t + 1.5) == ([], []), t
    assert not health.counters["degraded"]


def test_quiet_rounds_and_a_drop_among_many_packets_degrade_nothing():
    """A packet or two a round with none dropped, one round where one of two was dropped,
    a drop in a busy round: noise, not a gray link."""
    health, ends = LinkHealth(), Ends()
    rounds = [(dict(tx_packets=2, tx_bytes=200), dict(rx_packets=2, rx_bytes=200)),
              (dict(tx_packets=1, tx_bytes=100, tx_dropped=1), dict(rx_packets=1, rx_bytes=100)),
              (dict(tx_packets=1, tx_bytes=100), dict(rx_packets=1, rx_bytes=100)),
              (dict(tx_packets=300, tx_bytes=300_000, tx_dropped=1),
               dict(rx_packets=300, rx_bytes=300_000)),
              (dict(tx_packets=300, tx_bytes=300_000, tx_dropped=1),
               dict(rx_packets=300, rx_bytes=300_000)),
              (dict(), dict()), (dict(tx_packets=1, tx_bytes=9000), dict())]
    for t, (near, far) in enumerate(rounds):
        assert ends.round(health, float(t), near, far) == ([], []), t
    assert not health.counters["degraded"]


def test_a_degraded_link_returns_after_restore_s_without_a_bad_round_and_idle_is_not_bad():
    health, wire = LinkHealth(HealthConfig(restore_s=5.0)), Wire()
    wire.round(health, 0.0)
    wire.round(health, 1.0, delivered=0.1)
    assert wire.round(health, 2.0, delivered=0.1) == ([LINK], [])
    # Routed around, it carries a trickle: below min_packets, no verdict either way.
    for t in range(3, 7):
        assert wire.round(health, float(t), pps=5) == ([], [])
    assert wire.round(health, 7.0, pps=5) == ([], [LINK])
    assert health.excluded() == set()
    assert [e["event"] for e in health.events] == ["degraded", "restored"]


def test_a_degraded_link_still_bad_under_its_trickle_stays_out():
    health, wire = LinkHealth(HealthConfig(restore_s=3.0)), Wire()
    wire.round(health, 0.0)
    wire.round(health, 1.0, delivered=0.0)
    wire.round(health, 2.0, delivered=0.0)
    for t in range(3, 10):
        assert wire.round(health, float(t), pps=100, delivered=0.0) == ([], [])
    assert health.excluded() == {LINK}


def test_flaps_are_dampened_with_an_exponentially_decaying_penalty():
    cfg = HealthConfig(flap_penalty=1000, suppress=2500, reuse=750, half_life_s=10.0)
    health = LinkHealth(cfg)
    health.link_down(LINK, 0.0)
    health.link_down(LINK, 1.0)
    assert health.excluded() == set()                   # 1000 * 2**-0.1 + 1000 < 2500
    health.link_down(LINK, 2.0)
    assert health.excluded() == {LINK}                  # about 2800: suppressed
    (out,) = health.status(2.0)["excluded"]
    assert out["suppressed"] and not out["degraded"]
    penalty = out["penalty"]
    # Suppressed until the penalty decays below reuse: half_life * log2(penalty / reuse).
    back_at = 2.0 + cfg.half_life_s * math.log2(penalty / cfg.reuse)
    assert health.evaluate(PEERS, back_at - 0.5) == ([], [])
    assert health.evaluate(PEERS, back_at + 0.5) == ([], [LINK])
    assert health.counters["suppressed"] == 1 and health.counters["reused"] == 1
    # Nothing is remembered once the penalty is gone.
    health.evaluate(PEERS, back_at + 200)
    assert health._links == {}


def test_the_penalty_has_a_ceiling_so_a_link_that_flapped_for_hours_comes_back():
    cfg = HealthConfig(half_life_s=10.0)
    health = LinkHealth(cfg)
    for t in range(1000):
        health.link_down(LINK, float(t))
    worst = cfg.half_life_s * math.log2(cfg.max_penalty / cfg.reuse)
    assert health.evaluate(PEERS, 999 + worst + 0.1) == ([], [LINK])


def test_bad_options_name_themselves():
    with pytest.raises(HealthError, match="restore_s"):
        HealthConfig.from_options({"restore_s": -1})
    with pytest.raises(HealthError, match="unknown health option 'bogus'"):
        HealthConfig.from_options({"bogus": 1})
    with pytest.raises(HealthError, match="detect_rounds"):
        HealthConfig.from_options({"detect_rounds": 1.5})
    with pytest.raises(PolicyError, match="loss_ratio"):
        RoutingCore(health={"loss_ratio": 2})


def test_counters_that_go_backwards_start_over_without_a_verdict():
    health, wire = LinkHealth(), Wire()
    wire.round(health, 0.0)
    wire.round(health, 1.0)
    health.sample(1, {1: PortCounters(0)}, 2.0)
    health.sample(2, {1: PortCounters(0)}, 2.0)
    assert health.evaluate(PEERS, 2.0) == ([], [])


class Queue:
    """LINK shaped to ``CAPACITY_BPS`` with a standing queue in one direction, (1, 1) ->
    (2, 1): what enters the wire arrives (the counters agree), and its probes are
    ``lag_s`` older than the newest its far switch reported."""

    CAPACITY_BPS = 20e6

    def __init__(self):
        self.c = {end: collections.Counter(tx_bytes=0) for end in PEERS}

    def round(self, health, t, share=1.0, lag_s=0.0, capacity=True, packet_bytes=8000):
        near, far = (1, 1), (2, 1)
        sent = self.CAPACITY_BPS * share / 8
        self.c[near]["tx_packets"] += int(sent / packet_bytes)
        self.c[near]["tx_bytes"] += int(sent)
        self.c[far]["rx_packets"] += int(sent / packet_bytes)
        self.c[far]["rx_bytes"] += int(sent)
        for (dpid, port), c in self.c.items():
            health.sample(dpid, {port: PortCounters(**c)}, t)
        return health.evaluate(PEERS, t, {near: lag_s, far: 0.0},
                               {near: self.CAPACITY_BPS} if capacity else None)


def test_a_rate_cut_to_a_tenth_under_a_standing_queue_is_degraded():
    """Nothing dropped or lost that a counter sees: the far end gets what the near end
    sent, at a tenth of the link's rate, while probes wait seconds behind the queue."""
    health, q = LinkHealth(HealthConfig(restore_s=5.0)), Queue()
    q.round(health, 0.0)
    assert q.round(health, 1.0) == ([], [])
    assert q.round(health, 2.0, share=0.1, lag_s=2.0) == ([], [])   # one probe round late
    assert q.round(health, 3.0, share=0.1, lag_s=4.0) == ([], [])   # two: backlogged
    assert q.round(health, 4.0, share=0.1, lag_s=4.0) == ([LINK], [])
    (out,) = health.status(4.0)["excluded"]
    assert out["detection_s"] == pytest.approx(2.0)
    assert out["why"] == {"probe_lag_s": 4.0, "rate_share": pytest.approx(0.1, abs=0.001),
                          "direction": [[1, 1], [2, 1]]}
    # Routed around: its queue drains, its probes catch up, and it returns after restore_s.
    for t in range(5, 9):
        assert q.round(health, float(t), share=0.001) == ([], []), t
    assert q.round(health, 9.0, share=0.001) == ([], [LINK])


def test_a_congested_link_delivering_at_capacity_is_not_degraded():
    """Backlogged for seconds, but delivering its rate: congestion, not a gray failure."""
    health, q = LinkHealth(), Queue()
    q.round(health, 0.0)
    for t in range(1, 12):
        assert q.round(health, float(t), share=0.97, lag_s=2.0 * t) == ([], []), t
    assert not health.counters["degraded"]


def test_without_a_model_the_rate_is_measured_against_the_highest_it_carried():
    health, q = LinkHealth(), Queue()
    q.round(health, 0.0, capacity=False)
    for t in range(1, 4):
        assert q.round(health, float(t), lag_s=4.0, capacity=False) == ([], []), t
    q.round(health, 4.0, share=0.1, lag_s=4.0, capacity=False)
    assert q.round(health, 5.0, share=0.1, lag_s=6.0, capacity=False) == ([LINK], [])
    assert health.status(5.0)["excluded"][0]["why"]["rate_share"] == pytest.approx(0.1, abs=0.01)


def test_a_probe_one_round_late_a_late_probe_once_or_an_idle_link_degrade_nothing():
    health, q = LinkHealth(), Queue()
    q.round(health, 0.0)
    # A probe one round late (or lost at the tail of a short queue), twice; a late probe
    # once; idle; delivering over half the rate.
    for t, kw in enumerate([dict(share=0.1, lag_s=2.0), dict(share=0.1, lag_s=2.0),
                            dict(share=0.1, lag_s=4.0), dict(share=0.1),
                            dict(share=0.0, lag_s=4.0), dict(share=0.0, lag_s=6.0),
                            dict(share=0.6, lag_s=4.0), dict(share=0.6, lag_s=6.0)], start=1):
        assert q.round(health, float(t), **kw) == ([], []), (t, kw)
    assert not health.counters["degraded"]


# -- in the routing core, on a fake datapath ------------------------------------------------

class Fabric:
    """A k=4 fat-tree, a core that discovered it, fake switches applying its messages, and
    port counters fed to it every second: every link carries ``pps`` packets each way, and
    the links named in ``gray`` deliver only a share of them."""

    def __init__(self, policy, **health):
        self.g = build("fattree", k=4, link_gbps=1.0)
        self.core = RoutingCore(policy=policy, health=dict({"restore_s": 5.0}, **health))
        self.fab = FakeFabric(self.g)
        self.fab.apply(self.core.load_fabric(self.g))
        self.flush(0.0)
        self.c = collections.defaultdict(collections.Counter)
        self.gray = {}          # (dpid, port) of a near end -> share delivered
        self.pps = {}           # (dpid, port) of a near end -> packets/s it sends instead
        self.lag_s = {}         # (dpid, port) of a near end -> how late its probes arrive
        self.stuck = set()      # (dpid, port) of near ends whose probes do not arrive
        self.t = 0.0

    def dpid(self, node):
        return self.g.nodes[node]["dpid"]

    def ends(self, u, v):
        ports = self.g.edges[u, v]["ports"]
        return tuple(sorted(((self.dpid(u), ports[u]), (self.dpid(v), ports[v]))))

    def flush(self, t):
        self.fab.apply(self.core.flush(t))
        for dpid, sw in self.fab.by_dpid.items():
            assert sw.flows == self.core.installed[dpid]["flows"]
            assert sw.groups == self.core.installed[dpid]["groups"]

    def round(self, pps=1000, late_s=0.0):
        """One second of counters on every link, one probe round (each probe ``late_s``
        late, those in ``lag_s`` that much later, those in ``stuck`` still queued), one
        statistics round, adapt, flush."""
        self.t += 1.0
        for near, far in self.fab.peers.items():
            sent = self.pps.get(near, pps)
            self.c[near]["tx_packets"] += sent
            self.c[near]["tx_bytes"] += 1000 * sent
            share = self.gray.get(near, 1.0)
            self.c[far]["rx_packets"] += int(sent * share)
            self.c[far]["rx_bytes"] += int(1000 * sent * share)
            if near not in self.stuck:
                self.core.link_seen(*near, *far, self.t,
                                    sent_at=self.t - late_s - self.lag_s.get(near, 0.0))
        by_dpid = collections.defaultdict(dict)
        for (dpid, port), c in self.c.items():
            by_dpid[dpid][port] = PortCounters(**c)
        for dpid, ports in sorted(by_dpid.items()):
            self.core.port_stats(dpid, ports, self.t)
        self.core.adapt(self.t)
        self.flush(self.t)

    def uses(self, u, v, pairs):
        """Host pairs (of ``pairs``) with a path over link u-v, either direction."""
        return [(a, b) for a, b in pairs
                if any({u, v} <= set(p) and abs(p.index(u) - p.index(v)) == 1
                       for p in self.fab.paths(a, b))]


PAIRS = [(a, b) for a, b in itertools.permutations(hosts(build("fattree", k=4)), 2)]


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_routes_around_a_gray_link_and_back_once_it_heals(policy):
    f = Fabric(policy)
    for _ in range(2):
        f.round()
    before = f.uses("e1", "a1", PAIRS)
    assert before, "the link carries routes before it turns gray"
    routes_before = {pair: set(f.fab.paths(*pair)) for pair in PAIRS}
    near = (f.dpid("e1"), f.g.edges["e1", "a1"]["ports"]["e1"])
    f.gray[near] = 0.1                   # up, probed, but delivers a tenth of what it gets
    f.round()
    assert f.core.status()["health"]["excluded"] == []
    f.round()
    status = f.core.status()["health"]
    (out,) = status["excluded"]
    assert out["link"] == [list(end) for end in f.ends("e1", "a1")] and out["degraded"]
    assert out["detection_s"] == pytest.approx(2.0)
    # Still a link (probed, not a host port), but no route crosses it; every pair delivers.
    assert f.core.topo.is_link_port(*near)
    assert f.uses("e1", "a1", PAIRS) == []
    # Sick while routed around: its trickle is too small to judge, so it returns after
    # restore_s, and the routes with it.
    f.gray.clear()
    for _ in range(4):
        f.round(pps=5)
        assert f.core.status()["health"]["excluded"], f.t
    f.round(pps=5)
    assert f.core.status()["health"]["excluded"] == []
    assert f.uses("e1", "a1", PAIRS) == before
    if policy in ("ecmp", "shortest"):
        assert {pair: set(f.fab.paths(*pair)) for pair in PAIRS} == routes_before


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_routes_around_a_rate_cut_link_but_not_a_congested_one(policy):
    """Links of 1 Gbit/s: 125,000 packets/s of 1,000 bytes fill one. a1 -> (a core
    switch) is congested (a standing queue, at capacity) throughout; e1 -> a1 is cut to a
    tenth of its rate under a standing queue, its counters agreeing at both ends. The
    controller falls behind by seconds with every probe at once: no link is judged on that.
    Probe rounds every second here."""
    f = Fabric(policy)
    full = 125_000
    a1 = (f.dpid("e1"), f.g.edges["e1", "a1"]["ports"]["e1"])
    core = min(n for n in f.g.neighbors("a1") if n.startswith("c"))
    hot = (f.dpid("a1"), f.g.edges["a1", core]["ports"]["a1"])
    f.pps[hot], f.lag_s[hot] = full, 4.0
    for late_s in (0.0, 4.0, 4.0, 4.0, 4.0, 0.0):
        f.round(late_s=late_s)
    before = f.uses("e1", "a1", PAIRS)
    assert before and f.core.status()["health"]["excluded"] == []
    # Its probes wait behind its queue: it lags by one more second every round.
    f.pps[a1] = full // 10
    f.stuck.add(a1)
    for _ in range(3):
        f.round()
        assert f.core.status()["health"]["excluded"] == [], f.t
    f.round()
    (out,) = f.core.status()["health"]["excluded"]
    assert out["link"] == [list(end) for end in f.ends("e1", "a1")]
    assert out["why"]["rate_share"] == pytest.approx(0.1, abs=0.01)
    assert out["why"]["probe_lag_s"] == 4.0 and out["detection_s"] == pytest.approx(2.0)
    assert f.uses("e1", "a1", PAIRS) == [] and f.uses("a1", core, PAIRS)
    assert f.core.topo.probe_lag_s()[hot] == pytest.approx(4.0)
    # The rate is back and the queue drained: it returns after restore_s.
    del f.pps[a1]
    f.stuck.clear()
    for _ in range(4):
        f.round()
        assert f.core.status()["health"]["excluded"], f.t
    f.round()
    assert f.core.status()["health"]["excluded"] == []
    assert f.uses("e1", "a1", PAIRS) == before
    assert f.core.status()["health"]["counters"]["degraded"] == 1


def test_a_switch_whose_probes_all_leave_late_has_none_of_its_links_judged_backlogged():
    """The controller's connection to one switch is backlogged (a burst of flow mods ahead
    of its probes): every probe out of it arrives seconds late, on lightly loaded links.
    That is the switch's lateness, not its links' queues."""
    f = Fabric("ecmp")
    f.round()
    e1 = f.dpid("e1")
    outs = [near for near in f.fab.peers if near[0] == e1]
    assert len(outs) == 2
    for lag_s in (2.0, 4.0, 6.0, 8.0, 10.0):
        for near in outs:
            f.lag_s[near] = lag_s
        f.round()
    assert f.core.status()["health"]["excluded"] == []
    assert all(f.core.topo.probe_lag_s()[near] == 0.0 for near in outs)
    # One of them, alone, that late is backlogged.
    f.lag_s.pop(outs[0])
    assert f.core.topo.probe_lag_s()[outs[1]] == 0.0
    f.round()
    assert f.core.topo.probe_lag_s()[outs[1]] > 3.0


# Links of 1 Gbit/s with packets of 1,000 bytes: this many packets/s fill one.
FULL_PPS = 125_000


def _agg_core(f):
    """The near end a1 -> its first core switch, and that core switch."""
    core = min(n for n in f.g.neighbors("a1") if n.startswith("c"))
    return (f.dpid("a1"), f.g.edges["a1", core]["ports"]["a1"]), core


@pytest.mark.parametrize("policy", POLICIES)
def test_a_core_link_cut_under_uniform_load_is_found_from_its_probes_delay(policy):
    """An all-to-all fills every link to capacity, each with a short queue its probes wait
    0.3 s behind (TCP windows); a1 -> core is cut to a tenth: its flows' windows now wait
    1.5 s there. Every probe arrives within its round, so no link lags (the core switch's
    other links are as busy): only the probes' transit shows it."""
    f = Fabric(policy)
    cut, core = _agg_core(f)
    for _ in range(2):
        f.round(pps=FULL_PPS, late_s=0.3)
    before = f.uses("a1", core, PAIRS)
    assert before and f.core.status()["health"]["excluded"] == []
    f.pps[cut], f.lag_s[cut] = FULL_PPS // 10, 1.2
    # The first probe after the cut says it was sent before the one before it (this fake
    # backdates it), and is not counted; one slow probe is no delay; then two bad rounds.
    for _ in range(4):
        assert f.core.status()["health"]["excluded"] == [], f.t
        f.round(pps=FULL_PPS, late_s=0.3)
        assert f.core.topo.probe_lag_s()[cut] < HealthConfig().backlog_s
    (out,) = f.core.status()["health"]["excluded"]
    assert out["link"] == [list(end) for end in f.ends("a1", core)]
    assert out["why"]["probe_delay_s"] == pytest.approx(1.2)
    assert "probe_lag_s" not in out["why"]
    assert out["why"]["rate_share"] == pytest.approx(0.1, abs=0.01)
    assert f.uses("a1", core, PAIRS) == []
    # Its rate back, its queue gone: it returns after restore_s, and routes with it.
    del f.pps[cut], f.lag_s[cut]
    for _ in range(6):
        f.round(pps=FULL_PPS, late_s=0.3)
    assert f.core.status()["health"]["excluded"] == []
    assert f.uses("a1", core, PAIRS) == before
    assert f.core.status()["health"]["counters"]["degraded"] == 1


def test_links_all_queued_alike_or_queued_at_capacity_are_not_degraded():
    """Every link's probes wait 1 s behind its queue, lightly loaded or at capacity: no
    link took longer than its switches' quickest. A link queued 2 s longer than the rest,
    but delivering at capacity, is congested, not cut."""
    f = Fabric("ecmp")
    for pps in (1000, 1000, FULL_PPS, FULL_PPS):
        f.round(pps=pps, late_s=1.0)
    hot, _ = _agg_core(f)
    f.lag_s[hot] = 2.0
    for _ in range(4):
        f.round(pps=FULL_PPS, late_s=1.0)
    assert f.core.topo.probe_delay_s()[hot] == pytest.approx(2.0)
    assert f.core.status()["health"]["excluded"] == []
    assert not f.core.status()["health"]["counters"].get("degraded")


def test_a_slow_controller_delaying_probes_degrades_no_lightly_loaded_link():
    """Light traffic (every link under 1% of its rate), and the controller behind: first
    every probe it reports 3 s late, then only a core switch's packet-ins worked through
    1.5 s late (every link into it), then one probe held up once by 2 s (and judged in two
    statistics rounds). Nothing is a link's own delay."""
    f = Fabric("ecmp")
    for late_s in (0.0, 3.0, 3.0, 3.0):
        f.round(late_s=late_s)
    _, core = _agg_core(f)
    into = [near for near, far in f.fab.peers.items() if far[0] == f.dpid(core)]
    assert len(into) == 4
    for near in into:
        f.lag_s[near] = 1.5
    for _ in range(3):
        f.round()
    assert all(f.core.topo.probe_delay_s()[near] == 0.0 for near in into)
    f.lag_s.clear()
    one = into[0]
    f.lag_s[one] = 2.0
    f.round()
    f.lag_s.clear()
    f.stuck.add(one)     # probes every 2 s, statistics every 1 s: judged twice
    f.round()
    f.stuck.clear()
    f.round()
    assert f.core.status()["health"]["excluded"] == []
    assert not f.core.status()["health"]["counters"].get("degraded")


@pytest.mark.parametrize("policy", ["congestion", "hedera", "collective"])
def test_learned_flows_pinned_across_a_gray_link_move_off_it(policy):
    f = Fabric(policy)
    f.round()
    h1, h5 = (f.g.nodes[h] for h in ("h1", "h5"))
    sw, port = host_switch(f.g, "h1")
    keys = []
    for sport in range(40000, 40016):
        key = FlowKey(h1["ip"], h5["ip"], 6, sport, 5001)
        msgs = f.core.packet_in_flow(f.dpid(sw), port, key, h1["mac"], h5["mac"], b"syn", f.t)
        assert isinstance(msgs[-1], PacketOut)
        f.fab.apply(msgs)
        keys.append(key)
    f.flush(f.t)

    def crossing():
        fields = [dict(ip_proto=6, tcp_src=k.tp_src, tcp_dst=k.tp_dst) for k in keys]
        return [k for k, x in zip(keys, fields) if "a1" in f.fab.path("h1", "h5", **x)]

    across = crossing()
    assert across, "some flow of h1 -> h5 leaves e1 through a1"
    f.gray[(f.dpid("e1"), f.g.edges["e1", "a1"]["ports"]["e1"])] = 0.0
    f.round()
    f.round()
    assert crossing() == []
    assert f.core.status()["health"]["counters"]["degraded"] == 1


def test_a_flapping_link_is_suppressed_while_up_and_returns_after_its_penalty_decays():
    f = Fabric("ecmp", half_life_s=10.0)
    e1, a1 = f.dpid("e1"), f.dpid("a1")
    pe, pa = f.g.edges["e1", "a1"]["ports"]["e1"], f.g.edges["e1", "a1"]["ports"]["a1"]
    route_changes = []
    for flap in range(4):
        t = f.t + 0.5
        f.fab.apply(f.core.port_status(e1, pe, False, t))
        f.fab.apply(f.core.port_status(e1, pe, True, t + 0.1))
        f.core.link_seen(e1, pe, a1, pa, t + 0.2)
        f.core.link_seen(a1, pa, e1, pe, t + 0.2)
        before = f.core.render.group_mods + f.core.render.flow_mods
        f.round(pps=0)
        route_changes.append(f.core.render.group_mods + f.core.render.flow_mods - before)
    status = f.core.status()["health"]
    (out,) = status["excluded"]
    assert out["suppressed"] and status["counters"]["suppressed"] == 1
    # Up and probed, yet out of the routes: the third flap crossed the threshold, the
    # fourth changed no route.
    assert f.core.topo.is_link_port(e1, pe) and a1 not in f.core.topo.adj[e1]
    assert route_changes[-1] == 0
    assert f.uses("e1", "a1", PAIRS) == []
    penalty = out["penalty"]
    back_s = 10.0 * math.log2(penalty / 750)
    for _ in range(int(back_s)):
        f.round(pps=0)
    assert f.core.status()["health"]["excluded"], "suppressed until the penalty decays"
    f.core.link_seen(e1, pe, a1, pa, f.t)
    f.core.link_seen(a1, pa, e1, pe, f.t)
    for _ in range(2):
        f.round(pps=0)
        f.core.link_seen(e1, pe, a1, pa, f.t)
        f.core.link_seen(a1, pa, e1, pe, f.t)
    assert f.core.status()["health"]["excluded"] == []
    assert a1 in f.core.topo.adj[e1] and f.uses("e1", "a1", PAIRS)


def test_the_twin_counters_without_drops_or_receptions_judge_nothing():
    """The flow-level simulator feeds transmitted bytes only: no verdict, no exclusion."""
    g = build("fattree", k=4, link_gbps=1.0)
    core = RoutingCore(policy="ecmp")
    core.load_fabric(g)
    for t in range(1, 6):
        for sw in switches(g):
            core.port_stats(g.nodes[sw]["dpid"],
                            {d["ports"][sw]: 10 ** 6 * t for _, _, d in g.edges(sw, data=True)},
                            float(t))
        core.adapt(float(t))
    assert core.status()["health"] == {"excluded": [], "counters": {}, "events": []}


def test_a_link_seen_one_way_has_a_peer_at_both_ends():
    """A port going down is a flap of its link even where only the other end's probe was
    seen (the penalty must not depend on which direction discovery saw first)."""
    from controllers.topology import TopologyState
    topo = TopologyState()
    topo.switch_enter(1, [1, 2])
    topo.switch_enter(2, [1])
    topo.link_seen(2, 1, 1, 1, 0.0)
    assert topo.peer(2, 1) == (1, 1) and topo.peer(1, 1) == (2, 1)
    assert topo.peer(1, 2) is None
