"""The chaos suite (fabric/chaos.py): seeded fault plans, the report, and a short chaos run
with a teardown soak on a real k=4 fat-tree (the long one is `make chaos`)."""

import csv
import doctest
import io
import os
import signal
import subprocess
import sys
import time

import pytest

from fabric import chaos, spec as specs
from fabric.progress import Progress
from topologies import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_same_seed_gives_the_same_faults_and_another_seed_others():
    g = build("fattree", k=4)
    a, b = chaos.plan(g, 7, 12), chaos.plan(g, 7, 12)
    assert a == b and len(a) == 12
    assert chaos.plan(g, 8, 12) != a
    assert {f.kind for f in a} <= set(chaos.FAULT_KINDS)


def test_faults_only_break_what_leaves_every_host_connected():
    g = build("fattree", k=4)
    cands = chaos.candidates(g)
    # No host link and no edge switch (its hosts would be cut off); every core and
    # aggregation switch, every switch-to-switch link.
    assert all(not s.startswith(("h", "e")) for s in cands["switch"])
    assert len(cands["switch"]) == 4 + 8 and len(cands["link"]) == 32
    for f in chaos.plan(g, 1, 50):
        if f.kind in ("link", "gray", "slow"):
            assert not any(n.startswith("h") for n in f.target)
        assert 1.0 <= f.gap_s <= 3.0 and 3.0 <= f.hold_s <= 6.0


def test_a_fabric_without_a_redundant_switch_is_refused_for_switch_faults():
    g = build("leafspine", leaves=2, spines=1, hosts_per_leaf=2)
    with pytest.raises(chaos.ChaosError, match="no switch whose loss"):
        chaos.plan(g, 1, 3, kinds=["switch"])
    with pytest.raises(chaos.ChaosError, match="kinds must be some of"):
        chaos.plan(g, 1, 3, kinds=["meteor"])


def test_the_report_counts_per_kind_and_lost_flows():
    records = [
        {"kind": "link", "injected": True, "detect_s": 0.1, "recover_s": 0.2, "repair_s": 0.1,
         "reachability": {"pairs": 2, "unreachable": []}},
        {"kind": "link", "injected": True, "detect_s": 0.3, "recover_s": None,
         "reachability": {"pairs": 2, "unreachable": [["h1", "h2"]]}},
        {"kind": "switch", "injected": False},
        {"kind": "gray", "injected": True, "utilization": 0.0, "detect_s": None,
         "recover_s": 0.1, "reachability": {"pairs": 2, "unreachable": []}},
        # Below its cut rate a slow link builds no queue: idle, though it carries traffic.
        {"kind": "slow", "injected": True, "utilization": 0.05, "detect_s": None,
         "recover_s": 0.1, "reachability": {"pairs": 2, "unreachable": []}},
        {"kind": "slow", "injected": True, "utilization": 0.5, "detect_s": 4.0,
         "recover_s": 4.5, "reachability": {"pairs": 2, "unreachable": []}},
        # Nearly idle when sampled, found once its traffic grew: not counted idle.
        {"kind": "slow", "injected": True, "utilization": 0.02, "detect_s": 6.6,
         "recover_s": 6.8, "reachability": {"pairs": 2, "unreachable": []}},
    ]
    rep = chaos.report(records, {"flows_total": 10, "flows_completed": 9}, {})
    assert rep["flows_lost"] == 1
    assert rep["faults"]["link"]["injected"] == 2 and rep["faults"]["link"]["detected"] == 2
    assert rep["faults"]["link"]["recovered"] == 1
    assert rep["faults"]["link"]["detect_s"] == {"median": 0.2, "max": 0.3}
    assert rep["faults"]["switch"] == dict(rep["faults"]["switch"], planned=1, injected=0)
    assert (rep["reachability_checks"], rep["reachability_passed"]) == (6, 5)
    assert rep["faults"]["gray"]["idle"] == 1 and rep["faults"]["gray"]["detected"] == 0
    assert rep["faults"]["slow"]["idle"] == 1 and rep["faults"]["slow"]["detected"] == 2
    assert rep["faults"]["gray"]["ended_first"] == rep["faults"]["slow"]["ended_first"] == 0
    md = chaos.report_md(rep)
    assert "lost 1" in md and "gray links idle when they failed" in md
    assert "slow links idle when they failed (under 10% utilization" in md
    assert "traffic ended" not in md


class _Ctl:
    """A controller that never finds anything degraded and has nothing pending."""

    def get(self, path, timeout=None):
        if path == "/fabric/topology":
            return {"links": []}
        return {"switches": 20, "links": 32, "hosts": 16, "pending": 0,
                "degraded_links": []}


