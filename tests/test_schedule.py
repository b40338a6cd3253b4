"""The flow schedule: flows, validation, queries and the JSON-lines file format."""

import json
import re

import networkx as nx
import numpy as np
import pytest

from traffic.moe import moe_alltoall, permutation
from traffic.schedule import Flow, Schedule, ScheduleError


def chain():
    """h1 -> h2, then h2 -> h3 once it has arrived, then h3 -> h1 at 0.5 s or later."""
    return Schedule([
        Flow("a", "h1", "h2", 100, tags={"phase": "dispatch"}),
        Flow("b", "h2", "h3", 200, deps=["a"]),
        Flow("c", "h3", "h1", 300, deps=("b",), start_s=0.5, tags={"round": 2}),
    ], name="chain", meta={"seed": 7})


def test_flow_normalises_deps_and_tags():
    f = Flow("x", "h1", "h2", 10, deps=["a", "b"], tags={"collective": "alltoall", "round": 3})
    assert f.deps == ("a", "b")
    assert f.tags == (("collective", "alltoall"), ("round", 3))
    assert f.tag("round") == 3
    assert f.tag("layer") is None
    assert f.tag("layer", 0) == 0
    assert hash(f) == hash(Flow("x", "h1", "h2", 10, ("a", "b"), 0.0,
                                (("collective", "alltoall"), ("round", 3))))


def test_flow_rejects_a_string_as_deps():
    with pytest.raises(ScheduleError, match="'x': deps"):
        Flow("x", "h1", "h2", 10, deps="a")


def test_flow_dict_round_trip():
    f = Flow("x", "h1", "h2", 10, deps=("a",), start_s=1.5,
             tags={"collective": "alltoall", "shape": (2, 3)})
    d = f.to_dict()
    assert d["tags"] == {"collective": "alltoall", "shape": (2, 3)}
    assert Flow.from_dict(json.loads(json.dumps(d))) == f


@pytest.mark.parametrize("d, problem", [
    ([1, 2], "JSON object"),
    ({"id": "x", "src": "h1", "dst": "h2"}, "missing key.*bytes"),
    ({"id": "x", "src": "h1", "dst": "h2", "bytes": 1, "size": 3}, "unknown key.*size"),
    ({"id": "x", "src": "h1", "dst": "h2", "bytes": 1, "deps": "a"}, "deps"),
    ({"id": "x", "src": "h1", "dst": "h2", "bytes": 1, "tags": ["a"]}, "tags"),
])
def test_flow_from_dict_rejects_malformed(d, problem):
    with pytest.raises(ScheduleError, match=problem):
        Flow.from_dict(d)


def test_valid_schedule_validates_and_returns_itself():
    s = chain()
    assert s.validate() is s
    assert s.validate(hosts=["h1", "h2", "h3", "h4"]) is s


@pytest.mark.parametrize("flows, problem", [
    ([Flow("a", "h1", "h2", 1), Flow("a", "h2", "h1", 1)], "'a': id is used by more than one"),
    ([Flow("", "h1", "h2", 1)], "'': id must be a non-empty string"),
    ([Flow("a", "h1", "h2", 1, deps=("zz",))], "'a': dependency 'zz' does not exist"),
    ([Flow("a", "h1", "h2", 1, deps=("b",)), Flow("b", "h2", "h1", 1, deps=("a",))],
     "dependency cycle"),
    ([Flow("a", "h1", "h2", 1, deps=("a",))], "'a': dependency cycle a -> a"),
    ([Flow("a", "h1", "h1", 1)], "'a': src and dst are both 'h1'"),
    ([Flow("a", "h1", "", 1)], "'a': dst must be a non-empty host name"),
    ([Flow("a", "h1", "h2", 0)], "'a': bytes must be an int > 0"),
    ([Flow("a", "h1", "h2", -5)], "'a': bytes must be an int > 0"),
    ([Flow("a", "h1", "h2", 1.5)], "'a': bytes must be an int > 0"),
    ([Flow("a", "h1", "h2", True)], "'a': bytes must be an int > 0"),
    ([Flow("a", "h1", "h2", 1, start_s=-1.0)], "'a': start_s must be a finite number >= 0"),
    ([Flow("a", "h1", "h2", 1, start_s=float("nan"))], "'a': start_s"),
    ([Flow("a", "h1", "h2", 1, tags=(("x", 1), ("x", 2)))], "'a': tags"),
])
def test_validate_names_the_flow_and_the_problem(flows, problem):
    with pytest.raises(ScheduleError, match=problem):
        Schedule(flows).validate()


def test_validate_checks_hosts_when_given():
    with pytest.raises(ScheduleError, match="'b': dst 'h3' is not a known host"):
        chain().validate(hosts=["h1", "h2"])


