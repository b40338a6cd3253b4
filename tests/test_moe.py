"""MoE all-to-all and permutation generators: volumes, determinism, DAG shape, errors."""

import collections

import networkx as nx
import numpy as np
import pytest

from traffic.moe import moe_alltoall, permutation


def names(n):
    return [f"h{i}" for i in range(1, n + 1)]


def test_uniform_is_exactly_uniform():
    hosts = names(4)
    s = moe_alltoall(hosts, tokens_per_host=64, hidden=8, dtype_bytes=2, top_k=2)
    per_pair = 64 * 2 // 4 * 8 * 2
    expected = np.full((4, 4), per_pair) - np.diag([per_pair] * 4)
    np.testing.assert_array_equal(s.bytes_matrix(hosts), expected)
    assert len(s) == 12
    f = s.flow("a2a-h1-h2")
    assert (f.tag("collective"), f.tag("workload"), f.tag("phase")) == \
        ("alltoall", "moe", "dispatch")
    assert s.meta["bytes_per_token"] == 16 and s.meta["tokens_per_pair"] == 32.0
    assert all(not f.deps and f.start_s == 0.0 for f in s)


def test_skew_zero_is_the_uniform_case():
    hosts = names(5)
    assert moe_alltoall(hosts, skew=0).flows == moe_alltoall(hosts, skew=None).flows


def test_uniform_rounds_pair_bytes_to_an_int():
    # 5 tokens * 1 expert / 3 hosts * 3 bytes = 5 bytes exactly; 5 / 4 * 1 byte = 1.25 -> 1.
    s = moe_alltoall(names(3), tokens_per_host=5, hidden=3, dtype_bytes=1, top_k=1)
    assert {f.bytes for f in s} == {5}
    s = moe_alltoall(names(4), tokens_per_host=5, hidden=1, dtype_bytes=1, top_k=1)
    assert {f.bytes for f in s} == {1}


@pytest.mark.parametrize("experts_per_host, top_k", [(1, 2), (1, 4), (3, 5)])
def test_skewed_bytes_are_conserved(experts_per_host, top_k):
    hosts, tokens, bpt = names(6), 500, 6
    s = moe_alltoall(hosts, tokens_per_host=tokens, hidden=3, dtype_bytes=2, top_k=top_k,
                     experts_per_host=experts_per_host, skew=1.2, seed=3)
    local = s.meta["local_tokens"]
    for i, h in enumerate(hosts):
        sent = sum(f.bytes for f in s.sending(h))
        assert sent == (tokens * top_k - local[i]) * bpt
    assert s.total_bytes() == (len(hosts) * tokens * top_k - sum(local)) * bpt
    assert all(f.bytes > 0 and f.bytes % bpt == 0 for f in s)


def test_top_k_experts_are_distinct():
    # With top_k equal to the number of experts, every token visits every expert exactly
    # once whatever the skew: sampling with replacement would break this.
    hosts = names(4)
    s = moe_alltoall(hosts, tokens_per_host=100, hidden=1, dtype_bytes=1, top_k=4, skew=3.0)
    assert {f.bytes for f in s} == {100}
    assert s.meta["local_tokens"] == [100] * 4


def test_zero_byte_pairs_have_no_flow():
    hosts = names(8)
    s = moe_alltoall(hosts, tokens_per_host=3, hidden=1, dtype_bytes=1, top_k=1, skew=4.0)
    m = s.bytes_matrix(hosts)
    assert len(s) == np.count_nonzero(m) < 8 * 7
    assert all(f.bytes > 0 for f in s)


def test_skew_follows_the_seed():
    hosts = names(8)
    a = moe_alltoall(hosts, tokens_per_host=256, skew=1.0, seed=1)
    assert moe_alltoall(hosts, tokens_per_host=256, skew=1.0, seed=1) == a
    assert moe_alltoall(hosts, tokens_per_host=256, skew=1.0, seed=2).flows != a.flows
    assert a.meta["seed"] == 1 and a.meta["skew"] == 1.0


def test_hot_expert_host_receives_most_and_moves_with_the_seed():
    hosts = names(8)
    hot_hosts = set()
    for seed in range(6):
        s = moe_alltoall(hosts, tokens_per_host=512, skew=2.0, seed=seed)
        received = s.bytes_matrix(hosts).sum(axis=0)
        assert hosts[int(np.argmax(received))] == s.meta["hot_host"]
        hot_hosts.add(s.meta["hot_host"])
    assert len(hot_hosts) > 1


