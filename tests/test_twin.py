"""The twin (fabric/twin.py) on cases checked by hand, and against the controller's own tables.

Max-min fair sharing on small cases whose answer is known; dependencies, start times and
propagation delay; a link failure in the middle of a flow; an ECMP hash collision; and the
forwarding the twin derives for every flow under every policy compared with what the routing
core's OpenFlow rules do to that flow in the table interpreter (controllers/tables.py), which is
what the emulation's switches are given. No root, no Mininet.
"""

import json

import numpy as np
import pytest

from controllers.core import RoutingCore
from fabric import model, runner, spec as specs
from fabric import twin as twin_module
from fabric.twin import Twin, max_min_rates
from topologies import build
from traffic import metrics, workloads
from traffic.schedule import Flow, Schedule

GBPS = 1e9


def star(n_hosts=3, gbps=10.0, length_km=0.0):
    """Hosts on one switch."""
    g = model.new_fabric("star")
    model.add_switch(g, "s1", "edge", 1)
    for i in range(1, n_hosts + 1):
        model.add_host(g, f"h{i}")
        model.add_link(g, f"h{i}", "s1", gbps, length_km=length_km)
    return g


def line(gbps=10.0, length_km=0.0):
    """h1 - s1 - s2 - h2, and h3 on s1, h4 on s2: the s1-s2 link is shared."""
    g = model.new_fabric("line")
    model.add_switch(g, "s1", "edge", 1)
    model.add_switch(g, "s2", "edge", 1)
    for h in ("h1", "h2", "h3", "h4"):
        model.add_host(g, h)
    model.add_link(g, "h1", "s1", gbps)
    model.add_link(g, "h3", "s1", gbps)
    model.add_link(g, "h2", "s2", gbps)
    model.add_link(g, "h4", "s2", gbps)
    model.add_link(g, "s1", "s2", gbps, length_km=length_km)
    return g


def run(g, flows, **kw):
    """Run flows in the pure fluid model (no store-and-forward unless ``mtu_bytes`` says)."""
    kw.setdefault("mtu_bytes", 0)
    recs, info = Twin(g, Schedule(flows), **kw).run()
    return {r["id"]: r for r in recs}, info


# -- max-min fair sharing ------------------------------------------------------------------
def test_two_flows_on_one_link_get_half_each():
    assert max_min_rates(np.array([[0], [0]]), np.array([10.0])).tolist() == [5.0, 5.0]


def test_parking_lot_max_min():
    # Flow 0 crosses links 0 and 1 (10 each), flows 1 and 2 link 0 and flow 3 link 1: link 0
    # is shared by three (10/3 each), flow 3 takes what flow 0 leaves on link 1.
    links = np.array([[0, 1], [0, -1], [0, -1], [1, -1]])
    rates = max_min_rates(links, np.array([10.0, 10.0]))
    assert rates == pytest.approx([10 / 3, 10 / 3, 10 / 3, 20 / 3])


def test_max_min_leaves_out_inactive_flows_and_flows_without_links():
    links = np.array([[0], [0], [-1]])
    rates = max_min_rates(links, np.array([10.0]), active=np.array([True, False, True]))
    assert rates.tolist() == [10.0, 0.0, 0.0]


def test_max_min_on_random_cases_is_feasible_and_every_flow_has_a_full_link():
    rng = np.random.default_rng(3)
    for _ in range(50):
        n_links, n = 6, 12
        caps = rng.uniform(1, 10, n_links)
        links = np.full((n, 3), -1)
        for i in range(n):
            k = rng.integers(1, 4)
            links[i, :k] = rng.choice(n_links, k, replace=False)
        rates = max_min_rates(links, caps)
        load = np.zeros(n_links)
        for i in range(n):
            load[links[i][links[i] >= 0]] += rates[i]
        assert (load <= caps * (1 + 1e-9)).all()
        for i in range(n):  # bottleneck: a full link on which no flow gets more
            ls = links[i][links[i] >= 0]
            assert any(load[j] >= caps[j] * (1 - 1e-9) and all(
                rates[m] <= rates[i] * (1 + 1e-9) for m in range(n) if j in links[m])
                for j in ls)


def test_the_small_and_the_compiled_solver_agree():
    rng = np.random.default_rng(8)
    for _ in range(30):
        caps = rng.uniform(1, 10, 8)
        links = np.full((20, 4), -1, dtype=np.int32)
        for i in range(20):
            k = rng.integers(1, 5)
            links[i, :k] = rng.choice(8, k, replace=False)
        active = rng.random(20) < 0.8
        small = twin_module._fill_levels(links, caps, active)
        compiled = twin_module._compiled()(links, caps, active)
        assert small == pytest.approx(compiled, rel=1e-9, abs=1e-9)


