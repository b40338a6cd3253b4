"""Several jobs on one fabric: placement, the merged schedule, the spec's jobs, and per-job
figures end to end on the twin (no emulation)."""

import json
import os

import pytest
import yaml

from fabric import runner, spec as specs
from fabric.model import host_switch
from topologies import build
from traffic import jobs, metrics, workloads

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PERM = {"name": "permutation", "params": {"bytes_per_flow": 1_000_000, "kind": "stride"}}
RING = {"name": "allreduce_ring", "params": {"size_bytes": 1 << 20}}


def _job(name, placement="packed", hosts=4, workload=PERM):
    return {"name": name, "workload": workload, "placement": placement, "hosts": hosts}


def _checked(*jobs_, **top):
    return specs.check({"topology": {"name": "fattree", "params": {"k": 4}},
                        "jobs": list(jobs_), **top})


@pytest.fixture(scope="module")
def fat():
    return build("fattree", k=4)


# -- placement ---------------------------------------------------------------------------

def test_packed_takes_the_first_free_hosts_in_host_order(fat):
    spec = _checked(_job("a", hosts=6), _job("b", hosts=4))
    placed = jobs.place(fat, spec["jobs"], 1)
    assert placed == {"a": [f"h{i}" for i in range(1, 7)], "b": [f"h{i}" for i in range(7, 11)]}


def test_spread_deals_free_hosts_round_robin_over_edge_switches(fat):
    # k=4: 8 edge switches with 2 hosts each (h1 h2 on the first, ...).
    spec = _checked(_job("a", "spread", 8), _job("b", "spread", 4))
    placed = jobs.place(fat, spec["jobs"], 1)
    assert placed["a"] == [f"h{i}" for i in range(1, 17, 2)]   # one per edge switch
    assert placed["b"] == ["h2", "h4", "h6", "h8"]
    assert len({host_switch(fat, h)[0] for h in placed["a"]}) == 8
    # After a packed job, spread starts from the first switch with a free host.
    spec = _checked(_job("a", "packed", 3), _job("b", "spread", 5))
    assert jobs.place(fat, spec["jobs"], 1)["b"] == ["h4", "h5", "h7", "h9", "h11"]


def test_random_is_drawn_with_the_seed_from_free_hosts(fat):
    spec = _checked(_job("a", "packed", 4), _job("b", "random", 6), _job("c", "random", 6))
    one = jobs.place(fat, spec["jobs"], 7)
    assert one == jobs.place(fat, spec["jobs"], 7)
    assert any(jobs.place(fat, spec["jobs"], s) != one for s in range(8, 12))
    taken = one["a"] + one["b"] + one["c"]
    assert sorted(taken) == sorted(f"h{i}" for i in range(1, 17))   # disjoint, every host
    order = {f"h{i}": i for i in range(1, 17)}
    assert one["b"] == sorted(one["b"], key=order.get)   # ranks in host order


def test_explicit_hosts_keep_their_order_and_others_place_around_them(fat):
    spec = _checked({"name": "x", "workload": RING, "placement": {"hosts": ["h5", "h1", "h9"]}},
                    _job("y", "packed", 3))
    placed = jobs.place(fat, spec["jobs"], 1)
    assert placed == {"x": ["h5", "h1", "h9"], "y": ["h2", "h3", "h4"]}


@pytest.mark.parametrize("jobs_, message", [
    ([{"name": "x", "workload": RING, "placement": {"hosts": ["h1", "h99"]}}],
     r"job 'x' \(jobs\[0\]\): 'placement.hosts': 'h99' is not a host of fattree"),
    ([_job("a", hosts=4), {"name": "b", "workload": RING, "placement": {"hosts": ["h3"]}}],
     r"job 'b' \(jobs\[1\]\): 'placement.hosts': 'h3' is already taken by job 'a'"),
    ([_job("a", hosts=12), _job("b", "spread", 5)],
     r"job 'b' \(jobs\[1\]\): 'hosts': 5 asked for \(spread\), but only 4 of the 16 hosts"),
])
def test_placement_errors_name_the_job_key_and_value(fat, jobs_, message):
    with pytest.raises(jobs.JobError, match=message):
        jobs.place(fat, _checked(*jobs_)["jobs"], 1)


