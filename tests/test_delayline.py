"""The delay forwarder's scheduling (fabric/delayline.py) and how the emulation cuts delayed
links (fabric/emulate.py), without root: release queues fed with timestamps, topologies
built as data."""

import pytest

from fabric import emulate as emulate_module
from fabric.delayline import ReleaseQueue, buffer_bytes, next_timeout
from fabric.emulate import (DELAY_MIN_MS, DELAY_NODE, delayed_links, longest_delayed_path,
                            mininet_topo, rate_scale, scaled_delay_ms, window_warning)
from fabric.twin import Twin
from topologies import build
from traffic.schedule import Flow, Schedule


def test_each_frame_leaves_delay_after_it_arrived_in_arrival_order():
    q = ReleaseQueue(0.040, 10**6)
    arrivals = [1.000, 1.001, 1.001, 1.0305, 1.050]
    for i, t in enumerate(arrivals):
        assert q.push(bytes([i]) * 100, now=t)
    released = []
    t = 1.0
    while len(q):
        t = q.next_release()
        released += [(t, f[0]) for f in q.due(now=t)]
    assert [i for _, i in released] == [0, 1, 2, 3, 4]
    assert [r for r, _ in released] == pytest.approx([a + 0.040 for a in arrivals])
    assert q.forwarded == 5 and q.dropped == 0 and q.held_bytes == 0


def test_nothing_leaves_early():
    q = ReleaseQueue(0.010, 10**6)
    q.push(b"x", now=5.0)
    assert q.due(now=5.0099) == []
    assert q.due(now=5.010) == [b"x"]
    assert q.next_release() is None


def test_a_late_wakeup_releases_every_due_frame_in_order_and_keeps_the_rest():
    q = ReleaseQueue(0.010, 10**6)
    for i in range(10):
        q.push(bytes([i]), now=i * 0.001)
    assert [f[0] for f in q.due(now=0.0145)] == [0, 1, 2, 3, 4]
    assert q.next_release() == pytest.approx(0.015)
    assert [f[0] for f in q.due(now=1.0)] == [5, 6, 7, 8, 9]


def test_a_full_buffer_drops_and_counts_then_takes_frames_again_once_drained():
    q = ReleaseQueue(0.010, 3000)
    assert [q.push(b"a" * 1000, now=0.0) for _ in range(4)] == [True, True, True, False]
    assert q.dropped == 1 and q.held_bytes == 3000 and q.peak_bytes == 3000
    assert len(q.due(now=0.010)) == 3
    assert q.push(b"b" * 1000, now=0.011)
    assert q.dropped == 1 and q.forwarded == 3


def test_directions_are_independent_queues_and_the_wait_is_for_the_earliest():
    a, b = ReleaseQueue(0.020, 10**6), ReleaseQueue(0.005, 10**6)
    assert next_timeout([a, b], now=0.0) is None
    a.push(b"a", now=0.0)
    b.push(b"b", now=0.001)
    assert next_timeout([a, b], now=0.002) == pytest.approx(0.004)
    assert next_timeout([a, b], now=0.1) == 0.0  # late: do not wait


@pytest.mark.parametrize("delay_s, capacity", [(-0.001, 100), (0.01, 0)])
def test_bad_queue_parameters_are_refused(delay_s, capacity):
    with pytest.raises(ValueError):
        ReleaseQueue(delay_s, capacity)


def test_buffer_holds_twice_the_bytes_in_flight_and_at_least_sixteen_frames():
    assert buffer_bytes(100, 0.040, 9000) == 2 * 100e6 / 8 * 0.040
    assert buffer_bytes(1, 0.0001, 9000) == 16 * 9014


def _edge(**over):
    params = {"sites": 2, "hosts_per_site": 1, "dc_hosts": 2, "site_km": [0, 80],
              "wan_gbps": 10, "host_gbps": 10, "dc_gbps": 10}
    return build("edge", **dict(params, **over))


def test_only_links_whose_scaled_delay_reaches_the_threshold_are_delayed():
    g = _edge(site_km=[0.001, 80])
    scale = rate_scale(g, 50)  # 0.005: 1 m is 1 us of scaled delay, 80 km 80 ms
    assert _links(delayed_links(g, scale)) == [{"g2", "d1"}]
    # 0.05 ms scaled is 0.25 us nominal here, 50 m of fiber: 40 m stays out, 60 m is in.
    assert DELAY_MIN_MS == 0.05
    assert _links(delayed_links(_edge(site_km=[0.04, 80]), scale)) == [{"g2", "d1"}]
    assert _links(delayed_links(_edge(site_km=[0.06, 80]), scale)) == [{"g1", "d1"},
                                                                       {"g2", "d1"}]


def _links(pairs):
    return [set(p) for p in pairs]


