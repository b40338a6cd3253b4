"""Tests of the routing core's parts on their own: path service, load model, renderer, purity.

The path service is checked against networkx after random link failures and repairs; the
load model's per-link sums and link-to-flow index against a brute-force scan of every flow;
the renderer's incremental updates against a rebuild from scratch of the same state (the
tables must be identical, and the fake datapath holding the messages must agree). Pure: no
Ryu, no Mininet, time passed in.
"""

import ast
import gc
import itertools
import pathlib
import random
import weakref

import networkx as nx
import pytest

from controllers import core as core_module
from controllers.core import ARP_REQUEST, RoutingCore
from controllers.heap import SETTLE_EVERY, Settler, paused
from controllers import loads as loads_module
from controllers.loads import Flow
from controllers.locator import locator_mac, switch_prefix
from controllers.paths import PathService, path_links
from controllers.rules import PRIO_DETOUR, PRIO_FLOW, PRIO_HOST_ROUTE, ArpPacket, FlowRule
from controllers.topology import TopologyState
from fabric.model import host_switch, hosts, switches
from fakedp import FakeFabric
from topologies import build

CORE_MODULES = ("topology", "paths", "loads", "placement", "policies", "render", "rules",
                "tables", "driver", "core", "health", "view")
FORBIDDEN = {"ryu", "socket", "subprocess", "time", "eventlet", "threading", "select"}


