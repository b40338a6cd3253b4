"""Metrics: bounds checked by hand, NCCL-style bandwidths, FCTs and the flows CSV."""

import csv
import json

import pytest

from fabric.model import add_host, add_link, add_switch, hosts, new_fabric
from traffic.metrics import (
    busbw_factor, cut_bound_s, cuts, lower_bound_s, median_min_max, per_nic_bound_s, summarize,
    write_flows_csv)
from traffic.schedule import Flow, Schedule, ScheduleError

MB = 10 ** 6


def one_switch(n, host_gbps):
    g = new_fabric("one")
    add_switch(g, "s1", "edge", 0)
    for i in range(1, n + 1):
        add_link(g, add_host(g, f"h{i}"), "s1", host_gbps)
    return g


def leaf_spine(leaves, hosts_per_leaf, host_gbps, uplink_gbps):
    """Leaves named as given, one untagged spine, one uplink per leaf."""
    g = new_fabric("ls")
    add_switch(g, "sp1", "spine", 1)
    for leaf in leaves:
        add_switch(g, leaf, "leaf", 0, leaf=leaf)
        add_link(g, leaf, "sp1", uplink_gbps)
        for _ in range(hosts_per_leaf):
            h = add_host(g, f"h{len(hosts(g)) + 1}", leaf=leaf)
            add_link(g, h, leaf, host_gbps)
    return g


def uniform_alltoall(hosts, pair_bytes, **meta):
    return Schedule([Flow(f"a2a-{s}-{d}", s, d, pair_bytes, tags={"collective": "alltoall"})
                     for s in hosts for d in hosts if s != d], meta=meta).validate()


def finished_at(schedule, end_s, start_s=0.0):
    """Records of a run where every flow ran from ``start_s`` to ``end_s``."""
    return [{"id": f.id, "start_s": start_s, "end_s": end_s, "bytes_received": f.bytes}
            for f in schedule]


def test_per_nic_bound_of_uniform_alltoall():
    # 4 hosts, 1 MB per pair, 8 Gbit/s: 3 MB through each NIC = 3 ms = (n-1)/n * S / B.
    g = one_switch(4, 8.0)
    s = uniform_alltoall(hosts(g), MB)
    assert per_nic_bound_s(g, s) == pytest.approx(3e-3)
    assert per_nic_bound_s(g, s) == pytest.approx(3 / 4 * (4 * MB) * 8 / 8e9)
    assert cuts(g, s) == [] and cut_bound_s(g, s) == 0.0
    assert lower_bound_s(g, s) == pytest.approx(3e-3)


def test_per_nic_bound_counts_receive_side_and_each_nic_rate():
    g = new_fabric("mixed")
    add_switch(g, "s1", "edge", 0)
    for h, gbps in (("h1", 8.0), ("h2", 8.0), ("h3", 8.0), ("h4", 4.0)):
        add_link(g, add_host(g, h), "s1", gbps)
    incast = Schedule([Flow(f"f{i}", f"h{i}", "h1", MB) for i in (2, 3, 4)])
    assert per_nic_bound_s(g, incast) == pytest.approx(3e-3)       # h1 receives 3 MB
    slow = Schedule([Flow("f", "h4", "h1", MB)])
    assert per_nic_bound_s(g, slow) == pytest.approx(2e-3)         # h4 sends 1 MB at 4 Gbit/s
    with pytest.raises(ScheduleError, match="'x'"):
        per_nic_bound_s(g, Schedule([Flow("x", "h1", "h9", 1)]))


