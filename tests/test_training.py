"""Training traffic: the timing model (Flow.delay_s), MoE gating and layers, iterations."""

import json
import math

import numpy as np
import pytest

from fabric.model import hosts as fabric_hosts
from topologies import build
from traffic.schedule import Flow, Schedule, ScheduleError
from traffic.training import (
    gate, moe_layers, pipeline_order, place_experts, training_iteration)


def names(n):
    return [f"h{i}" for i in range(1, n + 1)]


# -- the timing model: Flow.delay_s, Schedule.ideal_times, Schedule.scale_times -------------

def gapped():
    return Schedule([
        Flow("a", "h1", "h2", 10),
        Flow("b", "h2", "h3", 10, deps=("a",), delay_s=0.5),
        Flow("c", "h3", "h1", 10, deps=("b",), start_s=3.0, delay_s=0.25),
        Flow("d", "h1", "h3", 10, delay_s=0.75),
    ], name="gapped")


def test_delay_s_defaults_to_zero_and_is_written_only_when_set(tmp_path):
    s = gapped()
    assert Flow("x", "h1", "h2", 1).delay_s == 0.0
    assert "delay_s" not in s.flow("a").to_dict()
    assert s.flow("b").to_dict()["delay_s"] == 0.5
    path = tmp_path / "g.jsonl"
    s.to_jsonl(path)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [("delay_s" in d) for d in lines[1:]] == [False, True, True, True]
    assert Schedule.from_jsonl(path) == s
    assert Schedule.from_json_obj(json.loads(json.dumps(s.to_json_obj()))) == s


@pytest.mark.parametrize("bad", [-1.0, float("inf"), float("nan"), "1", True])
def test_delay_s_is_validated(bad):
    with pytest.raises(ScheduleError, match="'a': delay_s must be a finite number >= 0"):
        Schedule([Flow("a", "h1", "h2", 1, delay_s=bad)]).validate()


def test_ideal_times_follow_the_documented_rule():
    t = gapped().ideal_times()
    assert t["a"] == (0.0, 0.0)
    assert t["b"] == (0.5, 0.5)             # deps done at 0, then 0.5 s of compute
    assert t["c"] == (3.0, 3.0)             # start_s dominates 0.5 + 0.25
    assert t["d"] == (0.75, 0.75)           # no deps: delay counts from the clock start
    t = gapped().ideal_times(lambda f: 1.0)
    assert t["b"] == (1.5, 2.5) and t["c"] == (3.0, 4.0)


def test_scale_times_stretches_start_and_delay():
    s = gapped().scale_times(10)
    assert s.flow("c").start_s == 30.0 and s.flow("c").delay_s == 2.5
    assert s.meta["time_factor"] == 10
    assert s.scale_times(0.5).meta["time_factor"] == 5
    with pytest.raises(ValueError, match="factor"):
        gapped().scale_times(0)


# -- MoE gating -----------------------------------------------------------------------------

def test_gate_conserves_token_copies_and_applies_capacity():
    rng = np.random.default_rng(0)
    n, tokens, k, n_experts = 4, 256, 2, 8
    probs = np.tile(1.0 / np.arange(1, n_experts + 1) ** 1.5, (n, 1))
    probs /= probs.sum(axis=1, keepdims=True)
    where = np.arange(n_experts) % n
    copies, dropped = gate(n, tokens, k, probs, where, None, rng)
    assert copies.sum(axis=1).tolist() == [tokens * k] * n and not dropped.any()
    copies, dropped = gate(n, tokens, k, probs, where, 1.0, np.random.default_rng(0))
    capacity = math.ceil(1.0 * tokens * k / n_experts)
    assert (copies.sum(axis=1) + dropped).tolist() == [tokens * k] * n
    assert dropped.sum() > 0
    # at most `capacity` copies per expert per host: each host holds 2 experts here
    assert copies.max() <= 2 * capacity


def test_capacity_factor_drops_more_when_tighter():
    hosts = names(4)
    drops = [moe_layers(hosts, tokens_per_host=512, hidden=4, skew=1.2, capacity_factor=cf,
                        seed=5).meta["dropped_copies"] for cf in (None, 2.0, 1.0, 0.5)]
    assert drops[0] == 0 and drops[0] <= drops[1] < drops[2] < drops[3]