# -- timing of flows -----------------------------------------------------------------------
def test_one_flow_takes_its_bytes_over_its_nic_rate():
    recs, _ = run(star(), [Flow("a", "h1", "h2", 10 ** 6)])
    assert recs["a"]["end_s"] - recs["a"]["start_s"] == pytest.approx(8e6 / 10e9)


def test_two_flows_into_one_host_share_its_nic_and_a_third_runs_at_full_rate():
    recs, _ = run(star(4), [Flow("a", "h1", "h3", 10 ** 6), Flow("b", "h2", "h3", 10 ** 6),
                            Flow("c", "h4", "h1", 10 ** 6)])
    assert recs["a"]["end_s"] == pytest.approx(2 * 8e6 / 10e9)
    assert recs["b"]["end_s"] == pytest.approx(2 * 8e6 / 10e9)
    assert recs["c"]["end_s"] == pytest.approx(8e6 / 10e9)


def test_a_finished_flow_gives_its_share_back():
    # a and b share h3's NIC; b is four times bigger: after a ends, b runs alone.
    recs, _ = run(star(), [Flow("a", "h1", "h3", 10 ** 6), Flow("b", "h2", "h3", 4 * 10 ** 6)])
    t_a = 2 * 8e6 / 10e9
    assert recs["a"]["end_s"] == pytest.approx(t_a)
    assert recs["b"]["end_s"] == pytest.approx(t_a + 3 * 8e6 / 10e9)


def test_a_dependency_delays_a_start_and_start_s_is_a_floor():
    flows = [Flow("a", "h1", "h2", 10 ** 6),
             Flow("b", "h2", "h3", 10 ** 6, deps=("a",), delay_s=1e-3),
             Flow("c", "h3", "h1", 10 ** 6, start_s=5e-3)]
    recs, _ = run(star(), flows)
    t = 8e6 / 10e9
    assert recs["b"]["start_s"] == pytest.approx(t + 1e-3)
    assert recs["b"]["end_s"] == pytest.approx(2 * t + 1e-3)
    assert recs["c"]["start_s"] == pytest.approx(5e-3)


def test_propagation_delay_is_added_to_the_arrival_and_dependents_wait_for_it():
    g = line(length_km=100.0)  # 500 us across s1-s2
    flows = [Flow("a", "h1", "h2", 10 ** 6), Flow("b", "h2", "h1", 10 ** 6, deps=("a",))]
    recs, _ = run(g, flows)
    t = 8e6 / 10e9
    assert recs["a"]["end_s"] == pytest.approx(t + 500e-6)
    assert recs["b"]["start_s"] == pytest.approx(t + 500e-6)
    recs, _ = run(g, flows, delay_scale=None)
    assert recs["a"]["end_s"] == pytest.approx(t)


def test_the_last_packet_is_stored_and_forwarded_at_every_hop_but_one():
    g = line()                      # h1 - s1 - s2 - h2: three links of 10 Gbit/s
    recs, _ = run(g, [Flow("a", "h1", "h2", 10 ** 6)], mtu_bytes=9000)
    assert recs["a"]["end_s"] == pytest.approx(8e-4 + 2 * 9000 * 8 / 10e9)


# -- forwarding ----------------------------------------------------------------------------
def test_a_link_failure_mid_flow_fails_over_and_the_flow_finishes():
    g = build("fattree", k=4, link_gbps=10)
    flows = [Flow("a", "h1", "h16", 10 ** 7)]
    probe = Twin(g, Schedule(flows))
    path = probe.flow_path("a")
    assert len(path) == 7           # h1 edge agg core agg edge h16
    t_full = 8e7 / 10e9
    for detect_s in (0.0, 10.0):    # the controller reroutes at once, or only after the end
        tw = Twin(g, Schedule(flows), detect_s=detect_s, mtu_bytes=0,
                  link_events=[{"at_s": t_full / 2, "link": [path[2], path[3]], "up": False}])
        recs, info = tw.run()
        assert recs[0]["end_s"] == pytest.approx(t_full)   # the detour has the same rate
        assert info["reroutes"] >= 1
        new = tw.flow_path("a")
        assert new is not None and (path[2], path[3]) not in zip(new, new[1:])


def test_a_flow_with_no_path_left_waits_and_stays_incomplete():
    g = line()
    tw = Twin(g, Schedule([Flow("a", "h1", "h2", 10 ** 6)]), max_time_s=1.0, mtu_bytes=0,
              link_events=[{"at_s": 1e-4, "link": ["s1", "s2"], "up": False}])
    recs, info = tw.run()
    assert recs[0]["end_s"] is None and info["stalled_at_end"] == 1 and not info["timed_out"]
    assert recs[0]["bytes_received"] == pytest.approx(1e6 * 1e-4 / 8e-4, rel=1e-6)
    # The link would come back after the time limit: the run stops there, timed out.
    tw = Twin(g, Schedule([Flow("a", "h1", "h2", 10 ** 6)]), max_time_s=1.0,
              link_events=[{"at_s": 1e-4, "link": ["s1", "s2"], "up": False},
                           {"at_s": 2.0, "link": ["s1", "s2"], "up": True}])
    recs, info = tw.run()
    assert recs[0]["end_s"] is None and info["timed_out"] and info["simulated_s"] == 1.0