# -- the spec ----------------------------------------------------------------------------

@pytest.mark.parametrize("raw, message", [
    ({"workload": PERM, "jobs": [_job("a")]}, "give 'workload' or 'jobs', not both"),
    ({"jobs": []}, "'jobs' must be a non-empty list"),
    ({"jobs": ["a"]}, r"jobs\[0\]: a job must be a mapping"),
    ({"jobs": [dict(_job("a"), gpus=2)]}, r"jobs\[0\]: unknown keys \['gpus'\]"),
    ({"jobs": [_job("a b")]}, r"jobs\[0\]: 'name' must be 1-16 letters"),
    ({"jobs": [_job("x" * 17)]}, r"jobs\[0\]: 'name' must be 1-16 letters"),
    ({"jobs": [_job("a"), _job("a")]}, r"job 'a' \(jobs\[1\]\): 'name' 'a' is used by "
                                       r"jobs\[0\] too"),
    ({"jobs": [{"name": "a", "hosts": 2}]}, r"job 'a' \(jobs\[0\]\): missing key 'workload'"),
    ({"jobs": [_job("a", "scattered")]}, r"job 'a' \(jobs\[0\]\): 'placement' must be one of "
                                         r"\['packed', 'spread', 'random'\].*'scattered'"),
    ({"jobs": [_job("a", "spread", None)]}, r"job 'a' \(jobs\[0\]\): 'hosts' must be an "
                                            r"integer >= 1.*spread.*None"),
    ({"jobs": [_job("a", hosts=0)]}, r"job 'a' \(jobs\[0\]\): 'hosts' must be an integer"),
    ({"jobs": [_job("a", {"hosts": ["h1", "h2"]}, 2)]},
     r"job 'a' \(jobs\[0\]\): 'hosts' is not allowed beside 'placement.hosts'"),
    ({"jobs": [_job("a", {"hosts": []}, None)]},
     r"job 'a' \(jobs\[0\]\): 'placement.hosts' must be a non-empty list"),
    ({"jobs": [_job("a", {"hosts": ["h1", "h1"]}, None)]},
     r"job 'a' \(jobs\[0\]\): 'placement.hosts' lists 'h1' more than once"),
    ({"jobs": [_job("a", {"nodes": ["h1"]}, None)]},
     r"job 'a' \(jobs\[0\]\): 'placement' has unknown keys \['nodes'\]"),
])
def test_bad_jobs_in_a_spec_name_the_job_and_key(raw, message):
    with pytest.raises(specs.SpecError, match=r"^spec: " + message):
        specs.check({"topology": "fattree", **raw})


def test_checked_jobs_are_normalized_and_check_again_to_themselves():
    spec = _checked(_job("a"), {"name": "b", "workload": "allreduce_ring",
                                "placement": {"hosts": ["h9", "h10"]}}, {"name": "c",
                                "workload": RING, "hosts": 2})
    assert spec["workload"] is None and spec["name"] == "fattree-jobs"
    assert spec["jobs"][1] == {"name": "b", "placement": "explicit", "hosts": ["h9", "h10"],
                               "workload": {"name": "allreduce_ring", "params": {}},
                               "after": None}
    assert spec["jobs"][2]["placement"] == "packed"
    assert specs.check(spec) == spec
    single = specs.check({"topology": "fattree", "workload": PERM})
    assert single["jobs"] is None and specs.check(single) == single


# -- the merged schedule -----------------------------------------------------------------