def test_oversubscribed_leaves_cut_bound_exceeds_nic_bound():
    # Two leaves of 2 hosts at 10 Gbit/s, one 10 Gbit/s uplink each (2:1). Uniform all-to-all,
    # 1 MB per pair. NIC: 3 MB * 8 / 10 Gbit/s = 2.4 ms. Leaf l1 sends 2 hosts * 2 remote
    # hosts * 1 MB = 4 MB up one 10 Gbit/s link: 3.2 ms.
    g = leaf_spine(["l1", "l2"], 2, 10.0, 10.0)
    s = uniform_alltoall(hosts(g), MB)
    assert per_nic_bound_s(g, s) == pytest.approx(2.4e-3)
    assert cuts(g, s) == [
        {"name": "leaf=l1", "capacity_gbps": 10.0, "bytes_out": 4 * MB, "bytes_in": 4 * MB,
         "bound_s": pytest.approx(3.2e-3)},
        {"name": "leaf=l2", "capacity_gbps": 10.0, "bytes_out": 4 * MB, "bytes_in": 4 * MB,
         "bound_s": pytest.approx(3.2e-3)},
    ]
    assert cut_bound_s(g, s) == pytest.approx(3.2e-3)
    assert lower_bound_s(g, s) == pytest.approx(3.2e-3)


