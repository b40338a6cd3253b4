"""The config layer (fabric/config.py): models are frozen and refuse unknown keys, and every
refusal is one line naming the key path, what it must be and the value given."""

import pydantic
import pytest

from fabric import config
from fabric import spec as specs
from traffic.schedule import ScheduleError
from traffic.trace import read_trace

BASE = {"topology": {"name": "fattree", "params": {"k": 4}}, "workload": "moe_alltoall"}


@pytest.mark.parametrize("change, line", [
    ({"emulation": {"mtu": 100}},
     "spec: 'emulation.mtu' must be an integer from 1280 to 9000, got 100"),
    ({"emulation": {"host_link_mbps": 2000}},
     "spec: 'emulation.host_link_mbps' must be a number in (0, 1000], got 2000"),
    ({"twin": {"max_time_s": "1"}}, "spec: 'twin.max_time_s' must be a number > 0 or null, "
                                    "got '1'"),
    ({"repeats": True}, "spec: 'repeats' must be an integer >= 1, got True"),
    ({"backend": "ns3"}, "spec: 'backend' must be one of ['emulation', 'twin'], got 'ns3'"),
    ({"emulation": {"mtu": 100, "jumbo": True}},
     "spec: unknown emulation keys ['jumbo']; known: ['congestion_control', 'emulate_delay', "
     "'flow_counter_refresh_ms', 'host_link_mbps', 'mtu', 'queue_packets', 'source_ports', "
     "'static_arp', 'tcp_window_bytes']"),
    ({"topology": {"name": "fattree", "params": {"kk": 4}}},
     "spec: 'topology': topology 'fattree' has no parameter 'kk'; it accepts k, link_gbps, "
     "medium, length_km, transceiver"),
    ({"topology": {"params": {"k": 4}}}, "spec: missing key 'name' in 'topology'"),
    ({"workload": None, "jobs": [{"name": "a", "workload": "moe_alltoall", "hosts": "x"}]},
     "spec: job 'a' (jobs[0]): 'hosts' must be an integer >= 1 or a list of host names, "
     "got 'x'"),
])
def test_a_refusal_is_one_line_with_key_path_and_value(change, line):
    raw = {k: v for k, v in dict(BASE, **change).items() if v is not None}
    with pytest.raises(specs.SpecError) as e:
        specs.check(raw)
    assert str(e.value) == line


def test_checked_specs_are_frozen_models_dumped_to_plain_dicts():
    model = config.Spec.model_validate(BASE)
    with pytest.raises(pydantic.ValidationError):
        model.seed = 2
    with pytest.raises(pydantic.ValidationError):
        model.emulation.mtu = 1500
    checked = specs.check(BASE)
    assert type(checked) is dict and checked["emulation"]["mtu"] == 9000
    assert checked["name"] == "fattree-moe_alltoall" and specs.check(checked) == checked


@pytest.mark.parametrize("model, body, line", [
    (config.PolicyPut, {"name": "ecmp"}, "unknown keys ['name']; known: ['policy']"),
    (config.PolicyPut, {"policy": 3}, "'policy' must be a string, got 3"),
    (config.IntentPost, {"flows": []}, "missing key 'id'"),
    (config.IntentPost, {"id": 1.5, "flows": []}, "'id' must be a string or an integer, "
                                                  "got 1.5"),
    (config.IntentPost, {"id": "x", "flows": "nonsense"}, "'flows' must be a list, "
                                                          "got 'nonsense'"),
])
def test_rest_bodies_name_the_key_and_value(model, body, line):
    with pytest.raises(pydantic.ValidationError) as e:
        model.model_validate(body)
    assert config.explain(e.value, model, body) == line


def test_rest_bodies_accept_what_the_routes_document():
    assert config.PolicyPut.model_validate({"policy": "congestion"}).policy == "congestion"
    intent = config.IntentPost.model_validate({"id": 7, "flows": [{"src": "10.0.0.1"}]})
    assert intent.id == 7 and intent.flows == [{"src": "10.0.0.1"}]


def test_trace_errors_name_the_key_unquoted():
    bad = {"id": "b", "src": "h1", "dst": "h2", "bytes": 1, "measured": {"end_s": "x"}}
    with pytest.raises(pydantic.ValidationError) as e:
        config.TraceFlow.model_validate(bad)
    assert config.explain(e.value, config.TraceFlow, bad, quote=False) == \
        "measured.end_s must be a number or null, got 'x'"


def test_an_unknown_schema_kind_is_refused():
    with pytest.raises(ValueError, match="no schema 'yaml'"):
        config.json_schema("yaml")


def test_a_trace_header_is_checked_by_the_model(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"schedule": "x", "trace": {"version": 1, "time_scale": 0}}\n'
                    '{"id": "a", "src": "h1", "dst": "h2", "bytes": 10}\n')
    with pytest.raises(ScheduleError, match=r":1: trace.time_scale must be a number > 0, "
                                            r"got 0$"):
        read_trace(path)