def test_moe_layer_pairs_get_what_the_gating_assigned():
    hosts = names(6)
    layers, tokens, k = 3, 200, 2
    s = moe_layers(hosts, layers=layers, tokens_per_host=tokens, hidden=8, dtype_bytes=2,
                   top_k=k, skew=1.0, capacity_factor=1.25, seed=11)
    bpt = s.meta["bytes_per_token"]
    assert bpt == 16
    total = 0
    for layer in range(layers):
        dispatch = Schedule([f for f in s if f.tag("layer") == layer
                             and f.tag("phase") == "dispatch"]).bytes_matrix(hosts)
        combine = Schedule([f for f in s if f.tag("layer") == layer
                            and f.tag("phase") == "combine"]).bytes_matrix(hosts)
        np.testing.assert_array_equal(combine, dispatch.T)   # combine mirrors dispatch
        total += dispatch.sum() // bpt
    assert total + s.meta["local_copies"] + s.meta["dropped_copies"] == \
        layers * len(hosts) * tokens * k


def test_moe_layer_dependencies_and_compute_gaps():
    hosts = names(4)
    s = moe_layers(hosts, layers=2, tokens_per_host=64, hidden=4, gap_s=0.002,
                   expert_s=0.001)
    for f in s:
        if f.tag("phase") == "combine":       # expert j waits for every token sent to it
            into = {g.id for g in s.receiving(f.src)
                    if g.tag("phase") == "dispatch" and g.tag("layer") == f.tag("layer")}
            assert set(f.deps) == into and f.delay_s == 0.001
        elif f.tag("layer") == 1:             # next layer waits for its tokens to come back
            back = {g.id for g in s.receiving(f.src)
                    if g.tag("phase") == "combine" and g.tag("layer") == 0}
            assert set(f.deps) == back and f.delay_s == 0.002
    t = s.ideal_times()
    assert all(t[f.id][0] == pytest.approx(f.start_s) for f in s)
    assert max(f.start_s for f in s) == pytest.approx(2 * (0.002 + 0.001))


def test_topology_aware_placement_keeps_more_traffic_under_a_leaf():
    g = build("leafspine", leaves=4, spines=2, hosts_per_leaf=4)
    hosts = fabric_hosts(g)
    leaf = {h: g.nodes[h]["leaf"] for h in hosts}

    def under_leaf(s):
        return sum(f.bytes for f in s if leaf[f.src] == leaf[f.dst]) / s.total_bytes()

    common = dict(tokens_per_host=512, hidden=4, skew=1.2, leaf_affinity=0.8, g=g, seed=2)
    rr = moe_layers(hosts, placement="round_robin", **common)
    topo = moe_layers(hosts, placement="topology", **common)
    assert under_leaf(topo) > under_leaf(rr) + 0.1
    by_order = moe_layers(hosts, placement="topology", hosts_per_leaf=4,
                          **{**common, "g": None})
    assert by_order.meta["expert_host"] == topo.meta["expert_host"]
    with pytest.raises(ValueError, match="topology"):
        moe_layers(hosts, placement="topology", tokens_per_host=8)


def test_place_experts_fills_every_host_exactly():
    expected = np.random.default_rng(1).random((6, 12))
    where = place_experts(6, 2, "topology", expected, [0, 0, 0, 1, 1, 1])
    assert np.bincount(where, minlength=6).tolist() == [2] * 6
    assert place_experts(3, 2).tolist() == [0, 1, 2, 0, 1, 2]


def test_moe_seeds_reproduce_and_differ():
    hosts = names(4)
    a = moe_layers(hosts, tokens_per_host=64, skew=1.0, seed=1)
    assert a == moe_layers(hosts, tokens_per_host=64, skew=1.0, seed=1)
    assert a.flows != moe_layers(hosts, tokens_per_host=64, skew=1.0, seed=2).flows


# -- training iterations --------------------------------------------------------------------

