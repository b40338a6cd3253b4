"""Inference serving: arrivals, batching, the serving DAG, KV transfers, edge placement, metrics."""

import collections
import os

import numpy as np
import pytest

from fabric.model import hosts as fabric_hosts
from topologies import build
from traffic.inference import (
    MODELS, arrival_times, dynamic_batches, inference, inference_summary, kv_cache_bytes,
    path_latency_s, place_requests, request_metrics)


def names(n):
    return [f"h{i}" for i in range(1, n + 1)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def by_phase(s, phase):
    return [f for f in s if f.tag("phase") == phase]


def test_kv_cache_bytes_formula():
    # layers x kv_heads x head_dim x tokens x dtype_bytes x 2
    assert kv_cache_bytes(1000, 32, 8, 128, 2) == 32 * 8 * 128 * 1000 * 2 * 2
    assert kv_cache_bytes(1, *MODELS["llama-3-70b"]) == 80 * 8 * 128 * 2 * 2


def test_poisson_and_bursty_arrivals():
    rng = np.random.default_rng(0)
    poisson = arrival_times(4000, rng, "poisson", rate_rps=100.0)
    gaps = np.diff(poisson)
    assert len(poisson) == 4000 and np.all(gaps > 0)
    assert gaps.mean() == pytest.approx(0.01, rel=0.1)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.1)
    bursty = arrival_times(4000, np.random.default_rng(0), "bursty", rate_rps=0.0,
                           burst_rate_rps=1000.0, burst_on_s=0.02, burst_off_s=0.1)
    gaps = np.diff(bursty)
    assert len(bursty) == 4000 and np.all(gaps >= 0)
    assert gaps.std() / gaps.mean() > 1.5        # burstier than Poisson
    with pytest.raises(ValueError, match="burst_rate_rps"):
        arrival_times(3, rng, "bursty")


@pytest.mark.parametrize("max_batch, max_wait_s", [(1, 0.0), (4, 0.005), (8, 0.05)])
def test_dynamic_batches_respect_max_batch_and_max_wait(max_batch, max_wait_s):
    arrivals = np.sort(np.random.default_rng(3).uniform(0, 1, 300))
    batches = dynamic_batches(arrivals, max_batch, max_wait_s)
    assert [i for members, _ in batches for i in members] == list(range(300))
    for members, close in batches:
        opened = arrivals[members[0]]
        assert 1 <= len(members) <= max_batch
        assert all(arrivals[i] <= opened + max_wait_s for i in members)
        assert arrivals[members[-1]] <= close <= opened + max_wait_s
        if len(members) < max_batch:         # closed by the timer: nobody else was waiting
            assert close == pytest.approx(opened + max_wait_s)
    for (a, _), (b, _) in zip(batches, batches[1:]):
        if len(a) < max_batch:
            assert arrivals[b[0]] > arrivals[a[0]] + max_wait_s


def test_gateway_serving_dag():
    hosts = names(10)
    s = inference(hosts, n_requests=60, rate_rps=200, max_batch=4, max_wait_s=0.01,
                  servers=2, seed=1)
    gateway, servers = "h1", {"h2", "h3"}
    requests, batches = by_phase(s, "request"), by_phase(s, "batch")
    assert len(requests) == 60 and all(f.dst == gateway for f in requests)
    assert all(f.src not in servers | {gateway} for f in requests)
    assert sum(len(f.tag("requests")) for f in batches) == 60
    for b in batches:
        members = b.tag("requests")
        assert 1 <= len(members) <= 4 and b.src == gateway and b.dst in servers
        assert set(b.deps) == {f"inf-r{r}-request" for r in members}
        arrivals = [s.flow(f"inf-r{r}-request").start_s for r in members]
        assert max(arrivals) <= b.start_s <= min(arrivals) + 0.01 + 1e-12
    for r in range(60):
        first = s.flow(f"inf-r{r}-first_token")
        assert first.src == gateway and first.dst == s.flow(f"inf-r{r}-request").src
    t = s.ideal_times()
    assert all(t[f.id][0] == pytest.approx(f.start_s) for f in s)
    busy = collections.defaultdict(list)     # a server runs one batch at a time
    for b in batches:
        (first,) = [f for f in by_phase(s, "first_tokens") if f.deps == (b.id,)]
        begin = first.start_s - first.delay_s
        assert begin >= t[b.id][0] - 1e-12
        done = max([first.start_s] + [f.start_s for f in by_phase(s, "completion")
                                      if f.tag("request") in b.tag("requests")])
        busy[b.dst].append((begin, done))
    for spans in busy.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-12 for a, b in zip(spans, spans[1:]))
    assert s == inference(hosts, n_requests=60, rate_rps=200, max_batch=4, max_wait_s=0.01,
                          servers=2, seed=1)