def test_merged_schedule_prefixes_ids_and_deps_tags_jobs_and_records_them(fat):
    spec = _checked(_job("perm", "packed", 4), _job("ring", "spread", 4, RING))
    sched = jobs.build(fat, spec["jobs"], 5, name="two")
    placed = jobs.place(fat, spec["jobs"], 5)
    alone = {"perm": workloads.build_on("permutation", fat, placed["perm"], 5,
                                        **PERM["params"]),
             "ring": workloads.build_on("allreduce_ring", fat, placed["ring"], 6,
                                        **RING["params"])}
    assert sched.name == "two" and len(sched) == sum(len(s) for s in alone.values())
    for name, own in alone.items():
        mine = [f for f in sched.flows if f.tag("job") == name]
        assert [f.id for f in mine] == [f"{name}/{f.id}" for f in own.flows]
        assert [f.deps for f in mine] == [tuple(f"{name}/{d}" for d in f.deps)
                                          for f in own.flows]
        assert [(f.src, f.dst, f.bytes) for f in mine] == [(f.src, f.dst, f.bytes)
                                                           for f in own.flows]
    assert any(f.deps for f in sched.flows if f.tag("job") == "ring")
    meta = {j["name"]: j for j in sched.meta["jobs"]}
    assert meta["ring"]["hosts"] == placed["ring"] and meta["ring"]["seed"] == 6
    assert meta["ring"]["meta"]["collective"] == "allreduce"
    assert meta["ring"]["meta"]["size_bytes"] == 1 << 20
    assert sched.meta["collective"] == "mixed" and sched.meta["seed"] == 5
    parts = jobs.split(sched)
    assert list(parts) == ["perm", "ring"] and parts["ring"].meta == alone["ring"].meta
    assert [i for i, _ in jobs.intents(sched, "r1")] == ["r1.perm", "r1.ring"]
    assert jobs.split(alone["ring"]) == {}
    assert jobs.intents(alone["ring"], "r1") == [("r1", list(alone["ring"].flows))]


def test_a_jobs_workload_error_names_the_job(fat):
    # The spec check (fabric/config.py) refuses the name before jobs.build sees it, with
    # the same words; jobs.build names the job for callers that hand it jobs directly.
    bad = _job("a", workload={"name": "permutation", "params": {"bytez": 1}})
    message = (r"job 'a' \(jobs\[0\]\): 'workload': workload 'permutation': "
               r"unknown parameter 'bytez'")
    with pytest.raises(specs.SpecError, match=r"^spec: " + message):
        _checked(bad)
    with pytest.raises(jobs.JobError, match=message):
        jobs.build(fat, [bad], 1)


def test_a_workload_parameter_named_hosts_is_rejected_not_taken_as_the_hosts(fat):
    with pytest.raises(workloads.WorkloadError, match="unknown parameter 'hosts'"):
        workloads.build("permutation", fat, 1, bytes_per_flow=10, hosts=["h1", "h2"])


# -- one intent per job under collective (the emulation's announcement) ------------------

class FakeController:
    def __init__(self):
        self.calls = []
        self.known = []     # intents it holds, as a controller's memory

    def request(self, method, path, body=None, timeout=None):
        self.calls.append((method, path, body and body["id"], body and len(body["flows"])))
        if method == "POST":
            self.known.append(body["id"])
        elif method == "DELETE":
            intent_id = path.rsplit("/", 1)[1]
            assert intent_id in self.known, f"400 unknown intent {intent_id!r}"
            self.known.remove(intent_id)

    def get(self, path):
        if path == "/fabric/intents":
            return [{"intent": i, "state": "installed"} for i in self.known]
        return {"intent": path.rsplit("/", 1)[1], "state": "installed"}

    def wait_status(self, ready, timeout_s, what):
        assert ready({"pending": 0}), what


def _announced_two_jobs(fat):
    """Jobs a (4 hosts) and b (6) announced to a fake controller: it and the announcement."""
    spec = _checked(_job("a", hosts=4), _job("b", hosts=6))
    sched = jobs.build(fat, spec["jobs"], 1)
    ctl = FakeController()
    announce = runner.CollectiveAnnouncement(ctl, sched, "fattree-r1")
    announce({f.id: ["10.0.0.1", "10.0.0.2", 6, 40000 + i, 5001]
              for i, f in enumerate(sched.flows)})
    return ctl, announce