def test_no_module_of_the_core_imports_ryu_sockets_processes_or_a_clock():
    root = pathlib.Path(__file__).resolve().parent.parent / "controllers"
    for name in CORE_MODULES:
        tree = ast.parse((root / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            for mod in mods:
                assert mod.split(".")[0] not in FORBIDDEN, f"controllers/{name}.py imports {mod}"


def switch_graph(g):
    """The switch graph by dpid; edges carry ``ports`` by dpid."""
    out = nx.Graph()
    dpid = {n: g.nodes[n]["dpid"] for n in switches(g)}
    out.add_nodes_from(dpid.values())
    for u, v, d in g.edges(data=True):
        if u in dpid and v in dpid:
            out.add_edge(dpid[u], dpid[v], ports={dpid[u]: d["ports"][u], dpid[v]: d["ports"][v]})
    return out


def topology_of(g):
    topo = TopologyState()
    for sw in switches(g):
        topo.switch_enter(g.nodes[sw]["dpid"], [d["ports"][sw] for _, _, d in
                                                g.edges(sw, data=True)])
    for u, v, d in g.edges(data=True):
        if g.nodes[u]["role"] != "host" and g.nodes[v]["role"] != "host":
            topo.link_seen(g.nodes[u]["dpid"], d["ports"][u], g.nodes[v]["dpid"],
                           d["ports"][v], 0.0)
    return topo


def check_against_networkx(ps, graph, dests):
    for d in dests:
        if d not in graph:
            continue
        dist = nx.single_source_shortest_path_length(graph, d)
        assert ps.dist[d] == dist
        for s in dist:
            if s != d:
                want = tuple(sorted(n for n in graph[s] if dist[n] == dist[s] - 1))
                assert ps.hops[d][s] == want, (d, s)
    for a, b in itertools.islice(itertools.permutations(sorted(dests), 2), 40):
        if a in graph and b in graph and nx.has_path(graph, a, b):
            assert ps.paths(a, b) == sorted(tuple(p) for p in nx.all_shortest_paths(graph, a, b))


@pytest.mark.parametrize("topo,params", [("fattree", {"k": 4}), ("fattree", {"k": 6}),
                                         ("leafspine", {"leaves": 4, "spines": 3,
                                                        "hosts_per_leaf": 2})])
def test_path_service_follows_random_link_failures_and_repairs_like_networkx(topo, params):
    g = build(topo, **params)
    truth = switch_graph(g)
    topo_state = topology_of(g)
    dests = sorted({g.nodes[host_switch(g, h)[0]]["dpid"] for h in hosts(g)})
    ps = PathService(topo_state.adj)
    ps.rebuild(dests)
    topo_state.take_changes()
    check_against_networkx(ps, truth, dests)
    rnd = random.Random(7)
    edges = sorted(truth.edges())
    down = set()
    for step in range(40):
        if down and rnd.random() < 0.4:
            u, v = rnd.choice(sorted(down))
            down.discard((u, v))
            pu, pv = truth.edges[u, v]["ports"][u], truth.edges[u, v]["ports"][v]
            topo_state.port_up(u, pu)
            topo_state.port_up(v, pv)
            topo_state.link_seen(u, pu, v, pv, float(step))
        else:
            u, v = rnd.choice(edges)
            if (u, v) in down:
                continue
            down.add((u, v))
            for n in (u, v):
                topo_state.port_down(n, truth.edges[u, v]["ports"][n])
        current = truth.copy()
        current.remove_edges_from(down)
        changes = topo_state.take_changes()
        changed = ps.update(changes.pairs, dests)
        assert changes.pairs, "a link change must be reported as a changed pair"
        assert changed, "a changed pair on every destination's DAG changes something"
        check_against_networkx(ps, current, dests)


def test_k_paths_include_longer_detours_in_order():
    g = build("fattree", k=4)
    topo_state = topology_of(g)
    ps = PathService(topo_state.adj)
    e1, e3 = g.nodes["e1"]["dpid"], g.nodes["e3"]["dpid"]
    ps.rebuild([e1, e3])
    got = ps.k_paths(e1, e3, 8, max_extra_hops=2)
    assert got[:4] == ps.paths(e1, e3)          # the four shortest first (another pod)
    assert len(got) == 8 and all(len(p) in (5, 7) for p in got[4:])  # then detours
    assert len(set(got)) == len(got) and all(len(set(p)) == len(p) for p in got)
    assert all(b in topo_state.adj[a] for p in got for a, b in zip(p, p[1:]))
    assert ps.k_paths(e1, e3, 8, max_extra_hops=0) == ps.paths(e1, e3)


def brute_force(core, now):
    loads = {}
    for link in core.switch_links():
        u, v = link
        loads[link] = core.load.ports.rate_bps(u, core.port(u, v), now)
    on_link = {}
    for f in core.flows.values():
        if f.path is None:
            continue
        for link in path_links(f.path):
            on_link.setdefault(link, set()).add(f.key)
        if not core.load.measured(f, now):
            n_from = sum(1 for x in core.flows.values() if x.src == f.src)
            n_to = sum(1 for x in core.flows.values() if x.dst == f.dst)
            est = min(core.nic_bps(f.src) / n_from, core.nic_bps(f.dst) / n_to)
            for link in path_links(f.path):
                loads[link] += est
    return loads, on_link


def test_load_model_sums_and_index_match_a_brute_force_scan():
    g = build("fattree", k=4, link_gbps=1.0)
    core = RoutingCore(policy="congestion", young_bytes=10 ** 6)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    rnd = random.Random(3)
    hs = hosts(g)
    keys = []
    now = 0.0
    for step in range(120):
        now += 0.05
        a, b = rnd.sample(hs, 2)
        if rnd.random() < 0.7 or not keys:
            sw, port = host_switch(g, a)
            key = (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, 20000 + step, 5001)
            core.packet_in_flow(g.nodes[sw]["dpid"], port, key, g.nodes[a]["mac"],
                                g.nodes[b]["mac"], b"", now)
            keys.append(key)
        elif rnd.random() < 0.5:
            key = rnd.choice(keys)
            flow = core.flows.get(tuple(key))
            if flow is not None:
                sent = flow.sent_bytes + rnd.choice([0, 10 ** 5, 2 * 10 ** 6])
                core.flow_seen(key, flow.src, flow.dst, sent, now)
        else:
            core.adapt(now + 0.01)
        core.flush(now)
        loads, on_link = brute_force(core, now)
        # Estimates of other flows at a busy host may lag by the refresh fraction (10%).
        for link, want in loads.items():
            assert core.link_load(*link, now) == pytest.approx(want, rel=0.1, abs=1.0), link
        assert {link: {f.key for f in core.load.flows_on(link)}
                for link in core.load.links if core.load.flows_on(link)} == on_link
        assert core.load.pinned_counts() == {link: len(v) for link, v in on_link.items()}


def _loop_sweep(load, mark, n, now):
    """The estimates of one host's flows redone by a plain loop, flow after flow in the
    order they were learned (the hot loop before it went over the load model's rows)."""
    side, mac = mark
    for f in (load.flows_of(mac) if side == 0 else load.flows_to(mac)).values():
        if not f.lids:
            continue
        if f.rate_bps is not None and load.measured(f, now):
            want = 0.0
        else:
            src_bps, dst_bps = f.nic_bps
            mine, other = ((src_bps / n, dst_bps / load.count_to(f.dst)) if side == 0
                           else (dst_bps / n, src_bps / load.count_from(f.src)))
            want = mine if mine < other else other
        delta = want - load.estimate(f)
        if delta:
            load._r_est_mv[f.row] = want
            for i in f.lids:
                load._est_mv[i] += delta


@pytest.mark.parametrize("vector_rows", [0, 10 ** 9])
def test_host_sweeps_over_rows_add_what_a_loop_over_the_flows_adds_bit_for_bit(
        monkeypatch, vector_rows):
    """Learning, measuring, moving and forgetting flows (their rows reused) on two cores,
    one redoing a host's estimates over its rows at once (in vector operations, or in its
    loop for hosts with few pinned flows), the other flow by flow in the order they were
    learned: the same estimate for every flow and the same sum on every link, to the last
    bit."""
    monkeypatch.setattr(loads_module, "SWEEP_VECTOR_ROWS", vector_rows)
    g = build("fattree", k=4, link_gbps=1.0)
    cores = []
    for _ in range(2):
        core = RoutingCore(policy="congestion", young_bytes=10 ** 5, flow_idle_s=1.5)
        fab = FakeFabric(g)
        fab.apply(core.load_fabric(g))
        cores.append(core)
    loop = cores[1].load
    monkeypatch.setattr(loop, "_sweep", lambda mark, n, now: _loop_sweep(loop, mark, n, now))
    rnd = random.Random(1)   # a walk with moves (52) and reused rows
    hs = hosts(g)
    now, sent = 0.0, {}
    for step in range(1500):
        now += 0.002
        a, b = rnd.sample(hs[:6], 2)
        key = (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, 20000 + rnd.randrange(100), 5001)
        r = rnd.random()
        if r < 0.97:
            sent[key] = sent.get(key, 0) + rnd.choice([0, 0, 10 ** 4, 10 ** 6])
            for core in cores:
                core.flow_seen(key, g.nodes[a]["mac"], g.nodes[b]["mac"], sent[key], now)
        else:
            for core in cores:
                core.adapt(now)   # moves flows off hot links, forgets idle ones
    one, two = (c.load for c in cores)
    assert list(one.flows) == list(two.flows) and len(one.flows) > 200
    assert sum(1 for f in one.flows.values() if one.estimate(f) > 0) > 10
    assert cores[0].counters["flow_moves"] > 0 and one._free   # moved, rows reused
    for key, f in one.flows.items():
        assert (f.path, one.estimate(f)) == (two.flows[key].path, two.estimate(two.flows[key]))
    n = len(one.links)
    assert one.links == two.links and one._est[:n].tolist() == two._est[:n].tolist()
    # The per-link lists of rows after all this churn (moves, forgotten flows, rows reused):
    # each link's flows as the pinned flows' paths say, in row order, and reading a link
    # leaves only its live rows listed.
    on_link = {}
    for f in one.flows.values():
        for link in path_links(f.path or ()):
            on_link.setdefault(link, set()).add(f.key)
    for link in one.links:
        got = one.flows_on(link)
        assert {f.key for f in got} == on_link.get(link, set()), link
        assert [f.row for f in got] == sorted(f.row for f in got)
        i = one.link_index(link)
        assert i not in one._on or len(one._on[i][0]) == one._on[i][1] == len(got)


@pytest.mark.parametrize("policy", ["ecmp", "congestion"])
@pytest.mark.parametrize("fast_failover", [True, False])
def test_incremental_updates_give_the_tables_a_rebuild_gives(policy, fast_failover):
    g = build("fattree", k=6)
    core = RoutingCore(policy=policy, fast_failover=fast_failover)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    rnd = random.Random(11)
    sg = switch_graph(g)
    edges = sorted(sg.edges())
    down = []
    hs = hosts(g)
    for step in range(25):
        now = 1.0 + step
        if down and rnd.random() < 0.4:
            u, v = down.pop(rnd.randrange(len(down)))
            pu, pv = sg.edges[u, v]["ports"][u], sg.edges[u, v]["ports"][v]
            core.port_status(u, pu, True, now)
            core.port_status(v, pv, True, now)
            core.link_seen(u, pu, v, pv, now)
        else:
            u, v = rnd.choice(edges)
            if (u, v) not in down:
                down.append((u, v))
                for n in (u, v):
                    core.port_status(n, sg.edges[u, v]["ports"][n], False, now)
        if policy == "congestion":
            a, b = rnd.sample(hs, 2)
            sw, port = host_switch(g, a)
            fab.apply(core.packet_in_flow(
                g.nodes[sw]["dpid"], port, (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, 30000 + step,
                                            80), g.nodes[a]["mac"], g.nodes[b]["mac"], b"", now))
        fab.apply(core.flush(now))
        for dpid, sw in fab.by_dpid.items():
            assert sw.flows == core.installed[dpid]["flows"]
            assert sw.groups == core.installed[dpid]["groups"]
        # The same state from scratch: the tables must be the same rules and groups.
        fresh = {d: (dict(t.flows), dict(t.groups)) for d, t in core.installed.items()}
        core._rebuild = True
        assert core.flush(now) == [], f"step {step}: a rebuild differs from the updates"
        assert fresh == {d: (dict(t.flows), dict(t.groups)) for d, t in core.installed.items()}
    assert core.status()["counters"]["route_updates"] > 10


def eth_dsts(core, dpid, priority):
    """(masked eth_dst values, exact eth_dst MACs) of a switch's rules at ``priority``."""
    values = [dict(r.match)["eth_dst"] for r in core.installed[dpid]["flows"].values()
              if r.priority == priority]
    return ({v for v in values if type(v) is tuple}, {v for v in values if type(v) is str})


def same_as_rebuild(core, fab, now):
    """The fake switches hold what the core believes, and a rebuild changes nothing."""
    for dpid, sw in fab.by_dpid.items():
        assert sw.flows == core.installed[dpid]["flows"]
        assert sw.groups == core.installed[dpid]["groups"]
    core._rebuild = True
    assert core.flush(now) == [], "a rebuild differs from the updates"


def test_other_switches_reach_a_switchs_hosts_by_one_masked_rule():
    g = build("fattree", k=4)
    core = RoutingCore(policy="ecmp", fast_failover=True)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    at = {}
    for h in hosts(g):
        sw, _ = host_switch(g, h)
        at.setdefault(g.nodes[sw]["dpid"], set()).add(g.nodes[h]["mac"])
    detours = 0
    for sw in switches(g):
        dpid = g.nodes[sw]["dpid"]
        by_prefix, own = eth_dsts(core, dpid, PRIO_HOST_ROUTE)
        assert by_prefix == {switch_prefix(d) for d in at if d != dpid}
        assert own == at.get(dpid, set())  # its own hosts only, each to its port
        by_prefix, own = eth_dsts(core, dpid, PRIO_DETOUR)
        assert not own and by_prefix <= {switch_prefix(d) for d in at}
        detours += len(by_prefix)
    assert detours  # FAST_FAILOVER protection is there, by prefix too
    # 16 host rules and 4 base rules per switch before; now one rule per other edge switch.
    assert core.status()["rules"] < len(switches(g)) * (len(hosts(g)) + 4)
    for x, y in itertools.permutations(hosts(g), 2):
        found = fab.paths(x, y)  # asserts every branch reaches y
        assert sorted(set(found)) == sorted(
            tuple(fab.names[d] for d in p)
            for p in core.paths(g.nodes[x]["mac"], g.nodes[y]["mac"]))
    fab.set_link("e1", "a1", False)  # the core is not told: detours by prefix carry it
    for x, y in itertools.permutations(hosts(g), 2):
        assert fab.paths(x, y)


def test_hosts_without_their_switchs_locator_get_rules_of_their_own_everywhere():
    g = build("fattree", k=4)
    dpid = {sw: g.nodes[sw]["dpid"] for sw in switches(g)}
    on = {}
    for h in hosts(g):
        on.setdefault(host_switch(g, h)[0], []).append(h)
    moved, vendor = on["e2"][0], on["e3"][0]
    g.nodes[moved]["mac"] = locator_mac(dpid["e1"], 77)   # e1's address, attached at e2
    g.nodes[vendor]["mac"] = "52:54:00:12:34:56"
    core = RoutingCore(policy="ecmp", fast_failover=True)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))

    def check(now, present):
        fab.apply(core.flush(now))
        same_as_rebuild(core, fab, now)
        for x, y in itertools.permutations([h for h in hosts(g) if h in present], 2):
            assert fab.paths(x, y)
        by_prefix, own = eth_dsts(core, dpid["a1"], PRIO_HOST_ROUTE)
        assert switch_prefix(dpid["e3"]) in by_prefix and g.nodes[vendor]["mac"] in own
        # e1's prefix would also match the moved host: while it is there, e1's hosts get
        # rules of their own, and so do the detours toward them (a1 protects its hop to e1).
        e1, e1_macs = switch_prefix(dpid["e1"]), {g.nodes[h]["mac"] for h in on["e1"]}
        detour_prefix, detour_own = eth_dsts(core, dpid["a1"], PRIO_DETOUR)
        if moved in present:
            assert e1 not in by_prefix | detour_prefix
            assert e1_macs <= own and e1_macs <= detour_own
        else:
            assert e1 in by_prefix and e1 in detour_prefix
            assert not e1_macs & (own | detour_own)

    everyone = set(hosts(g))
    check(1.0, everyone)
    sw, port = host_switch(g, moved)
    core.port_status(dpid[sw], port, False, 2.0)   # the moved host goes
    fab.switch(sw).down_ports.add(port)
    check(2.0, everyone - {moved})
    core.port_status(dpid[sw], port, True, 3.0)    # and comes back
    fab.switch(sw).down_ports.discard(port)
    node = g.nodes[moved]
    core.packet_in_arp(dpid[sw], port, ArpPacket(ARP_REQUEST, node["mac"], node["ip"],
                                                 "00:00:00:00:00:00", node["ip"]), b"", 3.0)
    check(3.0, everyone)