def test_service_times_are_delays_after_the_batch_arrives():
    s = inference(names(5), n_requests=10, servers=1, prefill_s_per_token=1e-4,
                  decode_step_s=0.01, length_sigma=0, prompt_tokens=100, output_tokens=5,
                  max_batch=2, max_wait_s=0.0, rate_rps=1.0, seed=0)
    first = by_phase(s, "first_tokens")[0]
    assert s.flow(first.deps[0]).tag("requests") == (0,)     # max_wait_s=0: alone
    assert first.delay_s == pytest.approx(100 * 1e-4)
    completion = s.flow("inf-r0-completion")
    assert completion.delay_s == pytest.approx(first.delay_s + 4 * 0.01)
    assert s.flow("inf-r0-response").deps == ("inf-r0-completion",)


def test_disaggregated_prefill_sends_the_kv_cache_to_a_decode_server():
    s = inference(names(8), n_requests=20, servers=3, disaggregated=True, prefill_servers=1,
                  model="llama-3-8b", kv_dtype_bytes=2, seed=2)
    kvs = by_phase(s, "kv_cache")
    assert kvs and all(f.src == "h2" and f.dst in ("h3", "h4") for f in kvs)
    for f in kvs:
        tokens = sum(s.flow(f"inf-r{r}-request").tag("prompt_tokens")
                     for r in f.tag("requests"))
        assert f.bytes == kv_cache_bytes(tokens, 32, 8, 128, 2)
    for f in by_phase(s, "completion"):
        assert f.src in ("h3", "h4") and s.flow(f.deps[0]).tag("phase") == "kv_cache"
    with pytest.raises(ValueError, match="prefill_servers"):
        inference(names(8), servers=2, disaggregated=True, prefill_servers=2)


def test_edge_placement_nearest_and_best():
    g = build("edge", sites=3, hosts_per_site=3, dc_hosts=2, site_km=[10, 50, 200])
    hosts = fabric_hosts(g)
    site = {h: g.nodes[h]["site"] for h in hosts}
    assert path_latency_s(g, "h3", "h1") == pytest.approx(2 * 0.0 + 10 * 5e-6)
    assert path_latency_s(g, "h3", "h1", {("g1", "d1"): 0.5}) > path_latency_s(g, "h3", "h1")
    near = inference(hosts, n_requests=80, rate_rps=50, placement="nearest", g=g, seed=0)
    for f in by_phase(near, "request"):       # the server at the client's own site
        assert site[f.dst] == site[f.src]
    best = inference(hosts, n_requests=80, rate_rps=2000, placement="best", g=g, seed=0,
                     dc_speedup=4.0)
    to_dc = sum(site[f.dst] == 0 for f in by_phase(best, "request"))
    assert to_dc > 20                          # a loaded edge server sends work to the DC
    for f in by_phase(best, "response"):
        assert f.dst == best.flow(f"inf-r{f.tag('request')}-request").src
    with pytest.raises(ValueError, match="needs the fabric graph"):
        inference(hosts, placement="best")


