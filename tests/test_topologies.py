"""Tests of the topology builders: shapes, tags, rates, parameter errors, Mininet registries.

Pure data: no root, no Mininet network is started.
"""

import importlib
import importlib.util
import itertools
import json
import os
import subprocess

import networkx as nx
import pytest

from fabric.model import TopologyError, host_switch, hosts, switches
from topologies import TOPOLOGIES, build
from topologies.edge import edge
from topologies.fattree import fat_tree
from topologies.leafspine import leaf_spine
from topologies.nonblocking import nonblocking, nonblocking_like
from topologies.rail import rail_optimized

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRIES = {  # custom file -> (its `topos` key, the builder behind it)
    "topologies/fattree.py": ("fattree", "fat_tree"),
    "topologies/leafspine.py": ("leafspine", "leaf_spine"),
    "topologies/rail.py": ("rail", "rail_optimized"),
    "topologies/edge.py": ("edge", "edge"),
    "topologies/nonblocking.py": ("nonblocking", "nonblocking"),
    "topologies/jupiter.py": ("jupiter", "jupiter"),
    "topologies/railocs.py": ("railocs", "rail_ocs"),
}
# Names `mn` treats specially when it copies a custom file's top-level names into its globals.
MN_RESERVED = {"hosts", "switches", "controllers", "links", "testnames", "tests", "validate"}


def n_shortest_paths(g, a, b):
    return sum(1 for _ in nx.all_shortest_paths(g, a, b))


SAMPLE_FABRICS = [
    fat_tree(2), fat_tree(4),
    leaf_spine(), leaf_spine(3, 1, 5),
    rail_optimized(), rail_optimized(3, 2, spines=3),
    edge(), edge(sites=1, site_km=7),
    nonblocking(), nonblocking(1),
]


@pytest.mark.parametrize("g", SAMPLE_FABRICS, ids=lambda g: g.graph["name"])
def test_numbering_is_dense_and_ports_are_consistent(g):
    assert [g.nodes[h]["index"] for h in hosts(g)] == list(range(1, len(hosts(g)) + 1))
    assert hosts(g) == [f"h{i}" for i in range(1, len(hosts(g)) + 1)]
    assert [g.nodes[s]["dpid"] for s in switches(g)] == list(range(1, len(switches(g)) + 1))
    for s in switches(g):
        ports = sorted(g.edges[s, v]["ports"][s] for v in g[s])
        assert ports == list(range(1, g.degree(s) + 1))
    for h in hosts(g):
        assert g.edges[h, host_switch(g, h)[0]]["ports"][h] == 0


@pytest.mark.parametrize("k", [2, 4, 6, 8])
def test_fat_tree_shape_and_equal_cost_paths(k):
    g = fat_tree(k)
    half = k // 2
    assert len(switches(g)) == 5 * k * k // 4
    assert len(hosts(g)) == k ** 3 // 4
    assert all(g.degree(s) == k for s in switches(g))
    roles = [g.nodes[s]["role"] for s in switches(g)]
    assert roles.count("core") == half * half
    assert roles.count("aggregation") == roles.count("edge") == k * half
    for a, b in itertools.combinations(hosts(g), 2):
        na, nb = g.nodes[a], g.nodes[b]
        if na["pod"] != nb["pod"]:
            expected = half * half
        elif na["leaf"] != nb["leaf"]:
            expected = half
        else:
            expected = 1
        assert n_shortest_paths(g, a, b) == expected, (a, b)