def test_a_link_that_comes_back_carries_the_waiting_flow():
    g = line()
    recs, _ = run(g, [Flow("a", "h1", "h2", 10 ** 6)],
                  link_events=[{"at_s": 1e-4, "link": ["s1", "s2"], "up": False},
                               {"at_s": 1e-3, "link": ["s1", "s2"], "up": True}])
    assert recs["a"]["end_s"] == pytest.approx(8e-4 + 9e-4)


def test_a_hash_collision_halves_two_flows_rates():
    """Two flows between disjoint hosts of two pods share no NIC and no edge link; they meet
    only if Open vSwitch hashes both onto one core switch (then they share its links to both
    pods' aggregation switches): half rate each, else full rate."""
    g = build("fattree", k=4, link_gbps=10)
    # h1 and h3 sit on the two edge switches of pod 1, h13 and h15 on those of pod 4.
    flows = [Flow("f0", "h1", "h13", 10 ** 6), Flow("f1", "h3", "h15", 10 ** 6)]
    by_cores = {}
    for seed in range(60):
        tw = Twin(g, Schedule(flows), seed=seed)
        cores = {tw.flow_path(f.id)[3] for f in flows}
        by_cores.setdefault(len(cores), seed)
        if len(by_cores) == 2:
            break
    assert set(by_cores) == {1, 2}, "the source ports never collided or never parted"
    t = 8e6 / 10e9
    same, _ = run(g, flows, seed=by_cores[1])
    apart, _ = run(g, flows, seed=by_cores[2])
    assert same["f0"]["end_s"] == pytest.approx(2 * t)
    assert same["f1"]["end_s"] == pytest.approx(2 * t)
    assert apart["f0"]["end_s"] == pytest.approx(t)
    assert apart["f1"]["end_s"] == pytest.approx(t)


POLICIES = ("ecmp", "shortest", "congestion", "hedera", "collective")


@pytest.mark.parametrize("policy", POLICIES)
def test_the_twin_forwards_every_flow_where_the_controllers_rules_send_it(policy):
    """The twin derives forwarding from the path service, weights and pins; the emulation's
    switches get the renderer's rules. For every flow of an all-to-all, both must give one
    path, the same (Open vSwitch's hash choosing among SELECT buckets in both)."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy=policy, seed=5)
    tw.setup()
    ref = RoutingCore(policy)   # the controller's core, with its renderer
    ref.load_fabric(g)
    ref.flush(0.0)
    mac = tw.mac
    for fi, f in enumerate(sched.flows):
        if ref.learns_flows:
            ref.flow_seen(tw.keys[fi], mac[f.src], mac[f.dst], 0, 0.0)
            ref.flow_seen(tw.keys[fi].reverse(), mac[f.dst], mac[f.src], 0, 0.0)
    if policy == "collective":
        depth = sched.depths()
        ref.submit_intent("run", [{"src": tw.keys[fi].ipv4_src, "dst": tw.keys[fi].ipv4_dst,
                                   "bytes": f.bytes, "flow": list(tw.keys[fi]),
                                   "phase": depth[f.id]} for fi, f in enumerate(sched.flows)],
                          0.0)
    ref.flush(0.0)
    name = {g.nodes[n]["dpid"]: n for n in model.switches(g)}
    for fi, f in enumerate(sched.flows):
        got = tw.flow_path(f.id)
        want = ref.paths(mac[f.src], mac[f.dst], flow_key=tw.keys[fi], hashed=True)
        assert len(want) == 1, (f.id, want)
        assert got[1:-1] == tuple(name[d] for d in want[0]), (policy, f.id)


def test_under_collective_the_intent_comes_first_and_the_flows_it_pins_are_not_learned():
    """The twin announces the intent before the connections: every flow it pins matches its
    pin above the rule that sends new flows to the controller, so none is learned (nor its
    ACK direction), and no start waits for Python; a flow the intent does not cover is
    learned, both directions, and placed by the policy."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy="collective", seed=5)
    assert tw.setup() == 0 and not tw.core.flows
    pin_of, paths = tw._pins()
    assert (pin_of >= 0).all()
    todo = np.ones(len(sched), dtype=bool)
    assert not tw._unlearned(todo, (pin_of, paths)).any()
    # The same flows, one left out of the intent: only that one (and its ACKs) is learned.
    tw = Twin(g, sched, policy="collective", seed=5)
    left_out = sched.flows[7].id
    body = tw._intent_requests()[0][1]
    tw.core.submit_intent("run", body.take(np.arange(len(body)) != 7), 0.0)
    pins = tw._pins()
    assert (np.flatnonzero(pins[0] < 0) == [7]).all()
    assert np.flatnonzero(tw._unlearned(todo, pins)).tolist() == [7]
    mac, f = tw.mac, sched.flows[7]
    tw.core.flow_seen(tw.key(7), mac[f.src], mac[f.dst], 0, 0.0)
    assert tw.core.flows[tw.key(7)].path is not None   # placed as `congestion` would
    assert not tw._unlearned(todo, pins).any() and tw.flow_path(left_out) is not None


