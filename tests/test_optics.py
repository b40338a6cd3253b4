"""Tests of optical reach (fabric/optics.py): the class each link gets, the reach errors, and
the cable kilometres and transceiver counts the model and every run's results report.

Pure data and the twin backend: no root, no Mininet.
"""

import json
import os
import re

import pytest

from fabric import model, optics, runner
from fabric.model import TopologyError
from topologies import build
from topologies.edge import edge
from topologies.fattree import fat_tree
from topologies.nonblocking import nonblocking_like


def two_switches(length_km, medium="optical", transceiver=None):
    g = model.new_fabric("pair")
    for s in ("s1", "s2"):
        model.add_switch(g, s, "leaf", 0)
    model.add_link(g, "s1", "s2", 100.0, medium, length_km, transceiver)
    return g.edges["s1", "s2"]


@pytest.mark.parametrize("medium, length_km, expected", [
    ("copper", 0.0, "DAC"), ("copper", 0.003, "DAC"), ("copper", 0.005, "AEC"),
    ("optical", 0.0, "AOC"), ("optical", 0.03, "AOC"), ("optical", 0.05, "SR"),
    ("optical", 0.1, "SR"), ("optical", 0.3, "DR"), ("optical", 1.5, "FR"),
    ("optical", 10.0, "LR"), ("optical", 20.0, "ER"), ("optical", 80.0, "ZR"),
    ("optical", 120.0, "ZR"), ("optical", 500.0, "LH"),
])
def test_a_link_gets_the_shortest_reach_class_of_its_medium_that_covers_it(
        medium, length_km, expected):
    assert two_switches(length_km, medium)["transceiver"] == expected


def test_no_shorter_class_of_the_medium_would_have_covered_the_chosen_one():
    for medium in model.MEDIA:
        mine = [c for c in optics.CLASSES if c.medium == medium]
        for length_km in sorted({0.0} | {c.reach_km * f for c in mine for f in (0.5, 1.0)}):
            chosen = optics.choose(medium, length_km)
            assert chosen.medium == medium and length_km <= chosen.reach_km
            assert not [c for c in mine if length_km <= c.reach_km < chosen.reach_km]


@pytest.mark.parametrize("length_km, transceiver, medium, message", [
    (0.3, "SR", "optical", "link s1-s2: 0.3 km is beyond the 0.1 km reach of transceiver "
                           "class SR"),
    (0.01, None, "copper", "link s1-s2: 0.01 km of copper is beyond the 0.007 km reach of the "
                           "longest copper transceiver class AEC"),
    (5000.0, None, "optical", "link s1-s2: 5000 km of optical is beyond the 3000 km reach"),
    (0.001, "DAC", "optical", "link s1-s2: transceiver class DAC is for copper links, this one "
                              "is optical"),
    (0.001, "XR", "optical", "link s1-s2: unknown transceiver class 'XR', expected one of DAC"),
])
def test_a_link_its_class_cannot_serve_is_an_error_naming_link_length_class_and_reach(
        length_km, transceiver, medium, message):
    with pytest.raises(TopologyError) as err:
        two_switches(length_km, medium, transceiver)
    assert message in str(err.value)


def test_a_medium_without_classes_is_an_error():
    with pytest.raises(optics.ReachError, match="no transceiver class for medium 'wifi'"):
        optics.choose("wifi", 0.0)


def test_the_readmes_table_is_the_modules():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "README.md")) as f:
        rows = re.findall(r"^\| (\w+) \| (optical|copper) \| ([\d.]+) (m|km) \| ([^|]+) \|",
                          f.read(), re.M)
    assert [(name, medium, float(n) / (1000 if unit == "m" else 1))
            for name, medium, n, unit, _ in rows] == [
        (c.name, c.medium, c.reach_km) for c in optics.CLASSES]


def test_an_explicit_class_is_kept_when_it_reaches():
    assert two_switches(0.05, transceiver="FR")["transceiver"] == "FR"


@pytest.mark.parametrize("name, params, message", [
    ("fattree", {"length_km": 0.3, "transceiver": "SR"},
     "link h1-e1: 0.3 km is beyond the 0.1 km reach of transceiver class SR"),
    ("leafspine", {"medium": "copper", "transceiver": "AOC"},
     "transceiver class AOC is for optical links, this one is copper"),
    ("rail", {"transceiver": "QSFP"}, "transceiver must be one of 'DAC'"),
    ("nonblocking", {"transceiver": 3}, "transceiver must be one of"),
    ("edge", {"wan_transceiver": "ER"},
     "link g2-d1: 50 km is beyond the 40 km reach of transceiver class ER"),
    ("edge", {"wan_transceiver": [None, None, "LR"]},
     "link g3-d1: 80 km is beyond the 10 km reach of transceiver class LR"),
    ("edge", {"wan_transceiver": ["ZR", "ZR"]}, "wan_transceiver has 2 classes for 3 sites"),
    ("edge", {"wan_transceiver": ["ZR", "zr", "ZR"]},
     "wan_transceiver[1] must be one of"),
])
def test_topology_parameters_name_a_class_that_is_checked(name, params, message):
    with pytest.raises(TopologyError) as err:
        build(name, **params)
    assert message in str(err.value)