def test_fat_tree_tags_layers_and_wiring():
    g = fat_tree(4, link_gbps=100, medium="copper", length_km=0.002)
    assert (g.nodes["h1"]["pod"], g.nodes["h1"]["leaf"]) == (1, "e1")
    assert (g.nodes["h16"]["pod"], g.nodes["h16"]["leaf"]) == (4, "e8")
    assert host_switch(g, "h3") == ("e2", 1)
    assert {g.nodes[s]["role"]: g.nodes[s]["layer"] for s in switches(g)} == {
        "edge": 0, "aggregation": 1, "core": 2}
    for s in switches(g):
        node = g.nodes[s]
        assert ("pod" in node) == (node["role"] != "core")
        assert (node.get("leaf") == s) == (node["role"] == "edge")
    # core j reaches aggregation j // (k/2) of every pod, core port p leading to pod p
    assert [(v, g.edges["c3", v]["ports"]["c3"]) for v in sorted(g["c3"])] == [
        ("a2", 1), ("a4", 2), ("a6", 3), ("a8", 4)]
    assert {(d["capacity_gbps"], d["medium"], d["length_km"], d["transceiver"])
            for *_, d in g.edges(data=True)} == {(100.0, "copper", 0.002, "DAC")}


def test_leaf_spine_from_oversubscription():
    g = leaf_spine(4, 2, 4, host_gbps=100, oversubscription=2)
    assert len(hosts(g)) == 16 and len(switches(g)) == 6
    assert g.edges["l3", "s2"]["capacity_gbps"] == 100.0
    assert g.graph["params"]["uplink_gbps"] == 100.0
    assert g.graph["params"]["oversubscription"] == 2.0
    assert all(g.degree(leaf) == 4 + 2 for leaf in ("l1", "l2", "l3", "l4"))
    assert sorted(g["s1"]) == ["l1", "l2", "l3", "l4"]
    assert g.nodes["h5"]["leaf"] == "l2" and g.nodes["l2"]["leaf"] == "l2"
    assert (g.nodes["l1"]["role"], g.nodes["l1"]["layer"]) == ("leaf", 0)
    assert (g.nodes["s1"]["role"], g.nodes["s1"]["layer"]) == ("spine", 1)


def test_leaf_spine_from_uplink_rate_records_achieved_ratio():
    g = leaf_spine(4, 2, 4, host_gbps=100, uplink_gbps=50)
    assert g.edges["l1", "s1"]["capacity_gbps"] == 50.0
    assert g.graph["params"]["oversubscription"] == 4.0


def test_leaf_spine_defaults_to_non_blocking():
    g = leaf_spine(2, 4, 8, host_gbps=400)
    assert g.edges["l1", "s1"]["capacity_gbps"] == 800.0
    assert g.graph["params"]["oversubscription"] == 1.0


def test_rail_optimized_attaches_gpu_i_of_every_server_to_rail_i():
    g = rail_optimized(servers=3, gpus_per_server=4, nic_gbps=200)
    assert len(hosts(g)) == 12
    assert sorted(s for s in switches(g) if g.nodes[s]["role"] == "rail") == [
        "r1", "r2", "r3", "r4"]
    assert sorted(s for s in switches(g) if g.nodes[s]["role"] == "spine") == ["s1", "s2"]
    for server, gpu in itertools.product(range(3), range(4)):
        h = f"h{server * 4 + gpu + 1}"
        assert g.nodes[h]["server"] == server + 1 and g.nodes[h]["rail"] == gpu + 1
        assert host_switch(g, h) == (f"r{gpu + 1}", server + 1)
        assert g.nodes[h]["leaf"] == f"r{gpu + 1}"
    for rail in ("r1", "r2", "r3", "r4"):
        assert g.nodes[rail]["leaf"] == rail
        assert g.edges[rail, "s1"]["capacity_gbps"] == 3 * 200 / 2  # non-blocking by default


def test_rail_optimized_explicit_spines():
    g = rail_optimized(servers=2, gpus_per_server=1, spines=3, spine_gbps=50)
    assert g.graph["params"]["spines"] == 3
    assert sorted(g["r1"]) == ["h1", "h2", "s1", "s2", "s3"]
    assert g.edges["r1", "s3"]["capacity_gbps"] == 50.0
    assert rail_optimized(gpus_per_server=1).graph["params"]["spines"] == 1


