"""Integration: optical circuit switches as patch-panel bridges under our controller (root).

The OCS bridges are never connected to the controller; their circuits are static flows
installed by fabric/ocs.py. What the controller discovers through them must be exactly the
logical fabric of the circuits (fabric/optical.py).
"""

import itertools
import json
import threading

import pytest

from fabric import ocs, optical, runner, spec as specs
from fabric.controller import Controller
from fabric.emulate import Emulation, rate_scale
from fabric.model import TopologyError, hosts, is_host, switches
from fabric.reach import all_pairs
from fabric.runner import bring_up
from topologies import build
from traffic import workloads

pytestmark = pytest.mark.emulation


def small_jupiter():
    # 3 blocks x (1 leaf, 2 aggregation switches, 2 hosts), two OCSes: 6 hosts, 9 switches,
    # 4 uplinks per block, so one OCS can move while the other keeps the blocks connected.
    return build("jupiter", blocks=3, leaves_per_block=1, aggs_per_block=2, hosts_per_leaf=2,
                 ocses=2)


def other_plan(g, ocs_name):
    """Circuits of ``g`` with ``ocs_name``'s matching replaced by the first other valid one."""
    old = optical.circuits_of(g)
    phys = optical.physical(g)
    ports = list(range(1, phys.nodes[ocs_name]["ports"] + 1))

    def matchings(rest):
        if not rest:
            yield []
            return
        a = rest[0]
        for b in rest[1:]:
            left = [x for x in rest if x not in (a, b)]
            for m in matchings(left):
                yield [(a, b)] + m

    for m in matchings(ports):
        if tuple(sorted(m)) == old[ocs_name]:
            continue
        new = dict(old, **{ocs_name: tuple(sorted(m))})
        try:
            optical.logical_graph(phys, new)
        except TopologyError:
            continue
        return new
    raise AssertionError("no other plan")


def test_ocs_circuits_form_the_logical_links_and_nothing_else(tmp_path, clean_machine):
    g = small_jupiter()
    with Controller(str(tmp_path / "controller.log")) as ctl:
        with Emulation(g, ctl.of_port, rate_scale(g, 10)) as em:
            bring_up(g, ctl, em)
            topo = ctl.get("/fabric/topology")
            status = ctl.get("/fabric/status")
            ping = all_pairs(g, em, rounds=1)
            flows = {o: em.ocs.flows(o) for o in em.ocs.circuits}
    dpid = {g.nodes[s]["dpid"]: s for s in switches(g)}
    discovered = {frozenset((dpid[x["src"]], dpid[x["dst"]])) for x in topo["links"]}
    logical = {frozenset((u, v)) for u, v in g.edges
               if not is_host(g, u) and not is_host(g, v)}
    assert discovered == logical
    # Only the packet switches talk to the controller: the OCS bridge is not a switch to it.
    assert status["switches"] == len(switches(g)) == 9
    # A frame entering an OCS port leaves only by its circuit: the bridge holds exactly one
    # flow per circuit direction (fail-mode secure drops everything else).
    for o, pairs in optical.circuits_of(g).items():
        assert flows[o] == {(p, q) for p, q in pairs} | {(q, p) for p, q in pairs}
    assert ping["pairs"] == len(hosts(g)) * (len(hosts(g)) - 1)
    assert ping["unreachable"] == []


def test_a_reconfiguration_during_traffic_loses_no_flow(tmp_path, clean_machine):
    """Flows between every block run while OCS o1 moves all its circuits: the controller
    drains them (routes move to o2's circuits), o1 goes dark, the controller commits the new
    circuits in one change; every flow completes."""
    g = small_jupiter()
    new = other_plan(g, "o1")
    spec = specs.check({"topology": {"name": "jupiter"}, "workload": {"name": "permutation"},
                        "emulation": {"host_link_mbps": 10}, "timeout_s": 90})
    schedule = workloads.build("permutation", g, 1, bytes_per_flow=1_500_000, kind="stride",
                               stride=2)
    done = {}

    def move():
        try:
            done["lg"], done["steps"] = ocs.make_before_break(net.ctl, net.em, g, new, 0.5)
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            done["error"] = e

    with runner.network(g, spec, str(tmp_path / "net"), log=lambda *_: None) as net:
        mover = threading.Thread(target=move)
        res = runner.run_on(net, schedule, spec, str(tmp_path / "run"), on_go=mover.start)
        mover.join(60)
        topo = net.ctl.get("/fabric/topology")
        flows = net.em.ocs.flows("o1")
    assert "error" not in done, done.get("error")
    assert done["steps"]["removed"] == done["steps"]["added"] == 3
    assert res["flows_completed"] == res["flows_total"] == 6
    lg = done["lg"]
    dpid = {lg.nodes[x]["dpid"]: x for x in switches(lg)}
    assert {frozenset((dpid[x["src"]], dpid[x["dst"]])) for x in topo["links"]} == \
        {frozenset((u, v)) for u, v in lg.edges if not is_host(lg, u) and not is_host(lg, v)}
    assert flows == set(itertools.chain.from_iterable(
        ((p, q), (q, p)) for p, q in new["o1"]))