def test_topologies_pass_an_explicit_class_to_every_link_it_covers():
    g = build("leafspine", leaves=2, spines=2, hosts_per_leaf=2, length_km=1.0,
              transceiver="LR")
    assert {d["transceiver"] for *_, d in g.edges(data=True)} == {"LR"}
    g = edge(wan_transceiver=[None, "LH", None])
    assert [g.edges[f"g{i}", "d1"]["transceiver"] for i in (1, 2, 3)] == ["ER", "LH", "ZR"]
    assert g.graph["params"]["wan_transceiver"] == [None, "LH", None]
    assert {g.edges[h, "d1"]["transceiver"] for h in ("h1", "h2", "h3", "h4")} == {"AOC"}


def test_the_baseline_keeps_each_nic_links_class():
    base = nonblocking_like(fat_tree(4, length_km=0.05, transceiver="DR"))
    assert {d["transceiver"] for *_, d in base.edges(data=True)} == {"DR"}


def test_the_class_survives_the_json_model_the_controller_reads(tmp_path):
    g = edge()
    model.dump_json(g, tmp_path / "topology.json")
    back = model.load_json(tmp_path / "topology.json")
    assert back.edges["g3", "d1"]["transceiver"] == "ZR"


ZERO = {c.name: 0 for c in optics.CLASSES}


def test_k4_fat_tree_counts_two_transceivers_per_link():
    # 16 host links, 8 edge switches x 2 aggregation, 8 aggregation x 2 core: 48 links
    o = optics.fabric_optics(fat_tree(4, length_km=0.05))
    assert o["links_by_class"] == dict(ZERO, SR=48)
    assert o["transceivers_by_class"] == dict(ZERO, SR=96)
    assert o["transceivers_total"] == 96
    assert o["length_km_by_medium"] == {"copper": 0.0, "optical": pytest.approx(2.4)}
    assert o["length_km_total"] == pytest.approx(2.4)
    copper = optics.fabric_optics(fat_tree(4, medium="copper", length_km=0.002))
    assert copper["transceivers_by_class"] == dict(ZERO, DAC=96)
    assert copper["length_km_by_medium"] == {"copper": pytest.approx(0.096), "optical": 0.0}


EDGE = {"sites": 3, "hosts_per_site": 2, "dc_hosts": 4, "site_km": [5, 50, 300]}


def test_edge_counts_the_wan_fiber_and_its_long_reach_classes():
    o = optics.fabric_optics(edge(**EDGE))
    # 10 host links of no length (AOC), WAN links of 5, 50 and 300 km
    assert o["links_by_class"] == dict(ZERO, AOC=10, LR=1, ZR=1, LH=1)
    assert o["transceivers_by_class"] == dict(ZERO, AOC=20, LR=2, ZR=2, LH=2)
    assert o["transceivers_total"] == 26
    assert o["length_km_by_medium"] == {"copper": 0.0, "optical": 355.0}
    assert o["length_km_by_class"] == dict({c: 0.0 for c in ZERO}, LR=5.0, ZR=50.0, LH=300.0)


def test_a_twin_runs_summary_carries_each_fabrics_optics(tmp_path, capsys):
    raw = {"name": "optics", "seed": 1, "repeats": 1, "baseline": True, "backend": "twin",
           "topology": {"name": "edge", "params": EDGE}, "policy": "ecmp",
           "workload": {"name": "permutation", "params": {"bytes_per_flow": 100000}}}
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(raw))
    out = tmp_path / "results"
    assert runner.main([str(path), "--results", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((next(out.iterdir()) / "summary.json").read_text())
    assert set(summary["optics"]) == {"edge", "nonblocking"}
    assert summary["optics"]["edge"] == json.loads(json.dumps(optics.fabric_optics(edge(**EDGE))))
    assert summary["optics"]["edge"]["transceivers_by_class"]["LH"] == 2
    # the baseline's switch has only the NIC links: 10 AOC links, no fiber length
    assert summary["optics"]["nonblocking"]["transceivers_by_class"] == dict(ZERO, AOC=20)
    for run in summary["runs"]:
        assert run["optics"] == summary["optics"][run["topology"]]
    assert "optics edge: 355 km fiber, 0 km copper, 26 transceivers (AOC 20, LR 2, ZR 2, LH 2)" \
        in printed


def test_a_spec_whose_link_outreaches_its_class_exits_2_with_one_line_before_anything(
        tmp_path, capsys):
    raw = {"name": "reach", "backend": "twin", "policy": "ecmp",
           "topology": {"name": "edge", "params": dict(EDGE, wan_transceiver="ZR")},
           "workload": {"name": "permutation", "params": {"bytes_per_flow": 100000}}}
    path = tmp_path / "spec.yaml"
    path.write_text(json.dumps(raw))
    out = tmp_path / "results"
    assert runner.main([str(path), "--results", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        f"error: {path}: topology: link g3-d1: 300 km is beyond the 120 km reach of "
        "transceiver class ZR"]
    assert captured.out == "" and not out.exists()
