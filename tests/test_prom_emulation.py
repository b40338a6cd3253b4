"""The controller's Prometheus metrics during and after a real run: Mininet, Open vSwitch,
our controller under ``congestion`` and a small all-to-all on a k=4 fat-tree.

``/metrics`` is scraped with a real HTTP GET on the port fabric/controller.py gave the
controller, and what it says is checked against the REST API: counters that only grow lie
between ``/fabric/counters`` read just before and just after the scrape, and the link
metrics name every directed switch link of ``/fabric/topology`` with its values.
"""

import threading
import urllib.request

import pytest

from fabric import runner, spec as specs
from promscrape import by_label, samples, value
from topologies import build
from traffic import workloads

pytestmark = pytest.mark.emulation

SMALL_ALLTOALL = {"name": "moe_alltoall",
                  "params": {"tokens_per_host": 64, "schedule": "shift", "channels": 3}}


def scrape(ctl, keep=None):
    """The samples of one GET of /metrics (its text also written to ``keep``, if given)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.metrics_port}/metrics",
                                timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = r.read()
    if keep is not None:
        keep.write_bytes(text)
    return samples(text)


def test_metrics_agree_with_the_rest_api_after_an_alltoall(tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "prom", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": SMALL_ALLTOALL, "policy": "congestion", "timeout_s": 60})
    schedule = workloads.build("moe_alltoall", g, 1, **SMALL_ALLTOALL["params"])
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net:
        ctl = net.ctl
        during, done = [], threading.Event()

        def watch():  # the utilization Prometheus would have seen while traffic ran
            while not done.wait(0.5):
                during.append(max(by_label(scrape(ctl), "fabric_link_utilization_ratio",
                                           "src").values()))
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            result = runner.run_on(net, schedule, spec, str(tmp_path / "run"))
        finally:
            done.set()
            watcher.join()
        before, status = ctl.get("/fabric/counters"), ctl.get("/fabric/status")
        scraped = scrape(ctl, keep=tmp_path / "metrics.txt")
        after, status_after = ctl.get("/fabric/counters"), ctl.get("/fabric/status")
        for _ in range(10):  # a scrape between two equal topologies: no statistics round moved
            topology = ctl.get("/fabric/topology")
            at_once = scrape(ctl)
            if ctl.get("/fabric/topology") == topology:
                break
        else:
            pytest.fail("link loads changed between every pair of /fabric/topology reads")
    assert result["flows_completed"] == result["flows_total"] == 240

    def between(metric_total, section, key):
        # The REST counters name only what has happened (a Counter's keys): absent is 0.
        low, high = before[section].get(key, 0), after[section].get(key, 0)
        assert low <= metric_total <= high, (section, key, low, metric_total, high)

    packet_ins = by_label(scraped, "of_packet_ins_total", "dpid")
    between(sum(packet_ins.values()), "controller", "packet_ins")
    assert value(scraped, "fabric_packet_in_service_seconds_count") == sum(packet_ins.values())
    assert sum(by_label(scraped, "of_errors_total", "dpid").values()) == \
        before["controller"].get("openflow_errors", 0) == 0
    for key in ("flows_learned", "flow_placements", "flow_moves", "flows_rerouted",
                "flow_mods", "group_mods"):
        between(value(scraped, f"fabric_{key}_total"), "core", key)
    between(value(scraped, "fabric_stats_rounds_total"), "controller", "stats_rounds")
    assert value(scraped, "fabric_flows_learned_total") >= 240
    assert value(scraped, "fabric_flow_placements_total") > 0
    assert 0 < value(scraped, "fabric_stats_round_seconds_count") <= \
        value(scraped, "fabric_stats_rounds_total")

    switches = {"0x%x" % d for d in topology["switches"]}
    assert len(switches) == 20 and value(scraped, "of_dp_connected") == 20
    assert by_label(scraped, "of_dp_connections_total", "dpid") == dict.fromkeys(switches, 1)
    assert by_label(scraped, "of_dp_disconnections_total", "dpid") == {}
    sent = by_label(scraped, "of_flowmsgs_sent_total", "dpid")
    assert set(sent) == switches
    # The driver counts the rule and group changes it hands the app for connected switches
    # (status "install"); a switch's clearing is two more OpenFlow messages, at most once
    # per connection here.
    assert status["install"]["mods"] <= sum(sent.values()) <= \
        status_after["install"]["mods"] + 2 * len(switches)
    for name in ("switches", "links", "hosts"):
        assert value(scraped, f"fabric_{name}") == status[name]

    links = {("0x%x" % x["src"], "0x%x" % x["dst"]): x for x in topology["links"]}
    assert len(links) == 64
    for metric in ("fabric_link_utilization_ratio", "fabric_link_rate_bits_per_second",
                   "fabric_link_capacity_bits_per_second", "fabric_link_pinned_flows"):
        labelled = {(dict(k)["src"], dict(k)["dst"]) for (n, k), _ in scraped.items()
                    if n == metric}
        assert labelled == set(links), metric
    for (src, dst), link in links.items():
        for metric, key in (("fabric_link_capacity_bits_per_second", "capacity_bps"),
                            ("fabric_link_rate_bits_per_second", "rate_bps"),
                            ("fabric_link_utilization_ratio", "utilization"),
                            ("fabric_link_pinned_flows", "pinned_flows")):
            assert value(at_once, metric, src=src, dst=dst) == pytest.approx(link[key]), (
                metric, src, dst)
    assert during and max(during) > 0, during