@pytest.mark.parametrize("seed", [1, 2])
def test_hosts_moving_coming_and_going_with_any_mac_keep_updates_equal_to_a_rebuild(seed):
    # Hosts move to spare ports of other edge switches (keeping their locator MACs), hosts
    # with vendor MACs come, hosts go: after each step the updated tables must be those a
    # rebuild gives, and every pair of known hosts must have a path in the installed rules.
    g = build("fattree", k=4)
    core = RoutingCore(policy="congestion", fast_failover=True)
    core.load_fabric(g)
    core.flush(0.0)
    edges = [g.nodes[sw]["dpid"] for sw in switches(g) if g.nodes[sw]["role"] == "edge"]
    spare = [(d, p) for d in edges for p in (50, 51)]
    for d, p in spare:
        core.port_status(d, p, True, 0.0)
    rnd = random.Random(seed)
    made = 0
    for step in range(30):
        now = 1.0 + step
        known = sorted(core.hosts.values())
        free = [dp for dp in spare if not core.topo.has_hosts_at(*dp)]
        kind = rnd.choice(["move", "vendor", "go"] if free else ["go"])
        if kind == "go" or kind == "move":
            h = rnd.choice(known)
            core.port_status(h.dpid, h.port, False, now)
            core.port_status(h.dpid, h.port, True, now)
        if kind == "move":
            mac, ip = h.mac, h.ip
        elif kind == "vendor":
            made += 1
            mac, ip = "52:54:00:00:%02x:%02x" % (seed, made), f"10.9.{seed}.{made}"
        if kind != "go":
            d, p = rnd.choice(free)
            core.packet_in_arp(d, p, ArpPacket(ARP_REQUEST, mac, ip, "00:00:00:00:00:00", ip),
                               b"", now)
        core.flush(now)
        fresh = {d: (dict(t.flows), dict(t.groups)) for d, t in core.installed.items()}
        core._rebuild = True
        assert core.flush(now) == [], f"step {step} ({kind}): a rebuild differs"
        assert fresh == {d: (dict(t.flows), dict(t.groups)) for d, t in core.installed.items()}
        macs = sorted(core.hosts)
        for a, b in rnd.sample(list(itertools.permutations(macs, 2)), 30):
            assert core.paths(a, b), f"step {step} ({kind}): no path {a} -> {b}"
    assert core.status()["counters"]["route_updates"] > 10


