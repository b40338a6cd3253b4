"""Integration: real Mininet, Open vSwitch, our Ryu controller and TCP agents (needs root)."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from fabric import cleanup
from fabric.controller import Controller
from fabric.emulate import Emulation, rate_scale
from fabric.reach import all_pairs
from fabric.runner import bring_up
from topologies import build

pytestmark = pytest.mark.emulation
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _ping_all(g, tmp_path, static_arp):
    with Controller(str(tmp_path / "controller.log")) as ctl:
        with Emulation(g, ctl.of_port, rate_scale(g, 10), static_arp=static_arp) as em:
            bring_up(g, ctl, em)
            result = all_pairs(g, em, rounds=1)
            status = ctl.get("/fabric/status")
    return result, status


def test_fattree_all_pairs_ping_through_controller_arp(tmp_path, clean_machine):
    g = build("fattree", k=4)
    result, status = _ping_all(g, tmp_path, static_arp=False)
    assert result["pairs"] == 240
    assert result["unreachable"] == [] and result["first_round_lost"] == 0
    assert status["switches"] == 20 and status["links"] == 32 and status["hosts"] == 16
    # ARP was answered by the controller, not flooded by the switches
    assert status["counters"].get("arp_replies", 0) > 0


def test_leafspine_all_pairs_ping(tmp_path, clean_machine):
    g = build("leafspine", leaves=4, spines=2, hosts_per_leaf=4, oversubscription=2.0)
    result, status = _ping_all(g, tmp_path, static_arp=True)
    assert result["unreachable"] == [] and result["first_round_lost"] == 0
    assert status["links"] == 8


def _spec(tmp_path, **over):
    spec = {
        "name": "itest", "seed": 3, "repeats": 1,
        "topology": {"name": "fattree", "params": {"k": 4}},
        "workload": {"name": "moe_alltoall",
                     "params": {"tokens_per_host": 64, "hidden": 1024, "top_k": 2,
                                "skew": 1.0}},
        "emulation": {"host_link_mbps": 20},
        "timeout_s": 60,
    }
    spec.update(over)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_small_alltoall_completes_every_flow(tmp_path, clean_machine):
    spec = _spec(tmp_path, baseline=True)
    # From another directory, results named relative to it (the controller and the agents
    # run in the package's directory: the paths they get must not be relative to ours).
    r = subprocess.run([PY, "-m", "fabric.runner", str(spec), "--results", "res"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr + r.stdout
    (run_dir,) = (tmp_path / "res").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("topology", "policy", "workload", "completion_time_s", "lower_bound_s",
                "efficiency", "algbw_gbps", "busbw_gbps", "flows_total", "flows_completed",
                "cpu_idle_min", "delay_emulated", "scale"):
        assert key in summary, key
    assert summary["topology"] == "fattree"
    assert summary["flows_completed"] == summary["flows_total"] > 0
    assert 0 < summary["efficiency"] <= 1.05
    assert set(summary["figures"]) == {"fattree", "nonblocking"}
    rows = list(csv.DictReader((run_dir / "flows.csv").open()))
    assert len(rows) == 2 * summary["flows_total"]
    assert all(r["completed"] == "True" and r["bytes_received"] == r["bytes"] for r in rows)
    assert "results:" in r.stdout and "efficiency" in r.stdout
    # The controller's view of every directed switch link over the run, and the report.
    links = list(csv.DictReader((run_dir / "runs" / "fattree-r1" / "links.csv").open()))
    assert {x["link"] for x in links} == {f"{u}>{v}" for a, b in _switch_links("fattree")
                                          for u, v in ((a, b), (b, a))}
    times = {float(x["t_s"]) for x in links}
    assert min(times) < 0 < max(times)  # connection set-up, then the run (too short here for
    # the smoothed rates to rise: tests/test_chaos.py checks them on a long run)
    assert all(0 <= float(x["utilization"]) <= 1.5 for x in links)
    report = (run_dir / "report.html").read_text()
    assert "fattree-r1-links.png" in report and "nonblocking-r1-timeline.png" in report


def test_interrupted_run_leaves_nothing(tmp_path, clean_machine):
    spec = _spec(tmp_path, workload={"name": "moe_alltoall",
                                     "params": {"tokens_per_host": 4096, "hidden": 4096}})
    # With SIGINT as Ctrl-C even when the tests run as a background job (which ignores it).
    p = subprocess.Popen([PY, "-u", "-m", "fabric.runner", str(spec), "--results",
                          str(tmp_path / "res")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True,
                         preexec_fn=cleanup.interruptible)
    out = []
    for line in p.stdout:
        out.append(line)
        if "ready in" in line:
            break
    time.sleep(3)  # agents are connected and transferring now
    assert p.poll() is None, "".join(out)
    p.send_signal(signal.SIGINT)
    rest, _ = p.communicate(timeout=120)
    assert p.returncode == 130, "".join(out) + rest
    assert "interrupted" in rest


def test_killed_run_is_cleaned_by_make_clean(tmp_path, clean_machine):
    spec = _spec(tmp_path, workload={"name": "moe_alltoall",
                                     "params": {"tokens_per_host": 4096, "hidden": 4096}})
    p = subprocess.Popen([PY, "-u", "-m", "fabric.runner", str(spec), "--results",
                          str(tmp_path / "res")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if "ready in" in line:
            break
    p.kill()
    p.wait()
    r = subprocess.run([PY, "-m", "fabric.cleanup"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and "cleanup:" in r.stdout, r.stdout + r.stderr


def test_an_emulation_starts_over_what_a_killed_run_left(tmp_path, clean_machine):
    """A run killed with SIGKILL (its controller, shells, bridges and veths stay, and the flow
    counter refresh it set in Open vSwitch) and a veth of one of our names that no record
    lists: the next emulation of the same fabric clears both, puts the setting back, and
    comes up whole, without `make clean` first."""
    spec = _spec(tmp_path, workload={"name": "moe_alltoall",
                                     "params": {"tokens_per_host": 4096, "hidden": 4096}},
                 emulation={"host_link_mbps": 20, "flow_counter_refresh_ms": 120})
    own = cleanup.ovs_config("max-revalidator")
    cleanup.set_ovs_config("max-revalidator", "777")   # an operator's own setting
    try:
        _killed_run_then_a_clean_one(tmp_path, spec)
        assert cleanup.ovs_config("max-revalidator") == "777"
    finally:
        cleanup.set_ovs_config("max-revalidator", own)


def _killed_run_then_a_clean_one(tmp_path, spec):
    p = subprocess.Popen([PY, "-u", "-m", "fabric.runner", str(spec), "--results",
                          str(tmp_path / "res")], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if "ready in" in line:
            break
    p.kill()
    p.wait()
    assert cleanup.ovs_config("max-revalidator") == "120"   # the killed run's
    assert any(i.startswith("a1-eth") for i in os.listdir("/sys/class/net"))
    subprocess.run(["ip", "link", "add", "c4-eth9", "type", "veth", "peer", "name", "a8-eth9"],
                   check=True)
    g = build("fattree", k=4)
    logged = []
    with Controller(str(tmp_path / "controller.log")) as ctl:
        with Emulation(g, ctl.of_port, rate_scale(g, 10), log=logged.append,
                       flow_counter_refresh_ms=90) as em:
            bring_up(g, ctl, em)
            status = ctl.get("/fabric/status")
            assert not os.path.exists("/sys/class/net/c4-eth9")
            assert cleanup.ovs_config("max-revalidator") == "90"
    assert status["switches"] == 20 and status["links"] == 32 and status["hosts"] == 16
    assert any("cleaned up after an earlier run" in line for line in logged), logged


@pytest.mark.parametrize("change, message", [
    ({"topology": {"name": "torus"}}, "unknown topology 'torus'"),
    ({"topology": {"name": "fattree", "params": {"k": 3}}}, "k must be an even integer"),
    ({"policy": "magic"}, "'policy' must be one of"),
    ({"repeats": 0}, "'repeats' must be an integer >= 1"),
    ({"workload": {"name": "moe_alltoall", "params": {"top_k": 99}}}, "top_k"),
])
def test_bad_spec_is_one_clear_error(tmp_path, change, message, clean_machine):
    spec = _spec(tmp_path, **change)
    r = subprocess.run([PY, "-m", "fabric.runner", str(spec)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.stderr
    assert str(spec) in lines[0]


def test_malformed_spec_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology: [unclosed\n")
    r = subprocess.run([PY, "-m", "fabric.runner", str(bad)], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "not valid YAML" in r.stderr and str(bad) in r.stderr


def test_mininet_custom_file_with_our_controller(tmp_path, clean_machine):
    """`mn --custom topologies/fattree.py --topo fattree,4` as Mininet users run it."""
    with Controller(str(tmp_path / "controller.log")) as ctl:
        # LLDP discovery takes a moment after the switches start: wait for all 32 links, as a
        # CLI user would look before pinging.
        wait = (f"for i in $(seq 100); do curl -s 127.0.0.1:{ctl.rest_port}/fabric/status "
                "| grep -q '\"links\": 32,' && break; sleep 0.2; done")
        r = subprocess.run(
            ["mn", "--custom", "topologies/fattree.py", "--topo", "fattree,4",
             "--switch", "ovs,datapath=user,protocols=OpenFlow13",
             "--controller", f"remote,ip=127.0.0.1,port={ctl.of_port}"],
            input=f"sh {wait}\npingall\npingall\nexit\n", cwd=ROOT, capture_output=True,
            text=True, timeout=300)
    # The first pingall has hosts learned through the controller's ARP, one pair racing a
    # route install at most; the second must be clean.
    results = [line for line in (r.stdout + r.stderr).splitlines() if "Results:" in line]
    assert len(results) == 2, r.stdout + r.stderr
    assert "0% dropped (240/240 received)" in results[1], results


def _switch_links(name):
    from fabric.model import is_host
    g = build(name, k=4)
    return [(u, v) for u, v in g.edges if not is_host(g, u) and not is_host(g, v)]