def test_edge_wan_links_delay_from_length():
    g = edge()
    assert sorted(g["d1"]) == ["g1", "g2", "g3", "h1", "h2", "h3", "h4"]
    for site, km, delay_us in [(1, 20, 100.0), (2, 50, 250.0), (3, 80, 400.0)]:
        wan = g.edges[f"g{site}", "d1"]
        assert (wan["length_km"], wan["delay_us"], wan["medium"]) == (km, delay_us, "optical")
        assert wan["capacity_gbps"] == 100.0
        assert g.nodes[f"g{site}"]["role"] == "gateway"
    assert g.nodes["d1"]["role"] == "dc"
    assert [g.nodes[h]["site"] for h in hosts(g)] == [0, 0, 0, 0, 1, 1, 2, 2, 3, 3]
    assert g.edges["h1", "d1"]["capacity_gbps"] == 400.0
    assert g.edges["h5", "g1"]["capacity_gbps"] == 100.0
    assert g.graph["params"]["site_km"] == [20.0, 50.0, 80.0]


def test_edge_single_length_for_every_site():
    g = edge(sites=4, site_km=5)
    assert [g.edges[f"g{i}", "d1"]["delay_us"] for i in range(1, 5)] == [25.0] * 4


def test_nonblocking_like_keeps_hosts_addresses_and_rates():
    fabric = edge(wan_gbps=10)
    base = nonblocking_like(fabric)
    assert base.graph["name"] == "nonblocking"
    assert base.graph["params"] == {"like": "edge"}
    assert switches(base) == ["x1"]
    assert hosts(base) == hosts(fabric)
    for h in hosts(fabric):
        for key in ("index", "ip", "mac"):
            assert base.nodes[h][key] == fabric.nodes[h][key]
        nic = fabric.edges[h, host_switch(fabric, h)[0]]
        assert base.edges[h, "x1"]["capacity_gbps"] == nic["capacity_gbps"]
    assert {base.edges[h, "x1"]["capacity_gbps"] for h in hosts(base)} == {400.0, 100.0}


def test_nonblocking():
    g = nonblocking(8, host_gbps=25)
    assert switches(g) == ["x1"] and g.nodes["x1"]["role"] == "edge"
    assert len(hosts(g)) == 8
    assert {d["capacity_gbps"] for *_, d in g.edges(data=True)} == {25.0}


def test_build_uses_builder_defaults_and_params():
    assert len(hosts(build("fattree"))) == 16
    assert len(hosts(build("rail", servers=2, gpus_per_server=8))) == 16
    assert set(TOPOLOGIES) == {"fattree", "leafspine", "rail", "edge", "nonblocking",
                               "jupiter", "railocs"}


@pytest.mark.parametrize("name, params, message", [
    ("fattree", {"k": 3}, "fat-tree k must be an even integer >= 2, got 3"),
    ("fattree", {"k": 0}, "fat-tree k must be an even integer >= 2, got 0"),
    ("fattree", {"k": "x"}, "fat-tree k must be an even integer >= 2, got 'x'"),
    ("fattree", {"k": True}, "fat-tree k must be an even integer >= 2, got True"),
    ("fattree", {"k": 4.0}, "fat-tree k must be an even integer >= 2, got 4.0"),
    ("fattree", {"link_gbps": -400}, "link_gbps must be a number > 0, got -400"),
    ("fattree", {"length_km": float("nan")}, "length_km must be a number >= 0, got nan"),
    ("fattree", {"medium": "wifi"}, "medium must be one of 'optical', 'copper', got 'wifi'"),
    ("nonblocking", {"hosts": 0}, "hosts must be an integer >= 1, got 0"),
    ("nonblocking", {"host_gbps": "400"}, "host_gbps must be a number > 0, got '400'"),
    ("leafspine", {"leaves": True}, "leaves must be an integer >= 1, got True"),
    ("leafspine", {"host_gbps": 0}, "host_gbps must be a number > 0, got 0"),
    ("leafspine", {"oversubscription": -1}, "oversubscription must be a number > 0, got -1"),
    ("leafspine", {"uplink_gbps": 100, "oversubscription": 2},
     "give uplink_gbps or oversubscription, not both"),
    ("rail", {"servers": 2.0}, "servers must be an integer >= 1, got 2.0"),
    ("rail", {"spines": 0}, "spines must be an integer >= 1, got 0"),
    ("rail", {"spine_gbps": -1.5}, "spine_gbps must be a number > 0, got -1.5"),
    ("edge", {"site_km": -5}, "site_km must be a number >= 0, got -5"),
    ("edge", {"site_km": [10, -1, 5]}, "site_km[1] must be a number >= 0, got -1"),
    ("edge", {"site_km": [10, 20]}, "site_km has 2 lengths for 3 sites"),
    ("edge", {"sites": 2}, "site_km has 3 lengths for 2 sites"),
    ("edge", {"dc_hosts": False}, "dc_hosts must be an integer >= 1, got False"),
])
def test_bad_parameters_are_named(name, params, message):
    with pytest.raises(TopologyError) as err:
        build(name, **params)
    assert message in str(err.value)