@pytest.mark.parametrize("policy", ["congestion", "collective"])
def test_the_connections_are_made_once_when_setup_is_called_before_the_run(policy):
    """setup() may be called before run_columns() (to time it apart): the run does not make
    the connections again, so the intent is announced once and no flow is learned twice,
    and the run gives what a run alone gives."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    alone = Twin(g, sched, policy=policy, seed=5)
    recs_alone, _ = alone.run_columns()
    tw = Twin(g, sched, policy=policy, seed=5)
    learned = tw.setup()
    assert learned == (0 if policy == "collective" else 2 * len(sched))
    assert tw.setup() == learned
    recs, info = tw.run_columns()
    assert info["flows_learned_at_setup"] == learned
    assert tw.core.counters.get("flows_learned", 0) == learned
    assert tw.core.counters.get("intents_submitted", 0) == (policy == "collective")
    assert np.array_equal(recs.end_s, recs_alone.end_s, equal_nan=True)


def test_the_intent_announced_as_columns_pins_what_its_items_pin():
    """The twin announces a schedule's flows as columns (no item each); the same flows as
    the runner's items must give every flow the same pinned path."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy="collective", seed=5)
    tw.setup()
    cols = tw._intent_requests()[0][1]
    ip = cols.hosts
    items = [(ip[s], ip[d], b, (ip[s], ip[d], p, sp, dp), ph) for s, d, b, p, sp, dp, ph in zip(
        cols.src.tolist(), cols.dst.tolist(), cols.size.tolist(), cols.proto.tolist(),
        cols.sport.tolist(), cols.dport.tolist(), cols.phase.tolist())]
    other = Twin(g, sched, policy="collective", seed=5)
    other.core.submit_intent("run", items, 0.0)
    (pin_a, paths_a), (pin_b, paths_b) = tw._pins(), other._pins()
    assert (pin_a >= 0).all() and (pin_b >= 0).all()
    assert [paths_a[p] for p in pin_a.tolist()] == [paths_b[p] for p in pin_b.tolist()]
    assert tw.core.intents()[0]["max_phase_link_load_s"] == \
        other.core.intents()[0]["max_phase_link_load_s"]


def test_flows_named_by_5_tuple_are_found_whatever_the_guess():
    """The flow a 5-tuple names is found by a search, a guess of it (a table made from
    the twin's own flows lists flow i as row i) only saving the search where it is right:
    right, wrong, out of range or absent, the answer is the same; a 5-tuple no flow has is
    -1."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy="ecmp", seed=5)
    n = len(sched)
    cols = (tw.f_src.copy(), tw.f_dst.copy(), tw.proto.copy(), tw.sport.copy(),
            tw.dport.copy())
    cols[4][3] = (int(cols[4][3]) + 1) % 65536   # row 3 names no flow
    want = np.arange(n)
    want[3] = -1
    rng = np.random.default_rng(0)
    wrong = rng.permutation(n)
    half = np.where(np.arange(n) % 2 == 0, np.arange(n), wrong)
    for guess in (None, np.arange(n), wrong, half, np.full(n, n + 5)):
        assert tw._index_rows(*cols, guess=guess).tolist() == want.tolist()


def test_pins_of_two_intents_and_a_learned_flow_are_laid_out_as_each_is_walked():
    """Two intents may give their flows the same switch path, and a flow neither announces is
    learned and placed: every flow's route laid out in one pass must be the one walked for it
    (pins by index into the intents' paths, the learned flow's path after them)."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy="collective", seed=5)
    body = tw._intent_requests()[0][1]
    half = len(body) // 2
    tw.core.submit_intent("a", body.take(np.arange(half)), 0.0)
    tw.core.submit_intent("b", body.take(np.arange(half, len(body) - 1)), 0.0)
    mac, last = tw.mac, sched.flows[-1]
    tw.core.flow_seen(tw.key(len(sched) - 1), mac[last.src], mac[last.dst], 0, 0.0)
    pins = tw._pins()
    tables = tw.core.pinned_tables()
    chosen = [{paths[p] for p in path_of[path_of >= 0].tolist()}
              for _, path_of, paths in tables]
    assert len(tables) == 2 and chosen[0] & chosen[1]   # a path in both
    assert (pins[0][:-1] >= 0).all() and pins[0][-1] == -1
    todo = np.ones(len(sched), dtype=bool)
    ov = tw._overrides(todo, pins)
    for fi in range(len(sched)):
        assert ov[0][fi] != -1 and _laid_out(tw, fi, ov) == tw._route(fi, pins), fi


