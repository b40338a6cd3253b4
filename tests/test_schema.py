"""The JSON Schemas (fabric/config.py, `aifabric schema`): the committed docs/schema files are
what the command prints, every shipped experiment validates against the spec schema, and the
schema and the models the runner validates with refuse the same mistakes."""

import glob
import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml

from fabric import config, sweep
from fabric import spec as specs
from traffic.schedule import FLOW_KEYS, Flow, Schedule
from traffic.trace import MEASURED_KEYS, write_trace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _schema(kind):
    with open(os.path.join(ROOT, "docs", "schema", f"{kind}.json"), encoding="utf-8") as f:
        return json.load(f)


def _validator(kind):
    schema = _schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("kind", config.SCHEMAS)
def test_committed_schema_is_what_aifabric_schema_prints(kind):
    # The checkout's own command (the installed `aifabric` may be another checkout's).
    r = subprocess.run([sys.executable, "-m", "fabric.cli", "schema", kind], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "docs", "schema", f"{kind}.json"), encoding="utf-8") as f:
        assert r.stdout == f.read(), f"docs/schema/{kind}.json is stale: run make schema"


def test_an_unknown_schema_is_exit_2():
    r = subprocess.run([sys.executable, "-m", "fabric.schema", "yaml"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid choice: 'yaml'" in r.stderr


def _cells(path):
    """The specs in an experiment file: itself, or the cells of a sweep (sweep_*.yaml, run
    by fabric/sweep.py; any other file's lists are values, as `jobs`)."""
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not os.path.basename(path).startswith("sweep"):
        return [raw]
    axes = sweep.find_axes(raw, path)
    assert axes, f"{path}: a sweep without an axis"
    return [cell for _, cell in sweep.expand(dict(raw, name=raw.get("name", "x")), axes)]


EXPERIMENTS = sorted(glob.glob(os.path.join(ROOT, "experiments", "*.yaml")))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=os.path.basename)
def test_every_experiment_validates_against_the_spec_schema(path):
    validator = _validator("spec")
    for cell in _cells(path):
        errors = [e.message for e in validator.iter_errors(cell)]
        assert not errors, (path, errors)
        specs.check(cell, where=path)


def test_experiments_are_found():
    assert len(EXPERIMENTS) >= 10 and any("sweep" in p for p in EXPERIMENTS)


BASE = {"topology": {"name": "fattree", "params": {"k": 4}}, "workload": "moe_alltoall"}


@pytest.mark.parametrize("change", [
    {"seed": -1}, {"repeats": 0}, {"repeats": True}, {"seed": "1"}, {"policy": "magic"},
    {"backend": "ns3"}, {"bogus": 1}, {"name": "a b"}, {"timeout_s": 0},
    {"emulation": {"mtu": 100}}, {"emulation": {"host_link_mbps": 2000}},
    {"emulation": {"congestion_control": "vegas"}}, {"emulation": {"static_arp": "yes"}},
    {"twin": {"timebase": "wall"}}, {"twin": {"resolution": 0.5}}, {"twin": {"speed": 2}},
    {"controller": {"stats_interval_s": 0}}, {"controller": {"options": {"bogus": 1}}},
    {"controller": {"health": {"reuse": "x"}}},
    {"topology": "torus"}, {"topology": {"name": "fattree", "params": {"kk": 4}}},
    {"topology": {"name": "fattree", "size": 4}}, {"topology": [1]},
    {"workload": {"name": "moe_alltoall", "params": {"hosts": ["h1"]}}},
    {"workload": "teleport"},
    {"workload": None, "jobs": [{"name": "a", "workload": "moe_alltoall", "gpus": 2}]},
    {"workload": None, "jobs": [{"name": "a b", "workload": "moe_alltoall", "hosts": 2}]},
    {"workload": None, "jobs": [{"name": "a", "workload": "moe_alltoall",
                                 "placement": "scattered", "hosts": 2}]},
    {"workload": None, "jobs": [{"name": "a", "workload": "moe_alltoall",
                                 "placement": {"hosts": []}}]},
    {"workload": None, "jobs": []},
])
def test_schema_and_models_refuse_the_same_mistakes(change):
    raw = {k: v for k, v in dict(BASE, **change).items() if v is not None}
    assert list(_validator("spec").iter_errors(raw)), f"the schema accepts {change}"
    with pytest.raises(specs.SpecError) as e:
        specs.check(raw)
    assert "\n" not in str(e.value) and str(e.value).startswith("spec: ")


def test_schema_holds_the_defaults_the_checker_fills_in():
    props = _schema("spec")["properties"]
    defs = _schema("spec")["$defs"]
    for key in ("seed", "repeats", "baseline", "policy", "backend", "timeout_s"):
        assert props[key]["default"] == specs.DEFAULTS[key], key
    for section, model in config.SECTIONS.items():
        for key, value in specs.DEFAULTS[section].items():
            assert defs[model.__name__]["properties"][key]["default"] == value, (section, key)


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_a_written_trace_validates_line_by_line(tmp_path):
    s = Schedule([Flow("f1", "h1", "h2", 1000),
                  Flow("f2", "h2", "h1", 10, deps=["f1"], delay_s=0.5, tags={"phase": "x"})],
                 name="t")
    records = [{"id": "f1", "start_s": 0.0, "sent_s": 0.01, "end_s": 0.02,
                "bytes_received": 1000}]
    path = tmp_path / "t.jsonl"
    write_trace(path, s, records, time_scale=0.001, topology={"name": "fattree"})
    validator = _validator("trace")
    lines = _lines(path)
    for line in lines:
        assert not list(validator.iter_errors(line)), line
    config.TraceHeader.model_validate(lines[0])
    for line in lines[1:]:
        config.TraceFlow.model_validate(line)
    bad = dict(lines[1], measured={"fct": 1})
    assert list(validator.iter_errors(bad))
    assert list(validator.iter_errors(dict(lines[1], bytes=0)))


def test_trace_models_have_the_readers_keys():
    assert set(config.TraceFlow.model_fields) == set(FLOW_KEYS) | {"measured"}
    assert tuple(config.Measured.model_fields) == MEASURED_KEYS