def test_queries():
    s = chain()
    assert [f.id for f in s.sending("h2")] == ["b"]
    assert [f.id for f in s.receiving("h1")] == ["c"]
    assert s.sending("h9") == []
    assert s.hosts() == ["h1", "h2", "h3"]
    assert s.total_bytes() == 600
    assert len(s) == 3 and [f.id for f in s] == ["a", "b", "c"]
    assert s.flow("b").bytes == 200
    with pytest.raises(KeyError):
        s.flow("zz")
    assert set(s.dag().edges) == {("a", "b"), ("b", "c")}
    assert nx.is_directed_acyclic_graph(s.dag())


def test_bytes_matrix_sums_flows_per_pair():
    s = Schedule([Flow("a", "h1", "h2", 100), Flow("b", "h1", "h2", 50),
                  Flow("c", "h3", "h1", 7)])
    m = s.bytes_matrix(["h1", "h2", "h3", "h4"])
    expected = np.zeros((4, 4), dtype=np.int64)
    expected[0, 1], expected[2, 0] = 150, 7
    assert m.dtype == np.int64
    np.testing.assert_array_equal(m, expected)
    with pytest.raises(ScheduleError, match="'c'"):
        s.bytes_matrix(["h1", "h2"])


def test_jsonl_round_trip(tmp_path):
    s = chain()
    path = tmp_path / "s.jsonl"
    s.to_jsonl(path)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"schedule": "chain", "meta": {"seed": 7}}
    assert len(lines) == 4
    assert Schedule.from_jsonl(path) == s


def test_json_obj_round_trip():
    s = chain()
    obj = json.loads(json.dumps(s.to_json_obj()))
    assert Schedule.from_json_obj(obj) == s
    with pytest.raises(ScheduleError, match="flows"):
        Schedule.from_json_obj({"schedule": "x"})


def write_lines(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("bad, lineno, problem", [
    ('{"id": "b", "src": "h2", "dst": ', 3, "not valid JSON"),
    ('{"id": "b", "src": "h2", "dst": "h1"}', 3, "'b': missing key.*bytes"),
    ('[1, 2]', 3, "JSON object"),
])
def test_jsonl_malformed_line_reported_with_its_number(tmp_path, bad, lineno, problem):
    path = write_lines(tmp_path, [
        '{"schedule": "x", "meta": {}}',
        '{"id": "a", "src": "h1", "dst": "h2", "bytes": 10}',
        bad,
        '{"id": "c", "src": "h1", "dst": "h2", "bytes": 10}',
    ])
    with pytest.raises(ScheduleError, match=f"^{re.escape(str(path))}:{lineno}: .*{problem}"):
        Schedule.from_jsonl(path)


def test_jsonl_header_is_required(tmp_path):
    path = write_lines(tmp_path, ['{"id": "a", "src": "h1", "dst": "h2", "bytes": 10}'])
    with pytest.raises(ScheduleError,
                       match=f"^{re.escape(str(path))}:1: the first line must be a header"):
        Schedule.from_jsonl(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ScheduleError, match="empty file"):
        Schedule.from_jsonl(empty)


def test_jsonl_is_validated_after_reading(tmp_path):
    path = write_lines(tmp_path, [
        '{"schedule": "x", "meta": {}}',
        '{"id": "a", "src": "h1", "dst": "h2", "bytes": 10, "deps": ["b"]}',
        '{"id": "b", "src": "h2", "dst": "h1", "bytes": 10, "deps": ["a"]}',
    ])
    with pytest.raises(ScheduleError, match=f"^{re.escape(str(path))}: flow .*dependency cycle"):
        Schedule.from_jsonl(path)


def test_depths_group_the_rounds_that_run_together():
    hosts = [f"h{i}" for i in range(1, 9)]
    shift = moe_alltoall(hosts, tokens_per_host=8, schedule="shift", channels=3)
    depths = shift.depths()
    for f in shift.flows:
        assert depths[f.id] == (f.tag("round") - 1) // 3  # every pair carries bytes here
    assert set(permutation(hosts, 100).depths().values()) == {0}


def test_start_time_is_the_later_of_start_s_and_the_last_dependency_plus_delay():
    f = Flow("b", "h1", "h2", 1, deps=("a", "c"), start_s=0.5, delay_s=0.2)
    assert f.start_time([0.1, 0.2]) == 0.5
    assert f.start_time(iter([0.4, 1.0])) == pytest.approx(1.2)
    assert Flow("d", "h1", "h2", 1, delay_s=0.3).start_time([]) == 0.3


@pytest.mark.parametrize("compiled_from", [0, 1 << 30])
def test_columnar_depths_compiled_and_in_python_agree(monkeypatch, compiled_from):
    """A columnar schedule's depths, from the compiled loop (large schedules) and the
    Python one (small ones), on a shift all-to-all whose rounds are known."""
    import traffic.schedule as schedule_module
    monkeypatch.setattr(schedule_module, "COMPILED_DEPTHS", compiled_from)
    hosts = [f"h{i}" for i in range(1, 10)]
    shift = moe_alltoall(hosts, tokens_per_host=8, schedule="shift", channels=2)
    cols = shift.columns()
    want = shift.depths()
    assert cols.depths().tolist() == [want[f.id] for f in shift.flows]
    assert max(want.values()) == 3   # 8 rounds, 2 at a time
