"""Integration: the multi-job example (experiments/multijob.yaml) on the emulation, once under
``ecmp`` and once under ``collective`` (one intent per job): every flow of both jobs
completes and summary.json has both jobs' own figures (needs root)."""

import json
import os

import pytest

from fabric import runner, spec as specs

pytestmark = pytest.mark.emulation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "experiments", "multijob.yaml")


@pytest.mark.parametrize("policy", ["ecmp", "collective"])
def test_the_multijob_example_completes_both_jobs(tmp_path, clean_machine, policy):
    spec = dict(specs.load(EXAMPLE, policy=policy), repeats=1)
    out_dir, summary = runner.run_spec(spec, EXAMPLE, str(tmp_path), log=lambda *_: None)
    (run,) = summary["runs"]
    assert run["backend"] == "emulation" and not run["timed_out"]
    assert run["flows_completed"] == run["flows_total"] > 0, run
    with open(os.path.join(out_dir, "summary.json")) as f:
        written = json.load(f)
    assert set(written["jobs"]) == {"ring", "moe"}
    assert written["jobs"]["ring"]["busbw_gbps"] > 0
    for name, fig in run["jobs"].items():
        assert fig["flows_completed"] == fig["flows_total"] > 0, (name, fig)
        assert 0 < fig["efficiency"] <= 1.05, (name, fig)
        assert written["jobs"][name]["efficiency"] == fig["efficiency"]
    assert sum(fig["flows_total"] for fig in run["jobs"].values()) == run["flows_total"]
    if policy == "collective":
        assert set(run["intent"]["intents"]) == {"fattree-r1.ring", "fattree-r1.moe"}
        assert all(s["state"] == "installed" for s in run["intent"]["intents"].values())