def _laid_out(tw, fi, ov):
    """The links the event loop's walk takes for flow ``fi`` from the laid-out routes
    ``ov`` (Twin._overrides)."""
    ov_row, ov_links, pp, pmap = ov
    walk = np.full(max(ov_links.shape[1], pp.shape[1] + 2), -1, dtype=np.int32)
    dcol, nh, nhc, tids, slots, smask = tw._tables()
    n = twin_module._walk(fi, walk, tw.f_src, tw.f_dst, tw.hash, ov_row, ov_links, pp, pmap,
                          tw.h_sw, tw.h_up, tw.h_down, dcol, nh, nhc, tids, slots, smask,
                          tw.swlid, True, True)
    return walk[:n].tolist()


@pytest.mark.parametrize("policy", ["congestion", "collective"])
def test_the_routes_laid_out_for_all_flows_at_once_are_the_routes_walked_per_flow(policy):
    """While every link is up the policy's routes (pins, learned flows' paths) are laid out
    for every flow in one pass; each must be the route the per-flow walk gives, and after a
    link fails each is walked again, with the same answer as the walk."""
    g = build("fattree", k=4, link_gbps=10)
    sched = workloads.build("moe_alltoall", g, 2, tokens_per_host=64, hidden=256,
                            schedule="shift", channels=2)
    tw = Twin(g, sched, policy=policy, seed=5)
    tw.setup()
    pins = tw._pins()
    todo = np.ones(len(sched), dtype=bool)
    todo[::5] = False   # started flows get no route
    for fail in (False, True):
        if fail:   # a switch link the last flow's route crosses (the core is not told)
            tw.up[tw._route(len(sched) - 1, pins)[1]] = False
        ov = tw._overrides(todo, pins)
        ov_row = ov[0]
        routed = 0
        for fi in range(len(sched)):
            if not todo[fi]:
                assert ov_row[fi] == -1
                continue
            want = tw._route(fi, pins)
            assert ov_row[fi] != -1 and _laid_out(tw, fi, ov) == want, (fail, fi)
            # A pin's row while every link is up; a whole route, walked, after a failure.
            assert (ov_row[fi] <= -2) == (fail or policy == "congestion"), (fail, fi)
            routed += 1
        assert routed == todo.sum()


def test_pins_by_host_pair_route_every_flow_of_the_pair_and_a_5_tuple_pin_beats_them():
    g = build("fattree", k=4, link_gbps=10)
    first, last = model.hosts(g)[0], model.hosts(g)[-1]   # across pods: several paths
    sched = Schedule([Flow(f"f{i}", first, last, 10 ** 6) for i in range(4)]
                     + [Flow("back", last, first, 10 ** 6)])
    tw = Twin(g, sched, policy="collective", seed=5)
    f0, pair = sched.flows[0], [0, 1, 2, 3]
    ip = {h: g.nodes[h]["ip"] for h in (f0.src, f0.dst)}
    tw.core.submit_intent("pair", [(ip[f0.src], ip[f0.dst], 1000)], 0.0)
    pin_of, paths = tw._pins()
    assert sorted(np.flatnonzero(pin_of >= 0).tolist()) == pair
    pair_path = paths[pin_of[pair[0]]]
    # The pair's intent weighs on its path: the flow's own intent takes another.
    tw.core.submit_intent("flow", [(ip[f0.src], ip[f0.dst], 1000, list(tw.key(pair[0])))],
                          0.0)
    pin_of, paths = tw._pins()
    key_path = next(path for key, _, _, path in tw.core.pinned() if key == tw.key(pair[0]))
    assert key_path != pair_path
    assert sorted(np.flatnonzero(pin_of >= 0).tolist()) == pair
    assert paths[pin_of[pair[0]]] == key_path
    assert all(paths[pin_of[fi]] == pair_path for fi in pair[1:])