def test_twin_and_emulation_agree_on_an_ocs_fabric(tmp_path, clean_machine):
    """A stride permutation across blocks of the small OCS fabric and on the one-switch
    baseline, in the emulation (circuits on OCS bridges) and in the twin (circuits as links,
    emulated timebase, the emulation's connections replayed): efficiencies relative to the
    baseline agree within 0.25, as tests/test_twin_emulation.py asks of packet fabrics."""
    from topologies.nonblocking import nonblocking_like
    g = small_jupiter()
    params = {"bytes_per_flow": 1_200_000, "kind": "stride", "stride": 2}

    def spec(backend):
        return specs.check({"backend": backend, "topology": {"name": "jupiter"},
                            "workload": {"name": "permutation", "params": params},
                            "emulation": {"tcp_window_bytes": 131072},
                            "twin": {"timebase": "emulated"}, "timeout_s": 60})

    eff = {}
    for label, fabric in (("nonblocking", nonblocking_like(g)), ("jupiter", g)):
        schedule = workloads.build("permutation", fabric, 7, **params)
        run_dir = tmp_path / label
        with runner.network(fabric, spec("emulation"), str(run_dir / "net"),
                            lambda *_: None) as net:
            emu = runner.run_on(net, schedule, spec("emulation"), str(run_dir / "emulation"))
        assert emu["flows_completed"] == emu["flows_total"]
        conns = json.loads((run_dir / "emulation" / "connections.json").read_text())
        twin = runner.run_twin(fabric, schedule, spec("twin"), str(run_dir / "twin"),
                               lambda *_: None, five_tuples=conns)
        assert twin["flows_completed"] == twin["flows_total"]
        eff[label] = (emu["efficiency"], twin["efficiency"])
    emu_rel = eff["jupiter"][0] / eff["nonblocking"][0]
    twin_rel = eff["jupiter"][1] / eff["nonblocking"][1]
    print(f"relative efficiency: emulation {emu_rel:.3f}, twin {twin_rel:.3f}, raw {eff}")
    assert abs(emu_rel - twin_rel) <= 0.25, eff


def test_the_runner_moves_circuits_while_the_flows_run(tmp_path, clean_machine):
    """``circuits: reconfigure``: the run starts on the uniform plan and, as the flows start,
    moves OCS o1 to the plan engineered for them (o2's circuits keep the blocks connected
    while o1's drain); every flow completes."""
    raw = {"name": "ocs-live", "circuits": "reconfigure",
           "topology": {"name": "jupiter",
                        "params": {"blocks": 4, "leaves_per_block": 1, "aggs_per_block": 2,
                                   "hosts_per_leaf": 2, "ocses": 2,
                                   "reconfiguration_ms": 0.01}},
           "workload": {"name": "permutation",
                        "params": {"bytes_per_flow": 1_500_000, "kind": "stride", "stride": 2}},
           "emulation": {"host_link_mbps": 10}, "timeout_s": 90}
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(raw))
    out = tmp_path / "results"
    assert runner.main([str(path), "--results", str(out), "--quiet"]) == 0
    summary = json.loads((next(out.iterdir()) / "summary.json").read_text())
    assert summary["flows_completed"] == summary["flows_total"] == 8
    run = summary["runs"][0]
    assert run["ocs_steps"]["removed"] == run["ocs_steps"]["added"] == 2
    assert summary["ocs"]["direct_share_after"] > summary["ocs"]["direct_share"]


def test_circuits_move_between_two_jobs_one_after_another(tmp_path, clean_machine):
    """``circuits: phased`` with two jobs, the second after the first: a block ring, then
    each block with the block two on. The OCS bridges start on the ring's circuits and move
    to the second job's once the ring's last flow is received, through the controller's
    drain and commit, staged so that the blocks the second job's flows join stay connected;
    every flow completes and the summary lists the move (when, circuits changed, dark time
    paid), as the twin does for the same spec."""
    def perm(stride):
        return {"name": "permutation",
                "params": {"bytes_per_flow": 1_500_000, "kind": "stride", "stride": stride}}

    raw = {"name": "ocs-phased", "circuits": "phased",
           "topology": {"name": "jupiter",
                        "params": {"blocks": 4, "leaves_per_block": 1, "aggs_per_block": 2,
                                   "hosts_per_leaf": 2, "ocses": 2,
                                   "reconfiguration_ms": 0.01}},
           "jobs": [{"name": "ring", "workload": perm(2), "hosts": 8},
                    {"name": "cross", "workload": perm(4), "hosts": 8, "after": "ring"}],
           "twin": {"timebase": "emulated"},
           "emulation": {"host_link_mbps": 10}, "timeout_s": 90}
    summaries = {}
    # The emulation first, while the machine is known to be free (clean_machine waited).
    for backend in ("emulation", "twin"):
        path = tmp_path / f"{backend}.json"
        path.write_text(json.dumps(dict(raw, backend=backend)))
        out = tmp_path / backend
        assert runner.main([str(path), "--results", str(out), "--quiet"]) == 0
        summaries[backend] = json.loads((next(out.iterdir()) / "summary.json").read_text())
    emu, twin = summaries["emulation"], summaries["twin"]
    assert emu["flows_completed"] == emu["flows_total"] == 16
    assert [p["phase"] for p in emu["ocs"]["phases"]] == ["ring", "cross"]
    (move,) = emu["ocs"]["reconfigurations"]
    (twin_move,) = twin["ocs"]["reconfigurations"]
    assert move["phase"] == "cross"
    for key in ("steps", "circuits_changed", "dark_ms"):
        assert move[key] == twin_move[key]
    assert move["circuits_changed"] > 0 and move["dark_ms"] == pytest.approx(0.01 * move["steps"])
    assert len(move["step_wall_s"]) == move["steps"]
    # After the ring (its last flow), before the end of the run (nominal seconds).
    ring_end = emu["figures"]["jupiter"]["jobs"]["ring"]["completion_time_s"]["median"]
    assert ring_end - 1e-3 <= move["at_s"] < emu["completion_time_s"]
