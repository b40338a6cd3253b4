"""Sweeps (fabric/sweep.py): grid expansion and cell ids, one clear error per bad cell, what
each backend asks Ray for, skipping cells done earlier, the table and plot, and a real sweep
of four twin cells on a local Ray, then re-run skipping all. No emulation."""

import csv
import io
import json
import os

import pytest
import yaml

from fabric import bundled, runner, spec as specs, sweep

BASE = {
    "name": "t",
    "topology": {"name": "fattree", "params": {"k": 4}},
    "policy": "ecmp",
    "workload": {"name": "permutation", "params": {"bytes_per_flow": 1000000}},
}


def write(tmp_path, spec, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def grid(tmp_path):
    spec = dict(BASE, policy=["ecmp", "congestion"], seed=[1, 2, 3],
                topology={"name": "fattree", "params": {"k": [4, 8]}})
    return sweep.load(write(tmp_path, spec))


def test_grid_is_the_cartesian_product_in_file_order(tmp_path):
    s = grid(tmp_path)
    assert s.name == "t"
    assert s.axes == {"topology.params.k": "k", "policy": "policy", "seed": "seed"}
    assert len(s.cells) == 12
    assert [c.label for c in s.cells[:4]] == [
        "k=4,policy=ecmp,seed=1", "k=4,policy=ecmp,seed=2", "k=4,policy=ecmp,seed=3",
        "k=4,policy=congestion,seed=1"]
    assert s.cells[-1].label == "k=8,policy=congestion,seed=3"
    last = s.cells[-1].spec
    assert (last["topology"]["params"]["k"], last["policy"], last["seed"]) == (8, "congestion", 3)
    assert last["emulation"]["mtu"] == 9000  # defaults filled in by the spec checker


def test_cell_ids_are_stable_and_distinct(tmp_path):
    s = grid(tmp_path)
    ids = [c.id for c in s.cells]
    assert len(set(ids)) == 12 and all(len(i) == 10 for i in ids)
    assert ids == [c.id for c in grid(tmp_path).cells]
    # Another order of axes in the file: other grid order, the same cells.
    reordered = dict(seed=[3, 2, 1], policy=["congestion", "ecmp"], name="t",
                     workload=BASE["workload"],
                     topology={"params": {"k": [8, 4]}, "name": "fattree"})
    assert {c.id for c in sweep.load(write(tmp_path, reordered, "r.yaml")).cells} == set(ids)
    # A cell's id is that of the same experiment written as a plain spec.
    plain = specs.check(dict(BASE, policy="congestion", seed=3,
                             topology={"name": "fattree", "params": {"k": 8}}))
    assert s.cells[-1].id == sweep.cell_id(plain)


def test_a_list_value_is_written_as_a_list_of_lists(tmp_path):
    topo = {"name": "edge", "params": {"sites": 2, "site_km": [[20, 50], [80, 90]]}}
    s = sweep.load(write(tmp_path, dict(BASE, topology=topo)))
    assert [c.spec["topology"]["params"]["site_km"] for c in s.cells] == [[20, 50], [80, 90]]
    assert s.cells[0].label == "site_km=[20, 50]"
    one = sweep.load(write(tmp_path, dict(BASE, topology=dict(
        topo, params={"sites": 2, "site_km": [[20, 50]]})), "one.yaml"))
    assert len(one.cells) == 1 and one.cells[0].spec["topology"]["params"]["site_km"] == [20, 50]


def test_an_axis_of_mappings_is_taken_as_it_is(tmp_path):
    topos = [{"name": "fattree", "params": {"k": 4}},
             {"name": "leafspine", "params": {"leaves": 2, "spines": 1}}]
    s = sweep.load(write(tmp_path, dict(BASE, topology=topos, seed=[1, 2])))
    assert [c.spec["topology"]["name"] for c in s.cells] == ["fattree"] * 2 + ["leafspine"] * 2
    assert s.cells[2].label == 'topology={"name": "leafspine", "params": {"leaves": 2, ' \
                               '"spines": 1}},seed=1'
    # nothing inside an element is expanded: spines [1, 2] is one value, which leafspine rejects
    inner = [{"name": "leafspine", "params": {"leaves": 2, "spines": [1, 2]}}]
    with pytest.raises(specs.SpecError, match=r"spines must be an integer >= 1, got \[1, 2\]"):
        sweep.load(write(tmp_path, dict(BASE, topology=inner), "b.yaml"))


@pytest.mark.parametrize("change, pattern", [
    ({"policy": ["ecmp", "bogus"]}, r"\[policy=bogus\]: 'policy' must be one of .* got 'bogus'"),
    ({"emulation": {"mtu": [9000, 100]}}, r"\[mtu=100\]: 'emulation.mtu' must be .* got 100"),
    ({"topology": {"name": "fattree", "params": {"k": [4, 5]}}},
     r"\[k=5\]: topology: fat-tree k must be an even integer >= 2, got 5"),
    ({"seed": []}, r"'seed' is an empty list"),
    ({"name": ["a", "b"]}, r"'name' names the sweep and cannot be a list"),
    ({"policy": ["ecmp", "ecmp"]}, r"cells \[policy=ecmp\] and \[policy=ecmp\] are the same"),
])
def test_a_bad_cell_is_one_error_naming_file_key_and_value(tmp_path, change, pattern):
    path = write(tmp_path, dict(BASE, **change))
    with pytest.raises(specs.SpecError, match=pattern) as e:
        sweep.load(path)
    assert str(e.value).startswith(path) and "\n" not in str(e.value)


def test_a_bad_sweep_exits_2_and_starts_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "connect", lambda *a: pytest.fail("Ray started"))
    path = write(tmp_path, dict(BASE, policy=["ecmp", "bogus"]))
    assert sweep.main([path, "--results", str(tmp_path / "res")]) == 2
    assert "'policy' must be one of" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()