@pytest.mark.parametrize("epoch", [0.0, 0.1])
@pytest.mark.parametrize("policy", ["ecmp", "hedera", "collective"])
def test_the_compiled_event_loop_runs_the_schedule_as_the_python_one(policy, epoch):
    """Large runs go through the event loop compiled with numba, small ones through the
    same code in Python: same records, and the same as the list of records run() gives;
    in epoch mode too (hedera's statistics rounds hand the rows to Python and back)."""
    g = build("fattree", k=4)
    sched = workloads.build("moe_alltoall", g, 1, tokens_per_host=128, schedule="shift",
                            channels=2)
    runs = {}
    for compiled in (False, True):
        tw = Twin(g, sched, policy=policy, seed=4, stats_interval_s=2e-6, resolution=0.01,
                  epoch=epoch)
        runs[compiled] = tw.run_columns(compiled=compiled)
    (py, py_info), (jit, jit_info) = runs[False], runs[True]
    assert jit_info["compiled"] and not py_info["compiled"]
    assert np.isfinite(py.end_s).all()
    np.testing.assert_allclose(jit.end_s, py.end_s, rtol=1e-9)
    np.testing.assert_array_equal(jit.bytes_received, py.bytes_received)
    assert jit_info["stats_rounds"] == py_info["stats_rounds"] > 0
    records, _ = Twin(g, sched, policy=policy, seed=4, stats_interval_s=2e-6,
                      resolution=0.01, epoch=epoch).run()
    assert [r["end_s"] for r in records] == pytest.approx(py.end_s.tolist(), rel=1e-9)
    by_list = metrics.summarize(g, sched, records, 1.0)
    by_columns = metrics.summarize(g, sched, py, 1.0)
    assert by_columns.keys() == by_list.keys()
    for key, value in by_list.items():
        assert by_columns[key] == (value if isinstance(value, (str, type(None)))
                                   else pytest.approx(value, rel=1e-9)), key



@pytest.mark.parametrize("epoch", [0.0, 0.1])
def test_the_compiled_loop_keeps_its_index_of_rows_per_link_through_growth_and_a_failure(epoch):
    """The compiled loop indexes the rows on every link and keeps the index as rows start,
    finish and move: with more rows per link than the index first has room for, and a link
    failing mid-run (Python reroutes rows between two entries of the loop), it runs the
    schedule as the Python loop does; in epoch mode too (rows grow while started rows
    wait for their rates, and the index, made afresh at each solve, grows)."""
    g = build("fattree", k=4)
    sched = workloads.build("moe_alltoall", g, 1, tokens_per_host=128, schedule="shift",
                            channels=15)
    end_s = Twin(g, sched, policy="ecmp", seed=4).run_columns()[0].end_s.max()
    failure = [{"at_s": end_s / 2, "link": ["e1", "a1"], "up": False}]
    runs = {}
    for compiled in (False, True):
        tw = Twin(g, sched, policy="ecmp", seed=4, link_events=failure, detect_s=end_s / 10,
                  epoch=epoch)
        runs[compiled] = tw.run_columns(compiled=compiled)
    (py, py_info), (jit, jit_info) = runs[False], runs[True]
    assert jit_info["compiled"] and py_info["reroutes"] > 0
    assert np.isfinite(py.end_s).all()
    np.testing.assert_allclose(jit.end_s, py.end_s, rtol=1e-9)
    assert jit_info["reroutes"] == py_info["reroutes"]



def test_the_loops_index_of_rows_per_link_matches_a_fresh_one_after_rows_come_and_go():
    """Rows dropped from the index one link at a time (the link's last row takes the
    place) leave every link listing exactly the live rows on it, as indexing afresh does;
    and the solver on the index gives the rates of the solver that indexes itself."""
    rng = np.random.default_rng(5)
    n_links, rows, width = 12, 40, 4
    caps = rng.uniform(1, 10, n_links)
    links = np.full((rows, width), -1, dtype=np.int32)
    for r in range(rows):   # some rows cross a link twice, as a detour may
        k = rng.integers(1, width + 1)
        links[r, :k] = rng.choice(n_links, k)
    alive = np.ones(rows, dtype=np.bool_)
    act = twin_module._Rows(rows=rows, width=width, n_links=n_links)
    act.grow_index(rows + width)
    assert twin_module._index_rows(links, alive, act.on_cnt, act.on, act.on_start, act.pos)
    for r in rng.permutation(rows)[:25].tolist():
        for w in range(width):
            if links[r, w] >= 0:
                twin_module._index_drop(r, w, links[r, w], act.on_cnt, act.on, act.on_start,
                                        act.pos, links)
                links[r, w] = -1
        alive[r] = False
        kept = [sorted(act.on[act.on_start[lk]:act.on_start[lk] + act.on_cnt[lk]].tolist())
                for lk in range(n_links)]
        fresh = twin_module._Rows(rows=rows, width=width, n_links=n_links)
        fresh.grow_index(rows + width)
        twin_module._index_rows(links, alive, fresh.on_cnt, fresh.on, fresh.on_start,
                                fresh.pos)
        assert kept == [sorted(fresh.on[fresh.on_start[lk]:fresh.on_start[lk] + fresh.on_cnt[
            lk]].tolist()) for lk in range(n_links)]
        rate = np.zeros(rows)
        twin_module._compiled()
        twin_module._progressive(links, caps, alive, act.on_cnt, act.on_start, act.on, rate,
                                 np.zeros(0))
        assert rate == pytest.approx(max_min_rates(links, caps, alive), rel=1e-9)


