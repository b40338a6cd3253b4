"""Integration of the routing policies: real Mininet, Open vSwitch, controller and agents.

One network per policy on a k=4 fat-tree: every host pair reaches every other and a small
all-to-all completes, with no OpenFlow message refused; two links that fail in the middle of a
transfer cost no flow, under every policy (with FAST_FAILOVER, and under shortest without it:
the controller's reroute alone); the REST API answers and refuses bad
requests with a 400 and a message. Kept small: the whole file runs in a few minutes.
"""

import json
import os
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from fabric import runner, spec as specs
from fabric.controller import REFERENCE_APPS
from fabric.reach import all_pairs
from controllers.core import POLICIES
from topologies import build
from traffic import workloads

pytestmark = pytest.mark.emulation

SMALL_ALLTOALL = {"name": "moe_alltoall",
                  "params": {"tokens_per_host": 32, "schedule": "shift", "channels": 3}}


def _spec(policy, **controller):
    return specs.check({"name": "itest", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": SMALL_ALLTOALL, "policy": policy,
                        "controller": controller, "timeout_s": 60})


def _alltoall(net, spec, run_dir, seed=1):
    schedule = workloads.build(spec["workload"]["name"], net.g, seed,
                               **spec["workload"]["params"])
    return runner.run_on(net, schedule, spec, str(run_dir))