class _Em:
    def __init__(self):
        self.calls = []

    def gray_link(self, u, v, on):
        self.calls.append((u, v, on))


def test_a_gray_link_the_traffic_ended_under_is_reported_not_observed_rather_than_missed(
        monkeypatch):
    g = build("fattree", k=4)
    monkeypatch.setitem(chaos.DETECT_TIMEOUT_S, "gray", 1.5)
    monkeypatch.setattr(chaos, "all_pairs", lambda *a, **k: {"pairs": 240, "unreachable": []})
    em = _Em()
    net = type("Net", (), {"g": g, "em": em, "ctl": _Ctl()})()
    fault = chaos.Fault("gray", ("a1", "c1"), gap_s=0.0, hold_s=0.1)
    with Progress(1, "faults", stream=io.StringIO()) as progress:
        injector = chaos.Injector(net, [fault], progress, log=lambda m: None)
        injector.go()
        time.sleep(0.5)     # injected, and the controller still looking when traffic ends
        (rec,) = injector.finish()
    assert em.calls == [("a1", "c1", True), ("a1", "c1", False)]
    assert rec["detect_s"] is None and 0.3 < rec["traffic_ended_s"] < 1.5, rec
    rep = chaos.report([rec], {"flows_total": 1, "flows_completed": 1}, {})
    assert rep["faults"]["gray"]["detected"] == 0 and rep["faults"]["gray"]["ended_first"] == 1
    assert "traffic ended before the controller could see them (not missed): gray 1" \
        in chaos.report_md(rep)


def test_a_gray_link_busy_only_the_way_it_does_not_drop_is_idle_and_a_slow_one_is_not():
    """Chaos seed 5 under hedera: a8-c3 made gray at 'utilization 0.06' (the busier way)
    was not found. If the busy way is c3 -> a8, then a8 -> c3, the direction whose far end
    drops jumbo frames, carries only their acknowledgements, which pass: nothing shows it,
    nor does it harm anything. A slow link is cut both ways: its busier one counts."""
    assert doctest.testmod(chaos).failed == 0
    g = build("fattree", k=4)
    a8, c3 = g.nodes["a8"]["dpid"], g.nodes["c3"]["dpid"]
    loads = [{"src": a8, "dst": c3, "utilization": 0.0004},
             {"src": c3, "dst": a8, "utilization": 0.3}]
    recs = []
    for kind in ("gray", "slow"):
        fault = chaos.Fault(kind, ("a8", "c3"), 1.0, 1.0)
        recs.append({"kind": kind, "injected": True, "detect_s": None,
                     "utilization": chaos.failing_utilization(g, loads, fault),
                     "reachability": {"pairs": 240, "unreachable": []}})
    assert [r["utilization"] for r in recs] == [0.0004, 0.3]
    rep = chaos.report(recs, {"flows_total": 1, "flows_completed": 1}, {})
    assert rep["faults"]["gray"]["idle"] == 1 and rep["faults"]["slow"]["idle"] == 0
    # A link the controller has no load for says nothing either way.
    assert chaos.failing_utilization(g, [], chaos.Fault("gray", ("a8", "c3"), 1, 1)) is None


class _PortCtl(_Ctl):
    """:class:`_Ctl` that also answers port statistics: ``dropped`` packets counted at
    every port so far (each call to ``step`` adds ``rate``)."""

    def __init__(self, rate):
        self.dropped, self.rate = 5, rate

    def step(self):
        self.dropped += self.rate

    def get(self, path, timeout=None):
        if path.startswith("/stats/port/"):
            dpid = path.split("/")[3]
            return {dpid: [{"tx_dropped": self.dropped, "rx_dropped": self.dropped}]}
        return super().get(path, timeout)