@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
@pytest.mark.parametrize("stages, microbatches", [(1, 1), (2, 4), (4, 3), (4, 8)])
def test_pipeline_order_runs_every_microbatch_forward_then_backward(schedule, stages,
                                                                   microbatches):
    for stage in range(stages):
        order = pipeline_order(schedule, stages, stage, microbatches)
        assert sorted(order) == sorted([("F", m) for m in range(microbatches)]
                                       + [("B", m) for m in range(microbatches)])
        assert all(order.index(("F", m)) < order.index(("B", m)) for m in range(microbatches))
        if schedule == "1f1b":    # in flight at most stages - stage microbatches
            live = peak = 0
            for kind, _ in order:
                live += 1 if kind == "F" else -1
                peak = max(peak, live)
            assert peak <= max(1, stages - stage)


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe"])
def test_pipeline_iteration_flows_and_compute_only_time(schedule):
    hosts = names(8)                       # pp=4 stages x dp=2 replicas
    f_s, b_s, m = 1.0, 2.0, 6
    s = training_iteration(hosts, pp=4, microbatches=m, pp_schedule=schedule,
                           activation_bytes=1000, forward_s=f_s, backward_s=b_s,
                           grad_bytes=4000, buckets=2)
    acts = [f for f in s if f.tag("phase") == "activation"]
    grads = [f for f in s if f.tag("phase") == "activation_grad"]
    assert len(acts) == len(grads) == m * 3 * 2
    assert {(f.src, f.dst) for f in acts} == {("h1", "h3"), ("h2", "h4"), ("h3", "h5"),
                                              ("h4", "h6"), ("h5", "h7"), ("h6", "h8")}
    # the classic pipeline time: (m + p - 1) * (f + b) for uniform stages
    assert s.meta["iteration_compute_s"] == pytest.approx((m + 3) * (f_s + b_s))
    t = s.ideal_times()
    for f in acts + grads:
        assert t[f.id][0] == pytest.approx(f.start_s)
    for f in acts:
        if f.tag("stage") > 0:    # forward compute right after the activations arrive
            assert f.delay_s == f_s and len(f.deps) == 1
            assert s.flow(f.deps[0]).tag("phase") == "activation"
        elif f.deps:              # stage 0 waits for the backward it ran before (1F1B)
            assert f.delay_s == f_s + b_s
            assert s.flow(f.deps[0]).tag("phase") == "activation_grad"


def test_gradient_buckets_all_reduce_each_stage_in_order():
    hosts = names(8)
    s = training_iteration(hosts, pp=2, microbatches=2, forward_s=1.0, backward_s=2.0,
                           grad_bytes=8000, buckets=4)
    dp = [f for f in s if f.tag("bucket") is not None]
    for h in hosts:                         # ring over 4 replicas: 2(n-1)/n * grad_bytes
        assert sum(f.bytes for f in dp if f.src == h) == 2 * 3 * 8000 // 4
    assert {f.tag("stage") for f in dp} == {0, 1}
    for stage in (0, 1):
        starts = [min(f.start_s for f in dp if (f.tag("stage"), f.tag("bucket"), f.tag("step"))
                      == (stage, k, 0)) for k in range(4)]
        assert starts == sorted(starts) and len(set(starts)) == 4
    first = [f for f in dp if f.tag("bucket") == 1 and f.tag("step") == 0 and f.src == "h1"]
    assert any(d.startswith("dp-s0-b0-") for d in first[0].deps)   # one stream: b0 first


def test_moe_training_iteration_has_every_phase_and_conserves_tokens():
    hosts = names(8)
    s = training_iteration(hosts, pp=2, microbatches=2, moe_layers=2, tokens=64, hidden=8,
                           skew=1.0, capacity_factor=1.0, expert_s=0.001, grad_bytes=4096,
                           seed=4)
    phases = {f.tag("phase") for f in s}
    assert {"activation", "activation_grad", "dispatch", "combine", "combine_grad",
            "dispatch_grad", "reduce_scatter", "all_gather"} <= phases
    for f in s:
        if f.tag("phase") in ("dispatch", "combine", "combine_grad", "dispatch_grad"):
            assert (int(f.src[1:]) - 1) // 4 == (int(f.dst[1:]) - 1) // 4   # within a stage
    copies = sum(f.bytes for f in s if f.tag("phase") == "dispatch") // 16
    assert copies + s.meta["local_copies"] + s.meta["dropped_copies"] == \
        2 * 2 * 2 * 4 * 64 * 2          # stages x microbatches x layers x hosts x tokens x k
    assert s == training_iteration(hosts, pp=2, microbatches=2, moe_layers=2, tokens=64,
                                   hidden=8, skew=1.0, capacity_factor=1.0, expert_s=0.001,
                                   grad_bytes=4096, seed=4)


def test_training_iteration_checks_parameters():
    with pytest.raises(ValueError, match="pp"):
        training_iteration(names(6), pp=4)
    with pytest.raises(ValueError, match="pp_schedule"):
        training_iteration(names(4), pp=2, pp_schedule="zb")
    with pytest.raises(ValueError, match="allreduce"):
        training_iteration(names(4), allreduce="butterfly")