def test_resources_per_backend():
    emulation, twin = specs.check(BASE), specs.check(dict(BASE, backend="twin"))
    assert emulation["backend"] == "emulation"
    assert sweep.task_options(emulation) == {"num_cpus": 1, "resources": {"emulator": 1}}
    assert sweep.task_options(twin) == {"num_cpus": 1}


def test_emulation_cells_without_root_are_an_error_before_ray(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(sweep, "connect", lambda *a: pytest.fail("Ray started"))
    s = sweep.load(write(tmp_path, BASE))
    with pytest.raises(sweep.SweepError, match="need root"):
        sweep.run(s, str(tmp_path / "res"), stream=io.StringIO())


def fake_run_spec(spec, where, results_dir, log=print):
    """What runner.run_spec leaves behind, without running anything."""
    out = os.path.join(results_dir, f"20260101-000000-{spec['name']}")
    os.makedirs(out)
    summary = {"spec": spec, "efficiency": 0.5 + spec["seed"] / 10, "completion_time_s": 2.0,
               "lower_bound_s": 1.0, "busbw_gbps": 10.0, "flows_completed": 3,
               "flows_total": 4, "runs": [{"cpu_saturated": spec["seed"] == 2}]}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f)
    with open(os.path.join(out, "flows.csv"), "w") as f:
        f.write("id\n1\n")
    log(f"ran {where}")
    return out, summary


@pytest.mark.parametrize("in_place", [True, False])
def test_a_finished_cell_is_recorded_and_then_skipped(tmp_path, monkeypatch, in_place):
    monkeypatch.setattr(runner, "run_spec", fake_run_spec)
    s = sweep.load(write(tmp_path, dict(BASE, seed=[1, 2])))
    sweep_dir = str(tmp_path / "sweep-t")
    cell = s.cells[0]
    out = sweep.cell_dir(sweep_dir, cell)
    assert sweep.done(sweep_dir, cell) is None
    result = sweep.run_cell(cell.spec, cell.where, out, in_place)
    assert ("archive" in result) != in_place
    summary = sweep.record(sweep_dir, cell, result)
    assert summary["cell"]["id"] == cell.id and summary["efficiency"] == 0.6
    assert sweep.done(sweep_dir, cell) == json.loads(json.dumps(summary))
    for name in ("summary.json", "flows.csv"):
        assert os.path.isfile(os.path.join(out, "run", name))
    assert "ran " in open(os.path.join(out, "log.txt")).read()
    assert sweep.done(sweep_dir, s.cells[1]) is None


def test_incomplete_or_foreign_summaries_are_not_done(tmp_path):
    s = sweep.load(write(tmp_path, BASE))
    cell, sweep_dir = s.cells[0], str(tmp_path)
    os.makedirs(sweep.cell_dir(sweep_dir, cell))
    path = os.path.join(sweep.cell_dir(sweep_dir, cell), "summary.json")
    for text in ('{"cell": {"id": "', '{"efficiency": 1.0}', '{"cell": {"id": "other"}}'):
        with open(path, "w") as f:
            f.write(text)
        assert sweep.done(sweep_dir, cell) is None
    with open(path, "w") as f:
        json.dump({"cell": {"id": cell.id}}, f)
    assert sweep.done(sweep_dir, cell) is not None


def test_run_errors_are_returned_as_one_line(tmp_path, monkeypatch):
    def failing(*_a, **_k):
        raise runner.RunError("the controller did not start")
    monkeypatch.setattr(runner, "run_spec", failing)
    cell = sweep.load(write(tmp_path, BASE)).cells[0]
    assert sweep.run_cell(cell.spec, cell.where, str(tmp_path / "c"), True) == {
        "error": "the controller did not start"}


