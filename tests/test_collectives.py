"""Collectives: bytes per the algorithm, data reaching every rank, DAG shape, bounds, errors."""

import itertools

import networkx as nx
import numpy as np
import pytest

from topologies import build
from fabric.model import hosts as fabric_hosts
from traffic import metrics
from traffic.collectives import (
    alltoall, btree, collective_flows, double_binary_tree, exits, hd_allreduce, hierarchical,
    hierarchical_alltoall, lower_bound_s, rail_groups, ring_allgather, ring_allreduce,
    ring_reducescatter, split_bytes, tree_allreduce)


def names(n):
    return [f"h{i}" for i in range(1, n + 1)]


def sent(s, h):
    return sum(f.bytes for f in s.sending(h))


def received(s, h):
    return sum(f.bytes for f in s.receiving(h))


def carried(s):
    """For ring flows: the ranks whose data each flow carries, from its ancestors only.

    A flow carries its sender's own contribution plus whatever reached the sender, in
    flows of the same channel, chunk and piece that are among its ancestors.
    """
    dag = s.dag()
    by_id = {f.id: f for f in s}
    key = {f.id: (f.tag("channel"), f.tag("chunk"), f.tag("piece")) for f in s}
    result = {}
    for fid in nx.topological_sort(dag):
        f = by_id[fid]
        data = {f.src}
        for a in nx.ancestors(dag, fid):
            if by_id[a].dst == f.src and key[a] == key[fid]:
                data |= result[a]
        result[fid] = data
    return result


def test_split_bytes_is_exact_and_even():
    assert split_bytes(10, 4) == [3, 3, 2, 2]
    assert sum(split_bytes(1001, 7)) == 1001
    with pytest.raises(ValueError, match="size_bytes"):
        split_bytes(3, 4)


@pytest.mark.parametrize("n, channels, chunks", [(2, 1, 1), (3, 1, 1), (4, 2, 3), (8, 1, 2)])
def test_ring_allreduce_moves_2_n_minus_1_over_n_S_per_rank(n, channels, chunks):
    hosts = names(n)
    size = n * channels * chunks * 1000
    s = ring_allreduce(hosts, size, channels=channels, chunks=chunks, seed=3)
    for h in hosts:
        assert sent(s, h) == received(s, h) == 2 * (n - 1) * size // n
    assert len(s) == channels * chunks * 2 * (n - 1) * n
    steps = {f.tag("step") for f in s}
    assert steps == set(range(2 * (n - 1)))
    assert s.hosts() == hosts and nx.is_directed_acyclic_graph(s.dag())
    assert s.meta["size_bytes"] == size and s.meta["collective"] == "allreduce"
    assert s.meta["seed"] == 3


def test_ring_step_depends_on_what_it_received_and_its_own_previous_send():
    s = ring_allreduce(names(4), 400)
    f = s.flow("allreduce-ring-c0-k0-s3-h2-h3")
    assert set(f.deps) == {"allreduce-ring-c0-k0-s2-h1-h2", "allreduce-ring-c0-k0-s2-h2-h3"}
    assert s.flow("allreduce-ring-c0-k0-s0-h2-h3").deps == ()
    assert [f.tag("phase") for f in s if f.src == "h1"] == \
        ["reduce_scatter"] * 3 + ["all_gather"] * 3


def test_ring_chunks_chain_through_the_channel():
    s = ring_allreduce(names(3), 600, chunks=2)
    assert s.flow("allreduce-ring-c0-k1-s0-h1-h2").deps == ("allreduce-ring-c0-k0-s3-h1-h2",)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_ring_allreduce_data_reaches_every_rank(n):
    s = ring_allreduce(names(n), 60 * n, chunks=2)
    data = carried(s)
    for h in names(n):
        for k, p in itertools.product(range(2), range(n)):
            into = [data[f.id] for f in s.receiving(h)
                    if (f.tag("chunk"), f.tag("piece")) == (k, p)]
            assert set().union({h}, *into) == set(names(n)), (h, k, p)