def test_cut_bound_uses_the_busier_direction():
    g = leaf_spine(["l1", "l2"], 2, 10.0, 10.0)
    s = Schedule([Flow("a", "h1", "h3", MB), Flow("b", "h2", "h4", MB),
                  Flow("c", "h3", "h1", MB // 2)])
    (l1, _) = cuts(g, s)
    assert (l1["bytes_out"], l1["bytes_in"]) == (2 * MB, MB // 2)
    assert l1["bound_s"] == pytest.approx(1.6e-3)


def test_bisection_halves_sort_naturally_and_skip_single_groups():
    # Leaves l1, l2, l3, l10: halves are {l1, l2} and {l3, l10}, not {l1, l10} and {l2, l3}.
    g = leaf_spine(["l1", "l2", "l3", "l10"], 1, 10.0, 10.0)
    s = uniform_alltoall(hosts(g), MB)
    by_name = {c["name"]: c for c in cuts(g, s)}
    assert list(by_name) == ["leaf=l1", "leaf=l2", "leaf=l3", "leaf=l10",
                             "leaf[l1..l2]", "leaf[l3..l10]"]
    half = by_name["leaf[l1..l2]"]
    assert (half["capacity_gbps"], half["bytes_out"], half["bytes_in"]) == (20.0, 4 * MB, 4 * MB)
    g3 = leaf_spine(["l1", "l2", "l3"], 1, 10.0, 10.0)
    names = [c["name"] for c in cuts(g3, uniform_alltoall(hosts(g3), MB))]
    assert names == ["leaf=l1", "leaf=l2", "leaf=l3", "leaf[l2..l3]"]


def test_fat_tree_cuts_do_not_exceed_the_nic_bound():
    fattree = pytest.importorskip("topologies.fattree")
    g = fattree.fat_tree(4)
    s = uniform_alltoall(hosts(g), MB)
    nic = per_nic_bound_s(g, s)
    assert nic == pytest.approx(15 * MB * 8 / 400e9)
    by_name = {c["name"]: c for c in cuts(g, s)}
    # A pod: 2 aggregation switches with 2 core links each; 4 hosts send to 12 remote hosts.
    assert by_name["pod=1"]["capacity_gbps"] == 4 * 400.0
    assert by_name["pod=1"]["bytes_out"] == 4 * 12 * MB
    # Half the pods: 8 core links; 8 hosts send to the 8 others.
    assert by_name["pod[1..2]"]["capacity_gbps"] == 8 * 400.0
    assert by_name["pod[1..2]"]["bytes_out"] == 8 * 8 * MB
    assert by_name["leaf=e1"]["capacity_gbps"] == 2 * 400.0
    assert cut_bound_s(g, s) < nic
    assert lower_bound_s(g, s) == nic


@pytest.mark.parametrize("collective, n, factor", [
    ("allreduce", 8, 1.75), ("allgather", 8, 0.875), ("reducescatter", 4, 0.75),
    ("alltoall", 4, 0.75), ("all_to_all", 2, 0.5), ("broadcast", 8, 1.0), ("reduce", 3, 1.0),
])
def test_busbw_factor(collective, n, factor):
    assert busbw_factor(collective, n) == pytest.approx(factor)


def test_busbw_factor_rejects_unknown():
    with pytest.raises(ValueError, match="^collective:"):
        busbw_factor("permutation", 4)
    with pytest.raises(ValueError, match="^n:"):
        busbw_factor("alltoall", 0)


def test_perfect_run_reaches_nic_rate_and_efficiency_one():
    # Emulated 100x slower than nominal: 0.3 emulated s = 3 nominal ms, the per-NIC bound.
    g = one_switch(4, 8.0)
    s = uniform_alltoall(hosts(g), MB)
    r = summarize(g, s, finished_at(s, 0.3), time_scale=0.01)
    assert (r["flows_total"], r["flows_completed"]) == (12, 12)
    assert r["bytes_total"] == r["bytes_received"] == 12 * MB
    assert r["completion_time_emulated_s"] == pytest.approx(0.3)
    assert r["completion_time_s"] == pytest.approx(3e-3)
    assert r["lower_bound_s"] == pytest.approx(3e-3)
    assert r["lower_bound_emulated_s"] == pytest.approx(0.3)
    assert r["efficiency"] == pytest.approx(1.0)
    assert r["collective"] == "alltoall" and r["ranks"] == 4
    assert r["size_bytes"] == pytest.approx(4 * MB)
    assert r["algbw_gbps"] == pytest.approx(4 * MB * 8 / 3e-3 / 1e9)
    assert r["busbw_gbps"] == pytest.approx(8.0)
    assert r["fct_p50_s"] == r["fct_max_s"] == pytest.approx(3e-3)
    assert r["fct_p99_emulated_s"] == pytest.approx(0.3)
    json.dumps(r)


def test_slower_run_and_oversubscribed_efficiency():
    g = leaf_spine(["l1", "l2"], 2, 10.0, 10.0)
    s = uniform_alltoall(hosts(g), MB)
    r = summarize(g, s, finished_at(s, end_s=1.0 + 6.4e-3, start_s=1.0), time_scale=1.0)
    assert r["completion_time_s"] == pytest.approx(6.4e-3)
    assert r["lower_bound_s"] == pytest.approx(3.2e-3)
    assert r["cut_bound_s"] > r["per_nic_bound_s"]
    assert r["efficiency"] == pytest.approx(0.5)
    assert r["busbw_gbps"] == pytest.approx(10.0 * 2.4 / 6.4)


def test_incomplete_flows():
    g = one_switch(4, 8.0)
    s = uniform_alltoall(hosts(g), MB)
    records = finished_at(s, 0.3)[:10]
    records.append({"id": s.flows[10].id, "start_s": 0.0, "end_s": None,
                    "bytes_received": MB // 4})
    r = summarize(g, s, records, time_scale=0.01)
    assert (r["flows_total"], r["flows_completed"]) == (12, 10)
    assert r["bytes_received"] == 10 * MB + MB // 4
    assert r["completion_time_s"] is None and r["completion_time_emulated_s"] is None
    assert r["efficiency"] is None and r["algbw_gbps"] is None and r["busbw_gbps"] is None
    assert r["fct_max_s"] == pytest.approx(3e-3)
    assert r["lower_bound_s"] == pytest.approx(3e-3)


def test_fct_percentiles():
    g = one_switch(2, 8.0)
    s = Schedule([Flow(f"f{i}", "h1", "h2", 1) for i in range(1, 101)])
    records = [{"id": f"f{i}", "start_s": 0.0, "end_s": float(i), "bytes_received": 1}
               for i in range(1, 101)]
    r = summarize(g, s, records, time_scale=0.5)
    assert (r["fct_p50_emulated_s"], r["fct_max_emulated_s"]) == (50.5, 100.0)
    assert r["fct_p95_emulated_s"] == pytest.approx(95.05)
    assert r["fct_p99_emulated_s"] == pytest.approx(99.01)
    assert r["fct_p50_s"] == pytest.approx(25.25)
    assert r["completion_time_s"] == 50.0


def test_collective_comes_from_meta_or_tags():
    g = one_switch(4, 8.0)
    perm = Schedule([Flow(f"p{i}", f"h{i}", f"h{i % 4 + 1}", MB,
                          tags={"collective": "permutation"}) for i in range(1, 5)])
    r = summarize(g, perm, finished_at(perm, 1e-3), time_scale=1.0)
    assert r["collective"] == "permutation"
    assert r["algbw_gbps"] is None and r["busbw_gbps"] is None
    assert r["efficiency"] == pytest.approx(1.0)
    # A ring all-reduce of S = 4 MB sends 2 (n-1)/n S = 6 MB per rank; meta can also give S.
    ring = Schedule([Flow(f"r{i}", f"h{i}", f"h{i % 4 + 1}", 6 * MB) for i in range(1, 5)],
                    meta={"collective": "allreduce"})
    r = summarize(g, ring, finished_at(ring, 6e-3), time_scale=1.0)
    assert r["size_bytes"] == pytest.approx(4 * MB)
    assert r["busbw_gbps"] == pytest.approx(8.0)
    ring.meta["size_bytes"] = 2 * MB
    assert summarize(g, ring, finished_at(ring, 6e-3), 1.0)["size_bytes"] == 2 * MB


@pytest.mark.parametrize("records, problem", [
    ([{"id": "zz", "start_s": 0.0, "end_s": 1.0, "bytes_received": 1}], "'zz': no such flow"),
    ([{"id": "a", "start_s": 0.0, "end_s": None, "bytes_received": 0}] * 2, "recorded twice"),
    ([{"id": "a", "start_s": 0.0, "end_s": 1.0, "bytes_received": 5}], "5 of 10 bytes"),
    ([{"id": "a", "start_s": None, "end_s": 1.0, "bytes_received": 10}], "start_s=None"),
    ([{"id": "a", "src": "h2", "start_s": 0.0, "end_s": None, "bytes_received": 0}], "src"),
])
def test_records_contradicting_the_schedule_are_errors(records, problem):
    g = one_switch(2, 8.0)
    s = Schedule([Flow("a", "h1", "h2", 10)])
    with pytest.raises(ValueError, match=problem):
        summarize(g, s, records, time_scale=1.0)


@pytest.mark.parametrize("time_scale", [0, -1.0, float("nan"), None])
def test_bad_time_scale(time_scale):
    g = one_switch(2, 8.0)
    with pytest.raises(ValueError, match="^time_scale:"):
        summarize(g, Schedule([Flow("a", "h1", "h2", 10)]), [], time_scale)


def test_write_flows_csv(tmp_path):
    s = Schedule([Flow("a", "h1", "h2", 10, tags={"round": 1}), Flow("b", "h2", "h1", 20)])
    records = [{"id": "a", "start_s": 0.5, "end_s": 2.5, "bytes_received": 10}]
    path = tmp_path / "flows.csv"
    write_flows_csv(path, s, records, time_scale=0.1)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["id", "src", "dst", "bytes", "bytes_received", "start_s",
                                 "end_s", "fct_s", "completed", "fct_nominal_s", "tags"]
    a, b = rows
    assert (a["id"], a["bytes"], a["bytes_received"], a["completed"]) == ("a", "10", "10", "True")
    assert float(a["fct_s"]) == 2.0 and float(a["fct_nominal_s"]) == pytest.approx(0.2)
    assert json.loads(a["tags"]) == {"round": 1}
    assert (b["bytes_received"], b["start_s"], b["end_s"], b["fct_s"], b["completed"]) == \
        ("0", "", "", "", "False")
    assert json.loads(b["tags"]) == {}


def test_median_min_max():
    assert median_min_max([3.0, 1.0, 2.0, 10.0]) == {"median": 2.5, "min": 1.0, "max": 10.0,
                                                     "n": 4}
    with pytest.raises(ValueError, match="at least one"):
        median_min_max([])
    with pytest.raises(ValueError, match="None"):
        median_min_max([1.0, None])