def test_epoch_modes_packed_index_lists_the_live_rows_and_asks_for_room_when_short():
    """Epoch mode indexes the rows on every link afresh at each solve, packed: each link
    lists exactly its live rows (a row crossing a link twice, twice), the solver on it gives
    the rates of the solver that indexes itself and the rate used on every link, and an
    index too small says so."""
    rng = np.random.default_rng(7)
    n_links, rows, width = 12, 40, 4
    caps = rng.uniform(1, 10, n_links)
    links = np.full((rows, width), -1, dtype=np.int32)
    for r in range(rows):
        k = rng.integers(1, width + 1)
        links[r, :k] = rng.choice(n_links, k)
    alive = rng.random(rows) < 0.7
    on_cnt, on_start = np.zeros(n_links, dtype=np.int32), np.zeros(n_links, dtype=np.int64)
    entries = int((links[alive] >= 0).sum())
    assert not twin_module._index_compact(links, alive, on_cnt, on_start,
                                          np.zeros(entries - 1, dtype=np.int32))
    on = np.full(entries, -1, dtype=np.int32)
    assert twin_module._index_compact(links, alive, on_cnt, on_start, on)
    for lk in range(n_links):
        want = sorted(r for r in range(rows) if alive[r] for w in range(width)
                      if links[r, w] == lk)
        assert sorted(on[on_start[lk]:on_start[lk] + on_cnt[lk]].tolist()) == want
    rate = np.zeros(rows)
    twin_module._compiled()
    # The rate used on each link comes with the rates, from either solver.
    used, plain_used, plain_rate = np.full(n_links, -1.0), np.full(n_links, -1.0), rate.copy()
    twin_module._progressive(links, caps, alive, on_cnt, on_start, on, rate, used)
    assert rate == pytest.approx(max_min_rates(links, caps, alive), rel=1e-9)
    twin_module._solve_plain(links, caps, alive, on_cnt, on_start, on, plain_rate, plain_used)
    assert plain_rate == pytest.approx(rate, rel=1e-9)
    want = np.zeros(n_links)
    for r in np.flatnonzero(alive):
        for lk in links[r][links[r] >= 0]:
            want[lk] += rate[r]
    assert used == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert plain_used == pytest.approx(want, rel=1e-9, abs=1e-9)
    assert (want[on_cnt > 0] > 0).all() and (want[on_cnt == 0] == 0).all()


# -- as a backend of the runner -------------------------------------------------------------
def _spec(tmp_path, **over):
    raw = {"name": "twin-test", "seed": 3, "repeats": 2, "baseline": True, "backend": "twin",
           "topology": {"name": "fattree", "params": {"k": 4, "link_gbps": 400}},
           "policy": "congestion",
           "workload": {"name": "moe_alltoall",
                        "params": {"tokens_per_host": 256, "schedule": "shift", "channels": 3}}}
    raw.update(over)
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("timebase, epoch", [("nominal", 0.0), ("emulated", 0.0),
                                             ("nominal", 0.2)])