def test_a_delayed_link_is_cut_into_two_halves_that_keep_the_switch_ports():
    g = _edge(sites=3, site_km=[0, 20, 80])
    scale = rate_scale(g, 50)
    delayed = delayed_links(g, scale)
    assert _links(delayed) == [{"g2", "d1"}, {"g3", "d1"}]
    topo = mininet_topo(g, scale, delayed=delayed)
    assert DELAY_NODE in topo.hosts()
    ends = {frozenset([(i["node1"], i["port1"]), (i["node2"], i["port2"])])
            for _, _, i in topo.links(withInfo=True)}
    # Undelayed: switch to switch as the model says.
    wan = g.edges["g1", "d1"]["ports"]
    assert frozenset([("g1", wan["g1"]), ("d1", wan["d1"])]) in ends
    # Delayed: one end's port to dly0's port 2i, dly0's port 2i+1 to the other end's port.
    for i, (u, v) in enumerate(delayed):
        p = g.edges[u, v]["ports"]
        assert frozenset([(u, p[u]), (DELAY_NODE, 2 * i)]) in ends
        assert frozenset([(DELAY_NODE, 2 * i + 1), (v, p[v])]) in ends
        assert frozenset([(u, p[u]), (v, p[v])]) not in ends
    assert len(topo.links()) == g.number_of_edges() + len(delayed)
    assert DELAY_NODE not in mininet_topo(g, scale).hosts()


def test_longest_delayed_path_and_its_bandwidth_delay_product():
    g = _edge(sites=3, site_km=[0, 20, 80])
    scale = rate_scale(g, 50)
    path = longest_delayed_path(g, scale)
    # h4 (20 km) to h5 (80 km): 100 ms each way over two fibers, at 50 Mbit/s.
    assert sorted(path["hosts"]) == ["h4", "h5"]
    assert path["rtt_ms"] == pytest.approx(200.0)
    assert path["rate_mbps"] == pytest.approx(50.0)
    assert path["bdp_bytes"] == 1_250_000
    assert path["link"] in ("g3-d1", "d1-g3")
    assert longest_delayed_path(build("fattree", k=4), 1e-4) is None


def test_the_run_warns_when_the_window_cannot_cover_the_bdp():
    g = _edge(sites=3, site_km=[0, 20, 80])
    scale = rate_scale(g, 50)
    line = window_warning(g, scale, 65536)
    assert "65536" in line and "1250000" in line and "g3" in line and "d1" in line
    assert "\n" not in line
    assert window_warning(g, scale, 2_000_000) is None
    # 0 is autotuning: covered up to the kernel's maximum receive buffer.
    assert window_warning(g, scale, 0, autotune_max_bytes=16 << 20) is None
    assert window_warning(g, scale, 0, autotune_max_bytes=1 << 20) is not None
    assert window_warning(build("fattree", k=4), 1e-4, 65536) is None


def test_the_twin_delays_every_link_the_forwarder_delays_by_as_much():
    g = _edge(sites=3, site_km=[0, 20, 80])
    scale = rate_scale(g, 50)
    tw = Twin(g, Schedule([Flow("a", "h1", "h5", 10 ** 6)]), capacity_scale=scale,
              delay_scale=1.0 / scale)
    for u, v in delayed_links(g, scale):
        for ends in ((u, v), (v, u)):
            assert tw.delay[tw.lid[ends]] * 1000 == pytest.approx(
                scaled_delay_ms(g.edges[u, v], scale))
    # and the one link the forwarder leaves out has no delay to leave out
    assert tw.delay[tw.lid[("g1", "d1")]] == 0.0


@pytest.mark.parametrize("netem, emulate, method, emulated, links", [
    (False, True, "forwarder", True, 1),
    (True, True, "netem", True, 1),
    (False, False, "none", False, 0),
])
def test_results_say_which_mechanism_delays(monkeypatch, netem, emulate, method, emulated,
                                            links):
    monkeypatch.setattr(emulate_module, "has_netem", lambda: netem)
    monkeypatch.setattr(emulate_module, "ovs_datapath", lambda: "user")
    g = _edge()
    em = emulate_module.Emulation(g, 6653, rate_scale(g, 50), emulate_delay=emulate)
    assert em.info["delay_method"] == method
    assert em.info["delay_emulated"] is emulated
    assert em.info["delay_links"] == links
    assert em.delayed == ([("d1", "g2")] if method == "forwarder" else [])
    # Without any fiber there is nothing to emulate, whatever the kernel has.
    bare = build("fattree", k=4)
    em = emulate_module.Emulation(bare, 6653, rate_scale(bare, 20), emulate_delay=emulate)
    assert em.info["delay_method"] == "none" and em.info["delay_emulated"] is True