def learn_random_flows(core, count, seed, first_port):
    """Discover a k=4 fat-tree, then learn ``count`` TCP flows between random hosts at t=1
    (one source port each); returns their 5-tuples."""
    g = build("fattree", k=4)
    core.load_fabric(g)
    core.flush(0.0)
    rnd = random.Random(seed)
    keys = set()
    for i in range(count):
        a, b = rnd.sample(hosts(g), 2)
        sw, port = host_switch(g, a)
        key = (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, first_port + i, 5001)
        core.packet_in_flow(g.nodes[sw]["dpid"], port, key, g.nodes[a]["mac"],
                            g.nodes[b]["mac"], b"", 1.0)
        keys.add(key)
    return keys


@pytest.mark.parametrize("policy", ["ecmp", "congestion", "collective"])
def test_a_dropped_core_is_freed_at_once_not_kept_by_a_cycle(policy):
    # The renderer freezes what a rebuild leaves (gc.freeze): a core kept alive only by a
    # reference cycle would never be collected (each dropped k=32 core kept 1 GB).
    core = RoutingCore(policy=policy)
    core.load_fabric(build("fattree", k=4))
    core.flush(0.0)
    gone = weakref.ref(core)
    del core
    assert gone() is None


def test_learned_flows_a_rebuild_froze_are_freed_once_forgotten():
    # A rebuild freezes everything alive (gc.freeze), learned flows included; the collector
    # never looks at them again, so a forgotten flow must leave no reference cycle behind
    # (its host indexes point back at it while it is tracked) for reference counting to
    # free it.
    core = RoutingCore(policy="congestion", flow_idle_s=5.0)
    ours = learn_random_flows(core, 50, seed=5, first_port=30000)
    core.set_policy("hedera", 2.0)    # a learning policy: the flows stay, every route is redone
    core.flush(2.0)
    assert len(core.flows) == 50 and gc.get_freeze_count() > 0
    core.adapt(10.0)
    core.flush(10.0)
    assert not core.flows
    gc.collect()    # other tests' garbage; what the rebuild froze is out of its reach
    gc.unfreeze()   # let get_objects see what the rebuild froze, uncollected
    assert not [o for o in gc.get_objects() if type(o) is Flow and o.key in ours]