def test_place_requests_breaks_ties_by_latency():
    g = build("edge", sites=2, hosts_per_site=2, dc_hosts=1, site_km=[10, 10])
    chosen = place_requests(g, [("h3", 0.0, 10, 10), ("h5", 0.0, 10, 10)], ["h1", "h2", "h4"],
                            "nearest")
    assert chosen == ["h2", "h4"]


def records_from(s, transfer_s, drop=()):
    t = s.ideal_times(transfer_s)
    return [{"id": f.id, "start_s": t[f.id][0],
             "end_s": None if f.id in drop else t[f.id][1],
             "bytes_received": 0 if f.id in drop else f.bytes} for f in s]


def test_request_metrics_from_flow_records():
    s = inference(names(6), n_requests=30, rate_rps=100, servers=2, seed=3)
    records = records_from(s, lambda f: 0.001)
    rows = request_metrics(s, records, time_scale=1.0)
    assert [r["request"] for r in rows] == list(range(30))
    t = s.ideal_times(lambda f: 0.001)
    for r in rows:
        rid = r["request"]
        arrival = s.flow(f"inf-r{rid}-request").start_s
        assert r["ttft_s"] == pytest.approx(t[f"inf-r{rid}-first_token"][1] - arrival)
        last = f"inf-r{rid}-response" if r["output_tokens"] > 1 else f"inf-r{rid}-first_token"
        assert r["e2e_s"] == pytest.approx(t[last][1] - arrival)
        assert r["e2e_s"] >= r["ttft_s"] > 0
    scaled = request_metrics(s, records, time_scale=10.0)
    assert scaled[0]["ttft_s"] == pytest.approx(10 * rows[0]["ttft_s"])


def test_inference_summary_percentiles_goodput_and_slo():
    s = inference(names(6), n_requests=40, rate_rps=100, servers=2, seed=4)
    records = records_from(s, lambda f: 0.001, drop={"inf-r0-response", "inf-r1-response"})
    rows = request_metrics(s, records)
    done = [r for r in rows if r["e2e_s"] is not None]
    slo = float(np.median([r["e2e_s"] for r in done]))
    out = inference_summary(s, records, slo_e2e_s=slo)
    assert out["requests"] == 40 and out["completed"] == len(done)
    assert out["e2e_p50_s"] == pytest.approx(slo)
    assert out["ttft_p50_s"] <= out["ttft_p95_s"] <= out["ttft_p99_s"]
    met = sum(r["e2e_s"] <= slo for r in done)
    assert out["slo_attainment"] == pytest.approx(met / 40)
    assert out["goodput_rps"] == pytest.approx(met / out["span_s"])
    assert out["throughput_rps"] == pytest.approx(len(done) / out["span_s"])
    assert inference_summary(s, records)["slo_attainment"] == pytest.approx(len(done) / 40)


@pytest.mark.parametrize("site_km, served_at_dc", [
    ([20, 50, 80], {20: True, 80: False}),   # the fiber decides
    ([0, 0, 0], {20: True, 80: True}),       # no fiber: the faster DC serves everyone
])
def test_the_fiber_decides_where_edge_requests_are_served(site_km, served_at_dc):
    """experiments/inference_edge_fiber.yaml: with the DC only 5% faster than a site, a near
    site's requests cross the WAN to the DC and a far site's stay home; the same fabric
    without fiber sends every request to the DC."""
    import yaml
    from traffic import workloads
    with open(os.path.join(ROOT, "experiments", "inference_edge_fiber.yaml")) as f:
        spec = yaml.safe_load(f)
    params = dict(spec["topology"]["params"], site_km=site_km)
    g = build("edge", **params)
    s = workloads.build("inference", g, spec["seed"], **spec["workload"]["params"])
    km = {h: ([0] + spec["topology"]["params"]["site_km"])[g.nodes[h]["site"]]
          for h in fabric_hosts(g)}
    to_dc = collections.defaultdict(set)
    for f in by_phase(s, "request"):
        to_dc[km[f.src]].add(g.nodes[f.dst]["site"] == 0)
    for client_km, at_dc in served_at_dc.items():
        assert to_dc[client_km] == {at_dc}, dict(to_dc)