def sender_chains(s):
    by_sender = collections.defaultdict(list)
    for f in s:
        by_sender[f.src].append(f)
    return by_sender


@pytest.mark.parametrize("channels", [1, 2, 3, 5, 9])
def test_shift_rounds_and_channel_chains(channels):
    n = 6
    s = moe_alltoall(names(n), tokens_per_host=60, schedule="shift", channels=channels)
    assert sorted({f.tag("round") for f in s}) == list(range(1, n))
    assert s.meta["channels"] == channels
    assert nx.is_directed_acyclic_graph(s.dag())
    for i, (src, flows) in enumerate(sorted(sender_chains(s).items())):
        assert [f.tag("round") for f in flows] == list(range(1, n))
        for k, f in enumerate(flows):
            assert int(f.dst[1:]) - 1 == (int(src[1:]) - 1 + f.tag("round")) % n
            assert f.deps == ((flows[k - channels].id,) if k >= channels else ())
    longest = nx.dag_longest_path_length(s.dag())
    assert longest == max(0, (n - 2) // channels)


def test_shift_default_is_one_channel_and_all_has_no_deps():
    s = moe_alltoall(names(4), schedule="shift")
    assert s.meta["channels"] == 1
    assert s.flow("a2a-h1-h3").deps == ("a2a-h1-h2",)
    assert all(not f.deps for f in moe_alltoall(names(4)))


def test_shift_chains_skip_missing_pairs():
    hosts = names(8)
    s = moe_alltoall(hosts, tokens_per_host=3, hidden=1, dtype_bytes=1, top_k=1, skew=4.0,
                     schedule="shift", channels=2)
    for flows in sender_chains(s).values():
        for k, f in enumerate(flows):
            assert f.deps == ((flows[k - 2].id,) if k >= 2 else ())


@pytest.mark.parametrize("kwargs, param", [
    ({"hosts": ["h1"]}, "hosts"),
    ({"hosts": ["h1", "h1"]}, "hosts"),
    ({"tokens_per_host": 0}, "tokens_per_host"),
    ({"hidden": -1}, "hidden"),
    ({"dtype_bytes": 1.5}, "dtype_bytes"),
    ({"top_k": 0}, "top_k"),
    ({"top_k": 5}, "top_k"),
    ({"experts_per_host": 0}, "experts_per_host"),
    ({"skew": -0.5}, "skew"),
    ({"skew": float("inf")}, "skew"),
    ({"schedule": "ring"}, "schedule"),
    ({"schedule": "shift", "channels": 0}, "channels"),
    ({"channels": 2}, "channels"),
])
def test_bad_parameters_are_named(kwargs, param):
    kwargs = {"hosts": names(4), **kwargs}
    with pytest.raises(ValueError, match=f"^{param}:"):
        moe_alltoall(**kwargs)


def test_random_permutation_is_a_seeded_derangement():
    hosts = names(9)
    s = permutation(hosts, 1000, seed=4)
    assert sorted(f.src for f in s) == sorted(hosts)
    assert sorted(f.dst for f in s) == sorted(hosts)
    assert all(f.src != f.dst and f.bytes == 1000 for f in s)
    assert all(f.tag("collective") == "permutation" for f in s)
    assert permutation(hosts, 1000, seed=4) == s
    assert any(permutation(hosts, 1000, seed=k).flows != s.flows for k in range(5, 8))


def test_stride_permutation():
    s = permutation(names(8), 10, kind="stride")
    assert [(f.src, f.dst) for f in s][:2] == [("h1", "h5"), ("h2", "h6")]
    assert s.flow("perm-h8-h4").bytes == 10
    assert s.meta["stride"] == 4
    s = permutation(names(8), 10, kind="stride", stride=3)
    assert s.flow("perm-h7-h2").dst == "h2"


@pytest.mark.parametrize("kwargs, param", [
    ({"hosts": ["h1"]}, "hosts"),
    ({"bytes_per_flow": 0}, "bytes_per_flow"),
    ({"kind": "shuffle"}, "kind"),
    ({"kind": "stride", "stride": 8}, "stride"),
    ({"kind": "stride", "stride": 0}, "stride"),
    ({"stride": 2}, "stride"),
])
def test_permutation_bad_parameters_are_named(kwargs, param):
    kwargs = {"hosts": names(8), "bytes_per_flow": 10, **kwargs}
    with pytest.raises(ValueError, match=f"^{param}:"):
        permutation(**kwargs)