@pytest.mark.parametrize("policy", POLICIES + tuple(REFERENCE_APPS))
def test_policy_connects_all_pairs_and_completes_an_alltoall(policy, tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = _spec(policy)
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        reach = all_pairs(g, net.em, rounds=2)
        result = _alltoall(net, spec, tmp_path / "run")
    assert reach["unreachable"] == []
    assert result["flows_completed"] == result["flows_total"] == 240
    if policy in REFERENCE_APPS:
        assert net.ready["convergence_s"] > 0
        return
    status = result["controller"]
    assert status["policy"] == policy and status["openflow_errors"] == 0
    if policy == "collective":
        assert result["intent"]["state"] == "installed" and result["intent"]["flows"] == 240
        assert status["counters"]["intents"] == 0  # withdrawn after the run
    elif policy in ("congestion", "hedera"):
        assert status["counters"]["flows_learned"] >= 240


@pytest.mark.parametrize("policy,fast_failover", [
    ("ecmp", True), ("congestion", True), ("hedera", True), ("collective", True),
    ("shortest", False)])
def test_link_failure_during_a_transfer_loses_no_flow(policy, fast_failover, tmp_path,
                                                      clean_machine):
    g = build("fattree", k=4)
    spec = _spec(policy, fast_failover=fast_failover)
    spec["workload"]["params"]["tokens_per_host"] = 384  # seconds of traffic
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        def fail_links():
            # Once the controller sees the transfer under way (its statistics show load):
            net.ctl.wait_status(lambda s: s["utilization"]["max"] > 0.2, 30, "traffic")
            for intf in ("a1-eth3", "e4-eth3"):  # aggregation -> core, edge -> aggregation
                subprocess.run(["ip", "link", "set", intf, "down"], check=True)
        failer = threading.Thread(target=fail_links)
        failer.start()
        result = _alltoall(net, spec, tmp_path / "run")
        failer.join()
        status = net.ctl.get("/fabric/status")
    assert result["flows_completed"] == result["flows_total"] == 240
    assert status["links"] == 30 and status["openflow_errors"] == 0


def _call(port, method, path, body=None, raw=None):
    """(HTTP status, decoded JSON answer) of one REST request."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_rest_api_answers_and_rejects_bad_requests(tmp_path, clean_machine):
    g = build("fattree", k=4)
    h1, h16 = g.nodes["h1"], g.nodes["h16"]
    with runner.network(g, _spec("collective"), str(tmp_path / "net"), lambda m: None) as net:
        port = net.ctl.rest_port

        code, status = _call(port, "GET", "/fabric/status")
        assert code == 200 and status["switches"] == 20 and status["hosts"] == 16
        code, topo = _call(port, "GET", "/fabric/topology")
        assert code == 200 and len(topo["switches"]) == 20 and len(topo["hosts"]) == 16
        assert len(topo["links"]) == 64 and {"rate_bps", "utilization"} <= set(topo["links"][0])
        code, paths = _call(port, "GET", f"/fabric/paths?src={h1['ip']}&dst={h16['mac']}")
        assert code == 200 and len(paths["paths"]) == 4  # k/2 squared between pods
        code, counters = _call(port, "GET", "/fabric/counters")
        assert code == 200 and counters["controller"]["packet_ins"] > 0

        flows = [{"src": h1["ip"], "dst": h16["ip"], "bytes": 10 ** 6,
                  "flow": [h1["ip"], h16["ip"], 6, 40000, 5001]}]
        code, intent = _call(port, "POST", "/fabric/intents", {"id": "job1", "flows": flows})
        assert code == 200 and intent["state"] == "installed" and intent["unplaced"] == 0
        code, intent = _call(port, "GET", "/fabric/intents/job1")
        assert code == 200 and intent["flows"] == 1
        code, paths = _call(port, "GET", f"/fabric/paths?src={h1['ip']}&dst={h16['ip']}"
                                         f"&proto=6&sport=40000&dport=5001")
        assert code == 200 and len(paths["paths"]) == 1  # pinned by the intent
        assert _call(port, "DELETE", "/fabric/intents/job1")[0] == 200

        code, answer = _call(port, "PUT", "/fabric/policy", {"policy": "hedera"})
        assert code == 200 and answer["policy"] == "hedera"
        assert _call(port, "GET", "/fabric/policy")[1]["policy"] == "hedera"

        code, switches = _call(port, "GET", "/stats/switches")
        assert code == 200 and switches == list(range(1, 21))
        code, flow_stats = _call(port, "GET", "/stats/flow/1")
        assert code == 200 and flow_stats["1"] and "byte_count" in flow_stats["1"][0]
        code, port_stats = _call(port, "GET", "/stats/port/1")
        assert code == 200 and {p["port_no"] for p in port_stats["1"]} >= {1, 2, 3, 4}

        bad = [
            ("PUT", "/fabric/policy", None, b"{not json", "not JSON"),
            ("PUT", "/fabric/policy", {"policy": "magic"}, None, "unknown policy 'magic'"),
            ("PUT", "/fabric/policy", {"name": "ecmp"}, None, "expected"),
            ("GET", "/fabric/paths?src=10.9.9.9&dst=10.0.0.1", None, None, "unknown host"),
            ("GET", "/fabric/paths?src=10.0.0.1", None, None, "'dst'"),
            ("POST", "/fabric/intents", {"id": "x", "flows": flows}, None, "collective"),
            ("GET", "/stats/flow/zz", None, None, "dpid must be an integer"),
            ("GET", "/stats/port/99", None, None, "unknown switch 99"),
        ]
        for method, path, body, raw, message in bad:
            code, answer = _call(port, method, path, body, raw)
            assert code == 400 and message in answer["error"], (path, answer)
        _call(port, "PUT", "/fabric/policy", {"policy": "collective"})
        for body, message in (({"id": "x", "flows": [dict(flows[0], dst="10.9.9.9")]},
                               "unknown host '10.9.9.9'"),
                              ({"flows": flows}, "expected"),
                              ({"id": "x", "flows": "nonsense"}, "list")):
            code, answer = _call(port, "POST", "/fabric/intents", body)
            assert code == 400 and message in answer["error"], answer
        code, answer = _call(port, "GET", "/fabric/intents/nope")
        assert code == 400 and "unknown intent" in answer["error"]
        assert net.ctl.get("/fabric/status")["openflow_errors"] == 0
        assert os.path.exists(net.ctl.log_path)
