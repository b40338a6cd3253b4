"""Integration: the AI workloads run to completion on a k=4 fat-tree under our controller,
and a recorded run replays as the same schedule (needs root)."""

import pytest

from fabric import runner, spec as specs
from traffic import workloads
from traffic.trace import read_trace

pytestmark = pytest.mark.emulation


def _run(tmp_path, workload, params, topology=None, **emulation):
    spec = specs.check({
        "name": workload.replace("_", "-"), "seed": 2,
        "topology": topology or {"name": "fattree", "params": {"k": 4}},
        "workload": {"name": workload, "params": params},
        "emulation": {"host_link_mbps": 20, **emulation}, "timeout_s": 120,
    })
    out_dir, summary = runner.run_spec(spec, "test", str(tmp_path), log=lambda *_: None)
    (run,) = summary["runs"]
    assert run["flows_completed"] == run["flows_total"] > 0, run
    assert not run["timed_out"]
    return out_dir, run


def test_ring_allreduce_completes_with_busbw(tmp_path, clean_machine):
    _, run = _run(tmp_path, "allreduce_ring", {"size_bytes": 1 << 20})
    assert run["collective"] in ("allreduce", "all_reduce")
    assert run["flows_total"] == 16 * 2 * 15  # 2(n-1) steps, one flow per rank each
    assert 0 < run["efficiency"] <= 1.05 and run["busbw_gbps"] > 0


def test_moe_training_iteration_completes(tmp_path, clean_machine):
    _, run = _run(tmp_path, "training_iteration",
                  {"pp": 2, "microbatches": 2, "activation_bytes": 65536, "forward_s": 1e-5,
                   "backward_s": 2e-5, "grad_bytes": 262144, "buckets": 2, "moe_layers": 1,
                   "tokens": 64, "hidden": 1024})
    phases = {p["tag"] for p in run["phases"]}
    assert {"dispatch", "combine", "activation"} <= phases, phases


def test_inference_scenario_completes_with_latencies(tmp_path, clean_machine):
    _, run = _run(tmp_path, "inference",
                  {"n_requests": 12, "rate_rps": 400, "prompt_tokens": 128,
                   "output_tokens": 8, "max_batch": 4, "max_wait_s": 0.002,
                   "prefill_s_per_token": 2e-6, "decode_step_s": 5e-4},
                  topology={"name": "fattree", "params": {"k": 4, "link_gbps": 10}},
                  host_link_mbps=100)
    inf = run["inference"]
    assert inf["completed"] == inf["requests"] == 12
    assert 0 < inf["ttft_p50_s"] <= inf["ttft_p99_s"] <= inf["e2e_p99_s"]


def test_record_then_replay_gives_the_same_schedule(tmp_path, clean_machine):
    out_dir, run = _run(tmp_path / "a", "moe_alltoall",
                        {"tokens_per_host": 32, "hidden": 1024, "skew": 1.0})
    recorded = f"{out_dir}/runs/{run['label']}/trace.jsonl"
    original, measured, _ = read_trace(recorded)
    assert len(measured) == run["flows_total"]
    from topologies import build
    replayed = workloads.build("trace_replay", build("fattree", k=4), 0, path=recorded)
    assert [(f.id, f.src, f.dst, f.bytes, f.deps) for f in replayed.flows] == \
           [(f.id, f.src, f.dst, f.bytes, f.deps) for f in original.flows]
    _, again = _run(tmp_path / "b", "trace_replay", {"path": recorded})
    assert again["flows_total"] == run["flows_total"]