class _Cycle:
    def __init__(self):
        self.me = self


def test_the_settler_collects_cyclic_garbage_before_it_freezes():
    settler = Settler(every=3)
    try:
        gc.collect()
        frozen = gc.get_freeze_count()
        garbage = _Cycle()
        gone = weakref.ref(garbage)
        del garbage
        kept = [_Cycle() for _ in range(10)]
        settler.grew(2)
        assert gone() is not None and settler.settled == 0    # not yet: 2 of 3
        settler.grew()
        assert settler.settled == 1 and settler.pending == 0
        assert gone() is None                                  # collected, not frozen
        assert gc.get_freeze_count() >= frozen + len(kept)     # the live ones are frozen
        with paused():
            settler.grew(5)                                    # the paused block decides
        assert settler.settled == 1
        with pytest.raises(ValueError, match="every"):
            Settler(every=0)
    finally:
        gc.unfreeze()


def test_learned_flows_the_settler_froze_are_freed_once_forgotten():
    # Learned flows are settled (collected, then frozen) every SETTLE_EVERY flows: forgotten,
    # they and their rules must leave no reference cycle behind for reference counting to
    # free them, or the controller would keep every flow it ever learned.
    core = RoutingCore(policy="congestion", flow_idle_s=5.0)
    ours = learn_random_flows(core, SETTLE_EVERY + 10, seed=6, first_port=20000)
    assert core._settler.settled == 1
    rules = {rule.match for table in core.installed.values() for rule in table.flows.values()
             if rule.priority == PRIO_FLOW}
    assert len(core.flows) == len(ours) and rules
    core.adapt(10.0)
    core.flush(10.0)
    assert not core.flows
    try:
        gc.collect()
        gc.unfreeze()   # let get_objects see what the settler froze, uncollected
        left = [o for o in gc.get_objects()
                if (type(o) is Flow and o.key in ours)
                or (type(o) is FlowRule and o.priority == PRIO_FLOW and o.match in rules)]
        assert not left
    finally:
        gc.collect()