def test_the_runner_runs_a_spec_on_the_twin_and_writes_the_emulations_results(tmp_path,
                                                                              timebase, epoch):
    path = _spec(tmp_path, twin={"timebase": timebase, "epoch": epoch})
    out = tmp_path / "results"
    assert runner.main([str(path), "--results", str(out), "--quiet"]) == 0
    run_dir = next(out.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["backend"] == "twin" and summary["policy"] == "congestion"
    assert summary["flows_completed"] == summary["flows_total"] > 0
    assert set(summary["figures"]) == {"fattree", "nonblocking"}
    nb = summary["figures"]["nonblocking"]["efficiency"]["median"]
    assert nb == pytest.approx(1.0, abs=0.02)   # max-min on one big switch meets the bound
    run = next(r for r in summary["runs"] if r["topology"] == "fattree")
    assert run["backend"] == "twin" and run["twin"]["timebase"] == timebase
    assert run["twin"]["epoch"] == epoch
    assert run["controller_flows_learned"] == 2 * summary["flows_total"]
    assert (run_dir / "flows.csv").exists()
    assert (run_dir / "runs" / "fattree-r1" / "trace.jsonl").exists()
    assert run["scale"] == pytest.approx(1.0 if timebase == "nominal" else 20 / 400e3)


def test_the_same_seed_gives_the_same_twin_run(tmp_path):
    g = build("fattree", k=4)
    sched = workloads.build("moe_alltoall", g, 1, tokens_per_host=128, schedule="shift")
    a, _ = Twin(g, sched, policy="hedera", seed=1, stats_interval_s=2e-6).run()
    b, _ = Twin(g, sched, policy="hedera", seed=1, stats_interval_s=2e-6).run()
    assert a == b
    s = metrics.summarize(g, sched, a, 1.0)
    assert s["flows_completed"] == len(sched.flows)


def test_a_coarser_resolution_solves_less_often_and_moves_completion_little():
    g = build("fattree", k=4)
    sched = workloads.build("moe_alltoall", g, 1, tokens_per_host=128, schedule="shift")
    exact, info_exact = Twin(g, sched, seed=1).run()
    coarse, info_coarse = Twin(g, sched, seed=1, resolution=0.01).run()
    e = metrics.summarize(g, sched, exact, 1.0)
    c = metrics.summarize(g, sched, coarse, 1.0)
    assert c["flows_completed"] == len(sched.flows)
    assert info_coarse["rate_solves"] < info_exact["rate_solves"]
    assert c["completion_time_s"] == pytest.approx(e["completion_time_s"], rel=0.03)


def test_in_epoch_mode_a_flow_starting_between_solves_takes_only_what_its_links_have_free():
    """a runs alone on the shared s1-s2 link; b starts on it halfway. Exact, they share it
    from then on. With an epoch of 0.9 (a solve once 90% of the flows in flight changed),
    b's start is one change of two: no solve, the link is full, b waits at rate 0 until a
    ends (its share unused until then), then runs alone."""
    size = 10 ** 6
    t_alone = 8 * size / 10e9
    flows = [Flow("a", "h1", "h2", size), Flow("b", "h3", "h4", size, start_s=t_alone / 2)]
    exact, _ = run(line(), flows)
    assert exact["a"]["end_s"] == pytest.approx(t_alone * 1.5)
    assert exact["b"]["end_s"] == pytest.approx(t_alone * 2)
    epoch, info = run(line(), flows, epoch=0.9)
    assert epoch["a"]["end_s"] == pytest.approx(t_alone)
    assert epoch["b"]["start_s"] == pytest.approx(t_alone / 2)
    assert epoch["b"]["end_s"] == pytest.approx(t_alone * 2)
    # On links with room it takes what is free, as exact: c shares nothing with a.
    free, _ = run(star(4), [Flow("a", "h1", "h2", size),
                            Flow("c", "h3", "h4", size, start_s=t_alone / 2)], epoch=0.9)
    assert free["c"]["end_s"] == pytest.approx(t_alone * 1.5)
    assert info["rate_solves"] == 2


def test_an_epoch_solves_less_often_and_moves_completion_and_fcts_little():
    """48 flows in flight (3 channels per host): an epoch of 0.2 solves once 10 changed."""
    g = build("fattree", k=4)
    sched = workloads.build("moe_alltoall", g, 1, tokens_per_host=128, schedule="shift",
                            channels=3)
    exact, info_exact = Twin(g, sched, seed=1).run_columns()
    approx, info_epoch = Twin(g, sched, seed=1, epoch=0.2).run_columns()
    e = metrics.summarize(g, sched, exact, 1.0)
    a = metrics.summarize(g, sched, approx, 1.0)
    assert a["flows_completed"] == len(sched)
    assert info_epoch["rate_solves"] < info_exact["rate_solves"] / 3
    assert a["completion_time_s"] == pytest.approx(e["completion_time_s"], rel=0.05)
    fct_e, fct_a = exact.end_s - exact.start_s, approx.end_s - approx.start_s
    for q in (50, 99):
        assert np.percentile(fct_a, q) == pytest.approx(np.percentile(fct_e, q), rel=0.1)


@pytest.mark.parametrize("over, message", [
    ({"backend": "ns3"}, "'backend' must be one of"),
    ({"policy": "stp"}, "which the twin does not run"),
    ({"twin": {"timebase": "wall"}}, "'twin.timebase'"),
    ({"twin": {"detect_s": -1}}, "'twin.detect_s'"),
    ({"twin": {"resolution": 0.5}}, "'twin.resolution'"),
    ({"twin": {"epoch": 1.0}}, "'twin.epoch'"),
    ({"twin": {"speed": 2}}, "unknown twin keys"),
])
def test_bad_twin_specs_name_the_key(tmp_path, over, message, capsys):
    path = _spec(tmp_path, **over)
    with pytest.raises(specs.SpecError, match=message):
        specs.load(path)
    assert runner.main([str(path), "--results", str(tmp_path / "r")]) == 2
    assert message.split("'")[1 if "'" in message else 0] in capsys.readouterr().err
