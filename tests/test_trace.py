"""Traces (record, read, replay), Chakra conversion, and the workload registry entries."""

import json
import re
import sys

import numpy as np
import pytest

from fabric.model import hosts as fabric_hosts
from topologies import build
from traffic import workloads
from traffic.chakra import ChakraError, ChakraUnavailable, chakra_trace, convert, read_et
from traffic.collectives import ring_allreduce
from traffic.schedule import Flow, Schedule, ScheduleError
from traffic.trace import host_mapping, read_trace, replay, write_trace


def names(n):
    return [f"h{i}" for i in range(1, n + 1)]


def measured(s, lost=()):
    """Records as agents report them: every flow 1 ms after its ideal start."""
    t = s.ideal_times(lambda f: 0.001)
    return [{"id": f.id, "start_s": t[f.id][0], "sent_s": t[f.id][1],
             "end_s": None if f.id in lost else t[f.id][1],
             "bytes_received": 0 if f.id in lost else f.bytes} for f in s]


def test_trace_round_trip_with_measurements(tmp_path):
    s = ring_allreduce(names(4), 4000)
    s = Schedule(s.flows[:-1] + (Flow("gap", "h1", "h3", 5, deps=(s.flows[-2].id,),
                                      delay_s=0.5),), name=s.name, meta=s.meta)
    records = measured(s, lost={"gap"})
    path = tmp_path / "run.trace.jsonl"
    write_trace(path, s, records, time_scale=0.001, topology={"name": "fattree"})
    trace = read_trace(path)
    assert trace.schedule == s
    assert trace.records == records
    assert trace.info == {"version": 1, "time_scale": 0.001, "topology": {"name": "fattree"}}
    header = json.loads(path.read_text().splitlines()[0])
    assert header["schedule"] == s.name and header["meta"] == s.meta


def test_a_schedule_file_is_a_trace_without_measurements(tmp_path):
    s = ring_allreduce(names(3), 300)
    path = tmp_path / "s.jsonl"
    s.to_jsonl(path)
    trace = read_trace(path)
    assert trace.schedule == s and trace.records == [] and trace.info == {}
    write_trace(path, s)                      # and a trace without records is a schedule
    assert Schedule.from_jsonl(path) == s


def test_write_trace_rejects_records_that_contradict_the_schedule(tmp_path):
    s = ring_allreduce(names(3), 300)
    path = tmp_path / "t.jsonl"
    with pytest.raises(ValueError, match="no such flow"):
        write_trace(path, s, [{"id": "zz", "start_s": 0, "end_s": 1}])
    assert not path.exists()


def write_lines(tmp_path, lines):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = '{"id": "a", "src": "h1", "dst": "h2", "bytes": 10}'


@pytest.mark.parametrize("bad, problem", [
    ('{"id": "b", "src": "h2"', "not valid JSON"),
    ('{"id": "b", "src": "h2", "dst": "h1"}', "'b': missing key.*bytes"),
    ('{"id": "b", "src": "h2", "dst": "h1", "bytes": 1, "measured": [1]}', "measured must be"),
    ('{"id": "b", "src": "h2", "dst": "h1", "bytes": 1, "measured": {"fct": 1}}',
     "unknown measured key.*fct"),
    ('{"id": "b", "src": "h2", "dst": "h1", "bytes": 1, "measured": {"end_s": "x"}}',
     "end_s must be a number"),
    ('7', "JSON object"),
])
def test_malformed_trace_lines_are_reported_with_their_number(tmp_path, bad, problem):
    path = write_lines(tmp_path, ['{"schedule": "x", "meta": {}}', GOOD, "", bad, GOOD])
    with pytest.raises(ScheduleError, match=f"^{re.escape(str(path))}:4: .*{problem}"):
        read_trace(path)