def test_reset_forgets_learned_flows_intents_and_weights_and_their_rules():
    g = build("fattree", k=4, link_gbps=1.0)
    for policy in ("congestion", "collective"):
        core = RoutingCore(policy=policy)
        fab = FakeFabric(g)
        fab.apply(core.load_fabric(g))
        fab.apply(core.flush(0.0))
        base = {d: dict(t.flows) for d, t in core.installed.items()}
        h1, h16 = g.nodes["h1"], g.nodes["h16"]
        sw, port = host_switch(g, "h1")
        fab.apply(core.packet_in_flow(g.nodes[sw]["dpid"], port,
                                      (h1["ip"], h16["ip"], 6, 40000, 5001), h1["mac"],
                                      h16["mac"], b"", 1.0))
        if policy == "collective":
            core.submit_intent("job", [(h1["ip"], h16["ip"], 10 ** 6)], 1.0)
        fab.apply(core.flush(1.0))
        assert core.flows and {d: dict(t.flows) for d, t in core.installed.items()} != base
        core.reset(2.0)
        fab.apply(core.flush(2.0))
        assert not core.flows and core.intents() == []
        assert {d: dict(t.flows) for d, t in core.installed.items()} == base
        for dpid, sw in fab.by_dpid.items():
            assert sw.flows == core.installed[dpid]["flows"]
        assert core.status()["policy"] == policy and core.status()["counters"]["policy_resets"] == 1