def test_a_rerun_with_every_cell_done_starts_no_ray(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_spec", fake_run_spec)
    monkeypatch.setattr(sweep, "connect", lambda *a: pytest.fail("Ray started"))
    s = sweep.load(write(tmp_path, dict(BASE, seed=[1, 2])))
    sweep_dir = str(tmp_path / "sweep-t")
    for cell in s.cells:
        out = sweep.cell_dir(sweep_dir, cell)
        sweep.record(sweep_dir, cell, sweep.run_cell(cell.spec, cell.where, out, True))
    stream = io.StringIO()
    assert sweep.run(s, sweep_dir, stream=stream) == {}
    assert stream.getvalue() == "2 cells done earlier, skipped\n"


def test_table_and_plot(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "run_spec", fake_run_spec)
    s = sweep.load(write(tmp_path, dict(BASE, policy=["ecmp", "congestion"], seed=[1, 2])))
    sweep_dir = str(tmp_path / "sweep-t")
    for cell in s.cells[:3]:
        out = sweep.cell_dir(sweep_dir, cell)
        sweep.record(sweep_dir, cell, sweep.run_cell(cell.spec, cell.where, out, True))
    table = sweep.rows(s, sweep_dir, {s.cells[3].id: "agent on h1 exited with 1"})
    text = sweep.write_table(table, sweep_dir)
    lines = text.splitlines()
    assert lines[0] == ("| cell | policy | seed | efficiency | completion_time_s | lower_bound_s "
                        "| busbw_gbps | flows | backend | cpu_saturated | status |")
    assert lines[2] == (f"| {s.cells[0].id} | ecmp | 1 | 0.6 | 2 | 1 | 10 | 3/4 | emulation "
                        f"| no | done |")
    assert lines[3].endswith("| 3/4 | emulation | yes | done |")
    assert lines[5].endswith("| - | - | - | - | - | emulation | - | failed: agent on h1 exited "
                             "with 1 |")
    assert open(os.path.join(sweep_dir, "sweep.md")).read() == text + "\n"
    with open(os.path.join(sweep_dir, "sweep.csv")) as f:
        got = list(csv.DictReader(f))
    assert [r["policy"] for r in got] == ["ecmp", "ecmp", "congestion", "congestion"]
    assert got[0]["efficiency"] == "0.6" and got[3]["efficiency"] == ""
    png = sweep.plot(s, table, sweep_dir)
    assert png == os.path.join(sweep_dir, "efficiency.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_cpu_saturated_column_only_where_some_cell_says():
    table = [{"cell": "a", "efficiency": 0.5, "cpu_saturated": None, "status": "done"}]
    assert "cpu_saturated" not in sweep.markdown(table)


def test_dry_run_lists_cells_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "connect", lambda *a: pytest.fail("Ray started"))
    path = write(tmp_path, dict(BASE, seed=[1, 2]))
    assert sweep.main([path, "--results", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith('seed=1 backend=emulation {"num_cpus": 1, "resources": '
                           '{"emulator": 1}} to run')
    assert out[-1].startswith("2 cells, 0 done earlier")
    assert not (tmp_path / "res").exists()


def test_four_twin_cells_on_a_local_ray_then_rerun_skips_all(tmp_path, capsys):
    spec = dict(BASE, backend="twin", policy=["ecmp", "congestion"], seed=[1, 2])
    path = write(tmp_path, spec)
    results = str(tmp_path / "res")
    assert sweep.main([path, "--results", results, "--num-cpus", "2"]) == 0
    out = capsys.readouterr().out
    sweep_dir = os.path.join(results, "sweep-t")
    with open(os.path.join(sweep_dir, "sweep.csv")) as f:
        got = list(csv.DictReader(f))
    assert len(got) == 4 and {r["status"] for r in got} == {"done"}
    assert {r["backend"] for r in got} == {"twin"}
    assert all(0 < float(r["efficiency"]) <= 1.0 + 1e-9 for r in got)
    assert os.path.isfile(os.path.join(sweep_dir, "efficiency.png"))
    for cell in sweep.load(path).cells:
        for name in ("summary.json", "flows.csv"):
            assert os.path.isfile(os.path.join(sweep_dir, cell.id, "run", name))
    assert "4 cells, 0 failed" in out
    assert sweep.main([path, "--results", results, "--num-cpus", "2"]) == 0
    assert "4 cells done earlier, skipped" in capsys.readouterr().out


def test_a_cluster_gets_the_checkout_or_else_the_installed_packages(monkeypatch):
    import ray
    seen = []
    monkeypatch.setattr(ray, "init", lambda **kw: seen.append(kw["runtime_env"]))
    assert sweep.connect("ray://nowhere:10001", None) is False
    monkeypatch.setattr(bundled, "is_checkout", lambda: False)
    assert sweep.connect("ray://nowhere:10001", None) is False
    assert seen[0]["working_dir"] == sweep.ROOT and ".venv/" in seen[0]["excludes"]
    assert [os.path.basename(m) for m in seen[1]["py_modules"]] == list(bundled.PACKAGES)
    assert all(os.path.isfile(os.path.join(m, "__init__.py")) for m in seen[1]["py_modules"])