def test_invalid_traces_are_rejected_as_a_whole(tmp_path):
    path = write_lines(tmp_path, ['{"schedule": "x"}',
                                  '{"id": "a", "src": "h1", "dst": "h2", "bytes": 1, '
                                  '"deps": ["b"]}'])
    with pytest.raises(ScheduleError, match=f"^{re.escape(str(path))}: .*'b' does not exist"):
        read_trace(path)
    path = write_lines(tmp_path, ['{"schedule": "x"}',
                                  '{"id": "a", "src": "h1", "dst": "h2", "bytes": 10, '
                                  '"measured": {"start_s": 0, "end_s": 1, '
                                  '"bytes_received": 3}}'])
    with pytest.raises(ScheduleError, match=f"^{re.escape(str(path))}: .*3 of 10 bytes"):
        read_trace(path)
    path = write_lines(tmp_path, [GOOD])
    with pytest.raises(ScheduleError, match=":1: the first line must be a header"):
        read_trace(path)


def test_replay_on_another_topology_by_order_and_by_mapping(tmp_path):
    s = ring_allreduce(names(4), 4000)
    path = tmp_path / "t.jsonl"
    write_trace(path, s, measured(s), time_scale=1.0)
    fabric = build("fattree", k=4)
    target = fabric_hosts(fabric)
    by_order = workloads.build("trace_replay", fabric, 0, path=str(path))
    assert by_order.hosts() == target[:4]
    np.testing.assert_array_equal(by_order.bytes_matrix(target[:4]), s.bytes_matrix(names(4)))
    assert [f.deps for f in by_order] == [f.deps for f in s]
    assert by_order.meta["replay"]["mapping"] == dict(zip(names(4), target[:4]))

    mapping = {"h1": "h16", "h2": "h5", "h3": "h9", "h4": "h1"}
    mapped = workloads.build("trace_replay", fabric, 0, path=str(path), mapping=mapping)
    np.testing.assert_array_equal(mapped.bytes_matrix(["h16", "h5", "h9", "h1"]),
                                  s.bytes_matrix(names(4)))
    assert mapped.meta["hosts"] == ["h16", "h5", "h9", "h1"]
    again = replay(mapped, names(4))           # meta["hosts"] keeps the rank order
    assert [(f.src, f.dst) for f in again] == [(f.src, f.dst) for f in s]


def test_replay_with_measured_timing_is_open_loop(tmp_path):
    s = ring_allreduce(names(3), 300)
    records = measured(s)
    out = replay(s, names(5), timing="measured", records=records, time_scale=2.0)
    starts = {r["id"]: r["start_s"] for r in records}
    assert all(not f.deps and f.start_s == pytest.approx(2 * starts[f.id]) for f in out)
    with pytest.raises(ValueError, match="no measured start_s"):
        replay(s, names(3), timing="measured", records=records[1:])


@pytest.mark.parametrize("mapping, problem", [
    ({"h1": "h1", "h2": "h2"}, "h3 are not mapped"),
    ({"h1": "h1", "h2": "h2", "h3": "h2"}, "same fabric host"),
    ({"h1": "h1", "h2": "h2", "h3": "x9"}, "x9 are not hosts"),
])
def test_bad_mappings_are_named(mapping, problem):
    s = ring_allreduce(names(3), 300)
    with pytest.raises(ValueError, match=problem):
        host_mapping(s, names(4), mapping)
    with pytest.raises(ValueError, match="3 hosts, the fabric only 2"):
        host_mapping(s, names(2))


# -- Chakra ----------------------------------------------------------------------------------

def node(nid, kind, deps=(), dur=0, **attr):
    return {"id": nid, "name": f"n{nid}", "type": kind, "data_deps": list(deps),
            "duration_micros": dur, "attr": attr}


def two_ranks():
    """Rank 0 computes, sends to rank 1, computes; both all-reduce; rank 1 answers."""
    return {
        0: [node(1, "COMP_NODE", dur=10),
            node(2, "COMM_SEND_NODE", [1], comm_dst=1, comm_size=100, comm_tag=7),
            node(3, "COMP_NODE", [2], dur=20),
            node(4, "COMM_COLL_NODE", [3], comm_type=0, comm_size=1000),
            node(5, "COMM_RECV_NODE", [4], comm_src=1, comm_size=64)],
        1: [node(1, 6, comm_src=0, comm_size=100, comm_tag=7),          # enum number
            node(2, "COMP_NODE", [1], dur=5),
            node(3, "COMM_COLL_NODE", [2], comm_type="ALL_REDUCE", comm_size=1000),
            node(4, "COMP_NODE", [3], dur=7),
            node(5, "COMM_SEND_NODE", [4], comm_dst=0, comm_size=64)],
    }


