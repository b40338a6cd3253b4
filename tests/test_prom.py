"""The Prometheus exporter (controllers/prom.py) against a real routing core and driver.

The core discovers a k=4 fat-tree as in tests/test_core.py, the driver runs statistics rounds
and the congestion policy learns, places and reroutes flows; the exposition must say what the
core, the driver and the app's counters say. Then the launcher serves it over HTTP, and a
port already taken stops the controller with one line naming the option. Pure but the last
two (a real controller process, no switch).
"""

import collections
import json
import os
import re
import socket
import subprocess
import sys
import time
import types
import urllib.request

import pytest
from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

from controllers import prom
from controllers.core import RoutingCore
from controllers.driver import FabricDriver
from controllers.rules import FlowStatsRequest, PortStatsRequest
from fabric.controller import free_port
from fabric.model import host_switch
from promscrape import by_label, samples, value
from topologies import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def congested_fabric():
    """A k=4 fat-tree under ``congestion`` with flows learned, a statistics round closed with
    load on one link, and a link cut under a pinned flow; the app's side stood in for."""
    g = build("fattree", k=4)
    core = RoutingCore(policy="congestion")
    core.load_fabric(g)
    core.flush(0.0)
    driver = FabricDriver(core, stats_interval_s=1.0, lldp_interval_s=2.0)
    for i, (a, b) in enumerate([("h1", "h16"), ("h2", "h15"), ("h3", "h9"), ("h5", "h12")]):
        sw, port = host_switch(g, a)
        key = (g.nodes[a]["ip"], g.nodes[b]["ip"], 6, 40000 + i, 5001)
        driver.packet_in_flow(g.nodes[sw]["dpid"], port, key, g.nodes[a]["mac"],
                              g.nodes[b]["mac"], b"", 0.5)
    e1, a1 = g.nodes["e1"]["dpid"], g.nodes["a1"]["dpid"]
    up = g.edges["e1", "a1"]["ports"]["e1"]
    driver.tick(0.0)  # the first round is due one interval later
    for now, tx_bytes in ((1.0, 0), (2.0, 10 ** 9)):
        msgs, _ = driver.tick(now)
        for req in [m for m in msgs if isinstance(m, (PortStatsRequest, FlowStatsRequest))]:
            rows = [(up, tx_bytes)] if (req.dpid, isinstance(req, PortStatsRequest)) == (
                e1, True) else []
            driver.stats_reply(req.dpid, req.xid, rows, now)
    (flow,) = [f for f in core.flows.values() if f.src == g.nodes["h1"]["mac"]]
    u, v = flow.path[1], flow.path[2]  # aggregation -> core: e1's measured uplink stays
    driver.port_status(u, core.topo.adj[u][v], False, 2.5)
    app = types.SimpleNamespace(core=core, driver=driver, datapaths={e1: None, a1: None},
                                counters=collections.Counter(openflow_errors=3),
                                errors_by_switch=collections.Counter({str(e1): 2, "?": 1}))
    return g, app