def test_builders_check_their_own_parameters():
    with pytest.raises(TopologyError, match="fat-tree k must be an even integer >= 2, got 5"):
        fat_tree(5)


def test_unknown_topology_is_named_with_the_known_ones():
    with pytest.raises(TopologyError) as err:
        build("torus", k=4)
    assert "'torus'" in str(err.value)
    assert all(name in str(err.value) for name in TOPOLOGIES)


def test_unknown_parameter_is_named_with_the_accepted_ones():
    with pytest.raises(TopologyError) as err:
        build("fattree", radix=4)
    assert "'radix'" in str(err.value)
    assert "k, link_gbps, medium, length_km" in str(err.value)


@pytest.mark.parametrize("path", REGISTRIES)
def test_module_registry(path):
    key, _ = REGISTRIES[path]
    module = importlib.import_module(path[:-3].replace("/", "."))
    assert list(module.topos) == [key]
    assert module.topos[key].__name__ == f"{key}_topo"
    assert not MN_RESERVED & set(vars(module))


# Does what `mn --custom topologies/x.py` does, from a Python whose sys.path lacks the repo.
EXEC_LIKE_MN = """
import importlib.util, json, sys
assert importlib.util.find_spec("fabric") is None, "repo root must not be importable yet"
report = {}
for path, builder in json.loads(sys.argv[1]).items():
    customs = {}
    exec(compile(open(path).read(), path, "exec"), customs, customs)
    g = customs[builder]()
    report[path] = {"topos": sorted(customs["topos"]), "names": sorted(customs),
                    "hosts": len([n for n, r in g.nodes(data="role") if r == "host"])}
print(json.dumps(report))
"""


MN_PYTHON = "/usr/bin/python3"


def test_custom_files_load_like_mn_does():
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    builders = {path: builder for path, (_, builder) in REGISTRIES.items()}
    # mn runs under the system Python, where this project is not installed (in .venv it is).
    out = subprocess.run([MN_PYTHON, "-I", "-c", EXEC_LIKE_MN, json.dumps(builders)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    for path, (key, _) in REGISTRIES.items():
        assert report[path]["topos"] == [key]
        assert report[path]["hosts"] == len(hosts(TOPOLOGIES[key]()))
        assert not MN_RESERVED & set(report[path]["names"]), path


def test_registry_builds_mininet_topo():
    if importlib.util.find_spec("fabric.emulate") is None:
        pytest.skip("fabric/emulate.py is not written yet")
    from topologies.fattree import topos

    topo = topos["fattree"](4)
    g = fat_tree(4)
    assert sorted(topo.hosts()) == sorted(hosts(g))
    assert sorted(topo.switches()) == sorted(switches(g))
    assert len(topo.links()) == g.number_of_edges()