def test_a_controller_that_falls_behind_keeps_its_links_a_dead_link_still_expires():
    g = build("fattree", k=4)
    topo = topology_of(g)
    links = len(topo.links)
    topo.expire_links(40.0)          # nothing processed for 40 s: the controller was behind
    assert len(topo.links) == links
    e1, a1 = g.nodes["e1"]["dpid"], g.nodes["a1"]["dpid"]
    for (a, port), (b, peer, _) in list(topo.links.items()):
        if {a, b} != {e1, a1}:
            topo.link_seen(a, port, b, peer, 41.0)   # every probe but e1-a1's comes back
    topo.expire_links(42.0)
    assert len(topo.links) == links - 1 and a1 not in topo.adj[e1]
    topo.expire_links(41.0 + 15.0 * 4 + 1)           # then every link went silent
    assert not topo.links


def test_probes_worked_through_late_after_a_stall_do_not_expire_links():
    """The controller stalls for 30 s, then works through its backlog of probe replies one
    by one, with link expiry running in between: links are judged by when their probes
    were sent, so none expires."""
    g = build("fattree", k=4)
    core = RoutingCore()
    core.load_fabric(g)
    core.flush(0.0)
    links = core.status()["links"]
    probes = [m.packet for m in core.lldp_probes(1.0)]
    peers = core.topo.peers()
    now = 31.0
    for i, probe in enumerate(probes):
        if (probe.dpid, probe.port) in peers:
            dst, dport = peers[(probe.dpid, probe.port)]
            core.link_seen(probe.dpid, probe.port, dst, dport, now + 0.01 * i,
                           sent_at=probe.sent_at)
        if i % 5 == 0:
            core.expire_links(now + 0.01 * i)
    assert core.status()["links"] == links and core.status()["counters"].get(
        "links_expired", 0) == 0