def test_chakra_communication_nodes_become_flows_with_their_dependencies():
    s = convert(two_ranks(), ["h1", "h2"])
    send = s.flow("chakra-r0-n2")
    assert (send.src, send.dst, send.bytes, send.deps) == ("h1", "h2", 100, ())
    assert send.start_s == pytest.approx(10e-6)
    ring = [f for f in s if f.tag("collective") == "allreduce"]
    assert len(ring) == 4 and sum(f.bytes for f in ring) == 2 * 1000
    assert all(f.deps == ("chakra-r0-n2",) for f in ring if f.tag("step") == 0)
    # the all-reduce starts when the slower rank gets there: rank 0 after 10 + 20 us
    assert all(f.start_s == pytest.approx(30e-6) for f in ring if f.tag("step") == 0)
    answer = s.flow("chakra-r1-n5")
    assert set(answer.deps) == {f.id for f in ring if f.tag("step") == 1}
    assert answer.delay_s == pytest.approx(7e-6)
    assert s.meta["compute_only_s"] == pytest.approx(37e-6)


@pytest.mark.parametrize("change, problem", [
    (lambda t: t[1][0].update(type="COMP_NODE"), "rank 0 node 2: send has no matching"),
    (lambda t: t[0][1]["attr"].update(comm_tag=8), "no matching"),
    (lambda t: t[1][2].update(type="COMP_NODE"), "'world': ranks disagree"),
    (lambda t: t[0][3]["attr"].update(comm_type=5), "BROADCAST.*not supported"),
    (lambda t: t[0][0].update(data_deps=[9]), "rank 0 node 1: dependency 9"),
    (lambda t: t[0][0].update(type="GPU_NODE"), "unknown type"),
])
def test_chakra_errors_name_rank_and_node(change, problem):
    traces = two_ranks()
    change(traces)
    with pytest.raises(ChakraError, match=problem):
        convert(traces, ["h1", "h2"])


def test_chakra_missing_extra_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "chakra", None)
    with pytest.raises(ChakraUnavailable, match=r"mlc-chakra.*pip install mlc-chakra"):
        read_et(tmp_path / "trace.0.et")
    with pytest.raises(ChakraUnavailable, match="mlc-chakra"):
        chakra_trace(names(2), [str(tmp_path / "trace.0.et")])


# -- registry --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, params", [
    ("allreduce_ring", {"size_bytes": 1600, "channels": 2}),
    ("allreduce_tree", {"size_bytes": 1600}),
    ("allreduce_hd", {"size_bytes": 1600}),
    ("allgather", {"size_bytes": 1600}),
    ("reducescatter", {"size_bytes": 1600}),
    ("alltoall", {"size_bytes": 1600, "schedule": "shift"}),
    ("hierarchical", {"size_bytes": 1600, "gpus_per_server": 4}),
    ("alltoall_pxn", {"size_bytes": 1600, "gpus_per_server": 4}),
    ("moe_layer", {"layers": 2, "tokens_per_host": 16, "hidden": 4}),
    ("training_iteration", {"pp": 2, "microbatches": 2, "grad_bytes": 4096}),
    ("inference", {"n_requests": 10}),
])
def test_new_workloads_build_through_the_registry(name, params):
    fabric = build("rail", servers=4, gpus_per_server=4)  # 16 hosts with server/rail tags
    s = workloads.build(name, fabric, 3, **params)
    assert s.meta["seed"] == 3 and len(s) > 0
    assert s == workloads.build(name, fabric, 3, **params)
    with pytest.raises(workloads.WorkloadError, match="unknown parameter 'bogus'"):
        workloads.build(name, fabric, 3, bogus=1)