def test_exposition_equals_the_core_driver_and_app_counters():
    g, app = congested_fabric()
    metrics = prom.FabricMetrics(app)
    app.metrics = metrics
    e1, a1 = g.nodes["e1"]["dpid"], g.nodes["a1"]["dpid"]
    for dpid in (e1, a1, e1):
        metrics.connected(dpid)
    metrics.disconnected(e1)
    for seconds in (2e-4, 3e-3, 0.2):
        metrics.packet_in(a1, seconds)
    dp = types.SimpleNamespace(id=e1, ofproto=ofproto_v1_3, ofproto_parser=ofproto_v1_3_parser)
    serialized = prom.counted_flowmsgs(lambda _, dp, msg: [
        ofproto_v1_3_parser.OFPFlowMod(dp), ofproto_v1_3_parser.OFPGroupMod(dp),
        ofproto_v1_3_parser.OFPBarrierRequest(dp)])
    serialized(app, dp, None)
    scraped = samples(metrics.exposition())

    counters = app.core.status()["counters"]
    assert counters["flow_placements"] >= 4 and counters["flows_rerouted"] >= 1
    for key, name, _ in prom.CORE_COUNTERS:
        assert value(scraped, name + "_total") == counters.get(key, 0), name
    assert value(scraped, "fabric_learned_flows") == counters["flows"] == 4
    assert value(scraped, "fabric_pinned_flows") == counters["pinned_flows"]
    assert value(scraped, "fabric_elephant_flows") == counters["elephants"]
    assert value(scraped, "fabric_stats_rounds_total") == app.driver.counters["stats_rounds"] == 2
    assert value(scraped, "fabric_policy_info", policy="congestion") == 1
    status = app.driver.status()
    for name in ("switches", "links", "hosts", "rules", "groups"):
        assert value(scraped, f"fabric_{name}") == status[name], name

    assert by_label(scraped, "of_dp_connections_total", "dpid") == {
        "0x%x" % e1: 2, "0x%x" % a1: 1}
    assert by_label(scraped, "of_dp_disconnections_total", "dpid") == {"0x%x" % e1: 1}
    assert by_label(scraped, "of_packet_ins_total", "dpid") == {"0x%x" % a1: 3}
    assert by_label(scraped, "of_flowmsgs_sent_total", "dpid") == {"0x%x" % e1: 2}
    assert by_label(scraped, "of_errors_total", "dpid") == {"0x%x" % e1: 2, "unknown": 1}
    assert value(scraped, "of_dp_connected") == 2
    assert value(scraped, "fabric_packet_in_service_seconds_count") == 3
    assert value(scraped, "fabric_packet_in_service_seconds_sum") == pytest.approx(0.2032)
    assert value(scraped, "fabric_packet_in_service_seconds_bucket", le="0.001") == 1

    loads = app.core.link_loads()
    rates = {(dict(k)["src"], dict(k)["dst"]): v for (n, k), v in scraped.items()
             if n == "fabric_link_rate_bits_per_second"}
    assert len(rates) == len(loads) == 62  # 64 directed links, one cut
    for link in loads:
        key = ("0x%x" % link["src"], "0x%x" % link["dst"])
        assert rates[key] == link["rate_bps"]
        assert value(scraped, "fabric_link_utilization_ratio", src=key[0], dst=key[1]) == \
            link["utilization"]
    assert max(rates.values()) > 0


def test_a_round_is_timed_only_when_the_reply_closes_it():
    g, app = congested_fabric()
    app.metrics = prom.FabricMetrics(app)

    def reply(app, ev):
        if ev == "last":
            app.driver.counters["stats_rounds"] += 1
    handler = prom.timed_round(reply)
    for ev in ("part", "part", "last", "part"):
        handler(app, ev)
    scraped = samples(app.metrics.exposition())
    assert value(scraped, "fabric_stats_round_seconds_count") == 1


def _launcher(*args):
    return subprocess.Popen([sys.executable, "-m", "controllers.launcher",
                             "--ofp-tcp-listen-port", str(free_port()),
                             "--wsapi-port", str(free_port()), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_controller_serves_metrics_on_its_own_port():
    port = free_port()
    p = _launcher("--fabric-metrics-port", str(port), "--fabric-policy", "hedera")
    try:
        text = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                    text = r.read()
                break
            except OSError:
                time.sleep(0.1)
        assert text is not None, "metrics endpoint never answered"
    finally:
        p.terminate()
        p.communicate(timeout=10)
    scraped = samples(text)
    assert value(scraped, "fabric_policy_info", policy="hedera") == 1
    assert value(scraped, "fabric_switches") == 0 and value(scraped, "of_dp_connected") == 0


def test_a_metrics_port_in_use_stops_the_controller_naming_it():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = _launcher("--fabric-metrics-port", str(port))
        out, _ = p.communicate(timeout=60)
    assert p.returncode != 0
    assert f"--fabric-metrics-port {port}" in out.splitlines()[-1]


def test_the_grafana_dashboard_queries_only_exported_metrics():
    with open(os.path.join(ROOT, "docs", "grafana", "aifabric.json")) as f:
        dashboard = json.load(f)
    g, app = congested_fabric()
    metrics = prom.FabricMetrics(app)
    metrics.connected(1)
    metrics.disconnected(1)
    metrics.packet_in(1, 1e-3)
    metrics.sent(1, [ofproto_v1_3_parser.OFPFlowMod(None)])
    metrics.stats_round_seconds.observe(1e-3)
    exported = {name for name, _ in samples(metrics.exposition())}
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert dashboard["schemaVersion"] >= 36  # Grafana 9
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", ()):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            queried.update(re.findall(r"\b(?:of|fabric)_[a-z_]+", target["expr"]))
    assert queried and queried <= exported, queried - exported
    for metric in ("of_packet_ins_total", "of_flowmsgs_sent_total", "of_errors_total",
                   "of_dp_connections_total", "fabric_link_utilization_ratio",
                   "fabric_flow_placements_total", "fabric_flow_moves_total",
                   "fabric_flows_rerouted_total", "fabric_packet_in_service_seconds_bucket",
                   "fabric_stats_round_seconds_bucket"):
        assert metric in queried, metric