@pytest.mark.parametrize("rate, idle", [(0, 1), (3, 0)])
def test_a_gray_link_missed_that_dropped_nothing_while_it_failed_counts_as_idle(
        monkeypatch, rate, idle):
    """Chaos seed 5 under hedera, measured: a8-c3 made gray 'at 0.078' (a smoothed rate
    from before) carried nothing but probes while it failed, its traffic gone: not a miss.
    One that dropped packets and was not found is one."""
    g = build("fattree", k=4)
    monkeypatch.setitem(chaos.DETECT_TIMEOUT_S, "gray", 0.3)
    monkeypatch.setattr(chaos, "all_pairs", lambda *a, **k: {"pairs": 240, "unreachable": []})
    ctl = _PortCtl(rate)
    em = _Em()
    em.gray_link = lambda u, v, on: ctl.step()
    net = type("Net", (), {"g": g, "em": em, "ctl": ctl})()
    fault = chaos.Fault("gray", ("a8", "c3"), gap_s=0.0, hold_s=0.1)
    with Progress(1, "faults", stream=io.StringIO()) as progress:
        injector = chaos.Injector(net, [fault], progress, log=lambda m: None)
        injector.go()
        deadline = time.monotonic() + 10.0
        while not (injector.records and "repair_s" in injector.records[0]) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        (rec,) = injector.finish()
    assert rec["detect_s"] is None and rec["dropped"] == rate, rec
    rec["utilization"] = 0.078
    rep = chaos.report([rec], {"flows_total": 1, "flows_completed": 1}, {})
    assert rep["faults"]["gray"]["idle"] == idle


def test_every_fault_is_a_milestone_even_when_the_traffic_ends_first():
    g = build("fattree", k=4)
    faults = chaos.plan(g, 7, 3)
    out = io.StringIO()
    net = type("Net", (), {"g": g, "em": None, "ctl": None})()  # never touched: no fault runs
    with Progress(len(faults), "faults", stream=out) as progress:
        injector = chaos.Injector(net, faults, progress)
        injector.go()
        records = injector.finish()
    assert [r["injected"] for r in records] == [False] * 3
    assert out.getvalue().splitlines() == [
        f"[{i}/3] {f.name()}: not injected (the traffic ended)" for i, f in enumerate(faults, 1)]


def test_a_bad_kind_is_one_clear_error():
    r = subprocess.run([sys.executable, "-m", "fabric.chaos", "--kinds", "link,meteor",
                        "--soak", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "kinds must be some of" in lines[0] and "meteor" in lines[0]


@pytest.mark.emulation
def test_link_and_switch_faults_during_traffic_lose_nothing_and_leave_nothing(
        tmp_path, clean_machine):
    spec = specs.check({
        "name": "chaos-short", "topology": {"name": "fattree", "params": {"k": 4}},
        "policy": "ecmp", "timeout_s": 180,
        "workload": {"name": "moe_alltoall",
                     "params": {"tokens_per_host": 1536, "schedule": "shift",
                                "channels": 3}}})
    g = build("fattree", k=4)
    faults = [f for f in chaos.plan(g, 3, 40, kinds=["link", "switch"], gap_s=(0.5, 1.0),
                                    hold_s=(2.0, 3.0))]
    faults = [next(f for f in faults if f.kind == "link"),
              next(f for f in faults if f.kind == "switch")]
    rep = chaos.chaos_run(spec, faults, str(tmp_path), log=print)
    assert rep["flows_lost"] == 0 and rep["flows_attempted"] == 240
    for kind in ("link", "switch"):
        k = rep["faults"][kind]
        assert k["injected"] == k["detected"] == k["recovered"] == 1, rep["records"]
        assert k["repair_s"] is not None and not k["errors"]
    assert rep["reachability_checks"] == rep["reachability_passed"] == 2
    assert rep["leftovers"] == {}
    # The controller's view of the links over the run saw the traffic (and the report
    # drew it).
    links = list(csv.DictReader((tmp_path / "traffic" / "links.csv").open()))
    assert max(float(x["utilization"]) for x in links if float(x["t_s"]) > 0) > 0.3


@pytest.mark.emulation
def test_runs_interrupted_by_every_signal_leave_nothing_after_make_clean(tmp_path,
                                                                        clean_machine):
    spec = tmp_path / "soak.yaml"
    spec.write_text("name: soak\ntopology: {name: fattree, params: {k: 4}}\npolicy: ecmp\n"
                    "workload: {name: moe_alltoall, params: {tokens_per_host: 256}}\n"
                    "timeout_s: 60\n")
    # A run takes well over 6 s (start, bring-up, traffic): every one is interrupted.
    s = chaos.soak(str(spec), 3, 5, str(tmp_path), max_wait_s=6.0,
                   signals=(signal.SIGINT, signal.SIGTERM, signal.SIGKILL))
    assert s["signals"] == {"SIGINT": 1, "SIGTERM": 1, "SIGKILL": 1}, s
    # Ctrl-C and SIGTERM unwind (exit 130), also when the tests run as a background job
    # (which ignores SIGINT: the soak gives its runs SIGINT back).
    assert s["exits"] == [130, 130, -signal.SIGKILL], s
    assert s["leftovers"] == {}
    assert s["next_run_ok"], s["next_run_error"]