def test_collective_announcement_submits_one_intent_per_job_and_withdraws_each(fat):
    ctl, announce = _announced_two_jobs(fat)
    announce.withdraw()
    assert ctl.calls == [("POST", "/fabric/intents", "fattree-r1.a", 4),
                         ("POST", "/fabric/intents", "fattree-r1.b", 6),
                         ("DELETE", "/fabric/intents/fattree-r1.a", None, None),
                         ("DELETE", "/fabric/intents/fattree-r1.b", None, None)]
    assert set(announce.status["intents"]) == {"fattree-r1.a", "fattree-r1.b"}
    single = workloads.build("permutation", fat, 1, **PERM["params"])
    ctl = FakeController()
    announce = runner.CollectiveAnnouncement(ctl, single, "fattree-r1")
    announce({f.id: ["10.0.0.1", "10.0.0.2", 6, 40000, 5001] for f in single.flows})
    assert ctl.calls == [("POST", "/fabric/intents", "fattree-r1", 16)]
    assert announce.status["intent"] == "fattree-r1" and "announce_s" in announce.status


def test_intents_a_restarted_controller_forgot_are_reported_not_withdrawn(fat):
    """Chaos seed 5 under collective: the controller killed and restarted mid-run forgot
    the run's intents, and withdrawing them at the end (400 unknown intent) failed the run
    after every flow had completed."""
    ctl, announce = _announced_two_jobs(fat)
    ctl.known = ["fattree-r1.b"]    # restarted: a forgotten (b announced to it again)
    announce.withdraw()
    assert ctl.calls[2:] == [("DELETE", "/fabric/intents/fattree-r1.b", None, None)]
    assert announce.status["forgotten"] == ["fattree-r1.a"] and ctl.known == []


# -- end to end on the twin --------------------------------------------------------------

def _run(tmp_path, spec, label="run"):
    path = tmp_path / f"{label}.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert runner.main([str(path), "--results", str(tmp_path / label), "--quiet"]) == 0
    (out,) = os.listdir(tmp_path / label)
    with open(tmp_path / label / out / "summary.json") as f:
        return json.load(f), tmp_path / label / out


# A 2:1 leaf-spine with one spine: a leaf's uplink carries two NICs' worth. Job "a" (spread:
# h1 h2 on leaf 1, h5 h6 on leaf 2) sends a stride permutation across the spine, which its
# uplinks carry at full rate; job "b" on the other four hosts does the same over the same
# uplinks.
LEAFSPINE = {"name": "leafspine", "params": {"leaves": 2, "spines": 1, "hosts_per_leaf": 4,
                                             "oversubscription": 2.0}}


def _two_jobs(competing, policy="ecmp"):
    job_a = _job("a", "spread", 4)
    spec = {"name": "jobs", "backend": "twin", "policy": policy, "topology": LEAFSPINE,
            "jobs": [job_a, _job("b", "packed", 4)] if competing else [job_a]}
    return spec


def test_each_job_gets_its_own_figures_and_a_competitor_slows_it(tmp_path):
    alone, _ = _run(tmp_path, _two_jobs(False), "alone")
    both, out = _run(tmp_path, _two_jobs(True), "both")
    (run,) = both["runs"]
    assert set(run["jobs"]) == {"a", "b"} and run["workload"] == "permutation+permutation"
    g = build("leafspine", leaves=2, spines=1, hosts_per_leaf=4, oversubscription=2.0)
    for name, fig in run["jobs"].items():
        assert fig["flows_completed"] == fig["flows_total"] == 4
        own = jobs.split(jobs.build(g, specs.check(_two_jobs(True))["jobs"], 1))[name]
        assert fig["lower_bound_s"] == pytest.approx(metrics.lower_bound_s(g, own))
        assert fig["efficiency"] == pytest.approx(fig["lower_bound_s"]
                                                  / fig["completion_time_s"])
    assert run["jobs"]["a"]["hosts"] == ["h1", "h2", "h5", "h6"]
    assert run["jobs"]["b"]["hosts"] == ["h3", "h4", "h7", "h8"]
    assert run["flows_total"] == 8 and run["lower_bound_s"] > run["jobs"]["a"]["lower_bound_s"]
    # Alone, "a" runs at its bound; with "b" on its uplinks it takes about twice as long.
    a_alone = alone["jobs"]["a"]
    a_both = both["jobs"]["a"]
    assert a_alone["efficiency"] == pytest.approx(1.0, abs=0.05)
    assert a_both["completion_time_s"] >= a_alone["completion_time_s"]
    assert a_both["efficiency"] == pytest.approx(0.5, abs=0.05)
    assert both["jobs"]["b"]["flows_completed"] == 4
    with open(out / "flows.csv") as f:
        rows = f.read().splitlines()
    assert sum('""job"": ""b""' in r for r in rows) == 4