def test_reducescatter_and_allgather_are_half_a_ring():
    hosts, size = names(4), 4000
    rs, ag = ring_reducescatter(hosts, size), ring_allgather(hosts, size)
    for s in (rs, ag):
        assert len(s) == 3 * 4
        assert all(sent(s, h) == 3 * size // 4 for h in hosts)
    data = carried(rs)
    for i, h in enumerate(hosts):      # rank i ends with piece i reduced over every rank
        into = [data[f.id] for f in rs.receiving(h) if f.tag("piece") == i]
        assert set().union({h}, *into) == set(hosts)
    data = carried(ag)
    for i, h in enumerate(hosts):      # rank i receives every other rank's piece
        for p, owner in enumerate(hosts):
            if p != i:
                assert any(owner in data[f.id] for f in ag.receiving(h)
                           if f.tag("piece") == p)


@pytest.mark.parametrize("n", range(2, 40))
def test_double_binary_tree_is_two_spanning_trees_like_nccl(n):
    trees = double_binary_tree(n)
    for tree in trees:
        edges = [(r, c) for r in range(n) for c in tree[r][1]]
        g = nx.Graph(edges)
        assert len(edges) == n - 1 and (n == 1 or nx.is_connected(g)) and len(g) == n
        for r, (parent, children) in enumerate(tree):
            for c in children:
                assert tree[c][0] == r
            assert len(children) <= 2
        assert sum(p < 0 for p, _ in tree) == 1
    if n % 2 == 0:
        for r in range(n):
            p0, p1 = trees[0][r][0], trees[1][n - 1 - r][0]
            assert p1 == (-1 if p0 < 0 else n - 1 - p0)


def test_btree_matches_ncclgetbtree_examples():
    # The illustration in NCCL's src/graph/trees.cc for 14 ranks.
    assert btree(14, 0) == (-1, [8])
    assert btree(14, 8) == (0, [4, 12])
    assert btree(14, 12) == (8, [10, 13])
    assert btree(14, 13) == (12, [])
    assert btree(14, 5) == (6, [])


@pytest.mark.parametrize("n", [2, 3, 6, 9])
def test_tree_allreduce_reduces_every_rank_then_broadcasts(n):
    chunks = 3
    hosts = names(n)
    s = tree_allreduce(hosts, 600 * n, chunks=chunks)
    dag = s.dag()
    by_id = {f.id: f for f in s}
    for t, c in itertools.product(range(2), range(chunks)):
        downs = [f for f in s if (f.tag("tree"), f.tag("chunk"), f.tag("phase"))
                 == (t, c, "broadcast")]
        ups = [f for f in s if (f.tag("tree"), f.tag("chunk"), f.tag("phase")) == (t, c, "reduce")]
        assert len(ups) == len(downs) == n - 1
        root = ({h for h in hosts} - {f.src for f in ups}).pop()
        assert {f.dst for f in downs} == set(hosts) - {root}
        for f in downs:     # every rank's data is reduced before any rank gets the result
            contributors = {by_id[a].src for a in nx.ancestors(dag, f.id)
                            if by_id[a].tag("phase") == "reduce"
                            and (by_id[a].tag("tree"), by_id[a].tag("chunk")) == (t, c)}
            assert contributors == set(hosts) - {root}
    assert s.total_bytes() == 2 * (n - 1) * 600 * n


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_halving_doubling_power_of_two_moves_the_ring_volume(n):
    size = 1024 * n
    s = hd_allreduce(names(n), size)
    p = n.bit_length() - 1
    assert len(s) == 2 * p * n
    for h in names(n):
        assert sent(s, h) == received(s, h) == 2 * (n - 1) * size // n
    assert [f.bytes for f in s if f.src == "h1"] == \
        [size >> (k + 1) for k in range(p)] + [size >> (p - k) for k in range(p)]


@pytest.mark.parametrize("n", [3, 5, 6, 7, 12])
def test_halving_doubling_remainder_folds_in_and_out(n):
    size = 4096
    s = hd_allreduce(names(n), size)
    m = 1 << (n.bit_length() - 1)
    rem = n - m
    folds = [f for f in s if f.tag("phase") == "fold"]
    unfolds = [f for f in s if f.tag("phase") == "unfold"]
    assert [(f.src, f.dst) for f in folds] == [(f"h{2 * j + 1}", f"h{2 * j + 2}")
                                              for j in range(rem)]
    assert [(f.src, f.dst) for f in unfolds] == [(b, a) for a, b in
                                                  ((f.src, f.dst) for f in folds)]
    assert all(f.bytes == size for f in folds + unfolds)
    dag = s.dag()
    by_id = {f.id: f for f in s}
    for h in names(n):      # the result each rank ends with depends on every rank
        last = [f for f in s.receiving(h)][-1]
        senders = {by_id[a].src for a in nx.ancestors(dag, last.id)} | {last.src, h}
        assert senders == set(names(n))


@pytest.mark.parametrize("schedule, channels", [("all", None), ("shift", 1), ("shift", 2)])
def test_alltoall_sends_S_over_n_to_every_other_rank(schedule, channels):
    hosts, size = names(5), 5000
    s = alltoall(hosts, size, schedule=schedule, channels=channels)
    m = s.bytes_matrix(hosts)
    np.testing.assert_array_equal(m, 1000 * (1 - np.eye(5, dtype=int)))
    if schedule == "shift":
        first = [f for f in s if f.src == "h1"]
        assert [f.tag("round") for f in first] == [1, 2, 3, 4]
        assert all(f.deps == (first[k - channels].id,) for k, f in enumerate(first)
                   if k >= channels)
    else:
        assert all(not f.deps for f in s)


def test_collective_flows_entry_applies_to_each_ranks_first_sends_only():
    entry = {"h1": (0.5, ("x",)), "h2": (0.25, ())}
    flows = collective_flows("allreduce", names(3), 300, entry=entry, prefix="b0")
    first = {f.src: f for f in flows if f.tag("step") == 0}
    assert first["h1"].start_s == 0.5 and first["h1"].deps == ("x",)
    assert first["h2"].start_s == 0.25 and first["h3"].start_s == 0.0
    assert all("x" not in f.deps for f in flows if f.tag("step") != 0)
    tree = collective_flows("allreduce", names(4), 400, "tree", entry=entry, chunks=2)
    assert all("x" in f.deps for f in tree if f.src == "h1" and f.tag("chunk") == 0)


def test_exits_are_the_last_flows_touching_each_host():
    flows = collective_flows("allreduce", names(3), 300, prefix="p")
    done = exits(flows, names(3) + ["h9"])
    assert set(done["h1"]) == {"p-c0-k0-s3-h1-h2", "p-c0-k0-s3-h3-h1"}
    assert done["h9"] == ()


def test_hierarchical_allreduce_rides_the_rails():
    g = build("rail", servers=3, gpus_per_server=4, nic_gbps=400)
    hosts = fabric_hosts(g)
    size = 3 * 4 * 1000
    s = hierarchical(hosts, size, g=g, nvlink_gbps=3600.0)
    assert all(g.nodes[f.src]["rail"] == g.nodes[f.dst]["rail"] for f in s)
    for h in hosts:                 # 2(m-1)/m of S / G over the fabric, m = 3 servers
        assert sent(s, h) == 2 * 2 * (size // 4) // 3
    nv = 3 / 4 * size * 8 / 3600e9
    assert s.meta["nvlink_before_s"] == pytest.approx(nv)
    assert s.meta["nvlink_after_s"] == pytest.approx(nv)
    assert all(f.start_s == pytest.approx(nv) for f in s if f.tag("step") == 0)
    assert s.meta["size_bytes"] == size and s.meta["servers"] == 3
    by_order = hierarchical(hosts, size, gpus_per_server=4, nvlink_gbps=3600.0)
    assert by_order.flows == s.flows
    ag = hierarchical(hosts, size, collective="allgather", gpus_per_server=4)
    assert ag.meta["nvlink_before_s"] == 0 and ag.meta["nvlink_after_s"] > 0
    with pytest.raises(ValueError, match="2 servers"):
        hierarchical(names(4), size, gpus_per_server=4)


def test_hierarchical_alltoall_is_pxn():
    hosts = names(8)                # 2 servers x 4 GPUs
    size = 8 * 100
    s = hierarchical_alltoall(hosts, size, gpus_per_server=4)
    groups = rail_groups(hosts, gpus_per_server=4)
    assert groups[2][3] == "h7"
    assert len(s) == 4 * 2
    for f in s:                     # one flow per rail and server pair, G pieces in it
        assert int(f.src[1:]) % 4 == int(f.dst[1:]) % 4 and f.bytes == 4 * 100
    for h in hosts:                 # (m-1)/m * S leaves every GPU
        assert sent(s, h) == size // 2
    with pytest.raises(ValueError, match="whole servers"):
        rail_groups(names(6), gpus_per_server=4)


def test_lower_bounds_and_busbw_follow_nccl_tests():
    assert lower_bound_s("allreduce", 4, 1e9, 8.0) == pytest.approx(1.5)
    assert lower_bound_s("allgather", 4, 1e9, 8.0) == pytest.approx(0.75)
    assert lower_bound_s("alltoall", 4, 1e9, 8.0) == pytest.approx(0.75)
    hosts = names(4)
    s = ring_allreduce(hosts, 4 * 10**6)
    records = [{"id": f.id, "start_s": 0.0, "end_s": 2.0, "bytes_received": f.bytes} for f in s]
    g = build("leafspine", leaves=1, spines=1, hosts_per_leaf=4, host_gbps=8.0)
    summary = metrics.summarize(g, s, records, time_scale=1.0)
    assert summary["size_bytes"] == 4 * 10**6
    assert summary["algbw_gbps"] == pytest.approx(4e6 * 8 / 2 / 1e9)
    assert summary["busbw_gbps"] == pytest.approx(summary["algbw_gbps"] * 1.5)
    assert summary["per_nic_bound_s"] == pytest.approx(
        lower_bound_s("allreduce", 4, 4 * 10**6, 8.0))


def test_generators_are_deterministic_and_check_parameters():
    hosts = names(6)
    for fn in (ring_allreduce, tree_allreduce, hd_allreduce, ring_allgather, alltoall):
        assert fn(hosts, 6000, seed=1).flows == fn(hosts, 6000, seed=1).flows
    with pytest.raises(ValueError, match="algorithm"):
        collective_flows("allgather", hosts, 600, "tree")
    with pytest.raises(ValueError, match="size_bytes"):
        ring_allreduce(hosts, 5)
    with pytest.raises(ValueError, match="chunks"):
        collective_flows("allreduce", hosts, 600, "hd", chunks=2)
    with pytest.raises(ValueError, match="channels"):
        alltoall(hosts, 600, channels=2)
    with pytest.raises(ValueError, match="at least 2"):
        ring_allreduce(["h1"], 600)