@pytest.mark.parametrize("cache_cells", [None, 40])
@pytest.mark.parametrize("topo,params", [("fattree", {"k": 6}),
                                         ("leafspine", {"leaves": 4, "spines": 3,
                                                        "hosts_per_leaf": 2})])
def test_candidate_paths_are_the_path_services_through_failures_and_cache_eviction(
        topo, params, cache_cells, monkeypatch):
    # A new switch pair's candidate matrix is assembled from parts shared with other pairs
    # (see RoutingCore._path_matrix): every pair's columns must still be exactly its own
    # shortest paths, in order, with each link's projected utilization, after links fail
    # and heal and when the cache evicts parts (40 cells: a few pairs at most).
    if cache_cells is not None:
        monkeypatch.setattr(core_module, "MATRIX_CACHE_CELLS", cache_cells)
    g = build(topo, **params)
    core = RoutingCore(policy="congestion")
    core.load_fabric(g)
    core.flush(0.0)
    truth = switch_graph(g)
    pairs = list(itertools.permutations(hosts(g), 2))
    rnd = random.Random(11)
    edges = sorted(truth.edges())
    now = 1.0
    for step in range(8):
        if step:
            u, v = rnd.choice(edges)
            up = rnd.random() < 0.5
            for a in (u, v):
                core.port_status(a, truth.edges[u, v]["ports"][a], up, now)
            if up:
                core.link_seen(u, truth.edges[u, v]["ports"][u], v,
                               truth.edges[u, v]["ports"][v], now)
        for n, (a, b) in enumerate(rnd.sample(pairs, min(60, len(pairs)))):
            sw, port = host_switch(g, a)
            key = (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, 1000 * step + n, 5001)
            core.packet_in_flow(g.nodes[sw]["dpid"], port, key, g.nodes[a]["mac"],
                                g.nodes[b]["mac"], b"", now)
            flow = core.flows[key]
            paths, util = core.candidate_utils(flow, 1e6, now)
            want = core.host_paths(flow.src, flow.dst)
            assert [paths[i] for i in range(len(paths))] == want, (a, b)
            assert util.shape == (len(want), len(want[0]) - 1)
            for i, path in enumerate(want):
                assert util[i].tolist() == pytest.approx(
                    [(core.link_load(*link, now) + 1e6) / core.capacity(*link)
                     for link in path_links(path)])
        assert any(load > 0 for load in core.projected_loads(now).values())
        now += 1.0