def test_the_twin_example_runs_both_jobs_and_collective_announces_one_intent_each(tmp_path):
    with open(os.path.join(ROOT, "experiments", "multijob_twin.yaml")) as f:
        spec = dict(yaml.safe_load(f), repeats=1, policy="collective")
    summary, _ = _run(tmp_path, spec)
    assert summary["backend"] == "twin" and set(summary["jobs"]) == {"ring", "moe"}
    for fig in summary["jobs"].values():
        assert fig["flows_completed"] == fig["flows_total"] > 0
        assert 0 < fig["efficiency"] <= 1.0 + 1e-9 and fig["busbw_gbps"] > 0
    (run,) = summary["runs"]
    assert run["controller"]["counters"]["intents_submitted"] == 2
    assert "job ring" in runner.table(summary) and "job moe" in runner.table(summary)


@pytest.mark.parametrize("jobs_, message", [
    ([{"name": "x", "workload": PERM, "placement": {"hosts": ["h1", "h99"]}}],
     "job 'x' (jobs[0]): 'placement.hosts': 'h99' is not a host"),
    ([_job("a", hosts=12), _job("b", "random", 5)], "job 'b' (jobs[1]): 'hosts': 5 asked"),
    ([_job("a", "everywhere")], "job 'a' (jobs[0]): 'placement' must be one of"),
])
def test_bad_jobs_exit_2_with_one_line_naming_the_job_and_key(tmp_path, capsys, jobs_,
                                                               message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"backend": "twin", "topology": "fattree", "jobs": jobs_}))
    assert runner.main([str(path), "--results", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"error: {path}: {message}" in err
    assert not (tmp_path / "r").exists()


# -- jobs one after another ---------------------------------------------------------------------

def test_a_job_after_another_waits_for_all_its_flows_and_may_take_its_hosts(fat):
    """``after``: the later job's first flows wait for the last flows of the earlier one
    (those no flow of it waits for), its other flows keep their own dependencies, and its
    placement may reuse the earlier job's hosts, not those of a job running alongside."""
    spec = _checked(_job("a", hosts=8, workload=RING), _job("side", hosts=4),
                    dict(_job("b", hosts=8), after="a"),
                    dict(_job("c", hosts=4), after="b"))
    placed = jobs.place(fat, spec["jobs"], 1)
    assert placed["a"] == placed["b"] == [f"h{i}" for i in range(1, 9)]
    assert placed["side"] == ["h9", "h10", "h11", "h12"]
    # c follows b, which followed a: the hosts of both are free for it.
    assert placed["c"] == ["h1", "h2", "h3", "h4"]
    s = jobs.build(fat, spec["jobs"], 1, placed)
    flows = {f.id: f for f in s.flows}
    a_ids = [f.id for f in s.flows if f.tag("job") == "a"]
    a_needed = {d for fid in a_ids for d in flows[fid].deps}
    a_last = {fid for fid in a_ids if fid not in a_needed}
    assert a_last and len(a_last) < len(a_ids)   # a ring all-reduce: its last step
    for f in s.flows:
        if f.tag("job") == "b":
            assert set(f.deps) == a_last          # a permutation: every flow is a first one
        if f.tag("job") == "side":
            assert not f.deps
    # Each job's own schedule (its figures) leaves the wait out.
    assert all(not f.deps for f in jobs.split(s)["b"].flows)
    times = s.ideal_times(lambda f: 1.0)
    assert min(times[f.id][0] for f in s.flows if f.tag("job") == "b") == \
        max(times[fid][1] for fid in a_ids)


@pytest.mark.parametrize("after, message", [
    ("z", r"job 'b' \(jobs\[1\]\): 'after' 'z' is not the name of an earlier job"),
    ("b", r"job 'b' \(jobs\[1\]\): 'after' 'b' is not the name of an earlier job"),
])
def test_after_must_name_an_earlier_job(after, message):
    with pytest.raises(specs.SpecError, match=message):
        _checked(_job("a"), dict(_job("b"), after=after))
