"""The live fabric view in a real browser during a real run: Mininet, Open vSwitch, our
controller under ``congestion`` on a k=4 fat-tree, steady UDP traffic between pods, and
Debian's headless Chromium driven by selenium (tests/browser.py).

The page is opened the way an operator opens it (``/fabric/view`` on the REST port) and
checked against the REST API:

- the drawn links are exactly the directed links of ``/fabric/topology``, and the
  utilization each was drawn with is what ``/fabric/topology`` said just before or just after
  the page's own read (one statistics round can fall between two reads, never two: each
  link's value is one of the two; the reads bracket a refresh the test asks for);
- each link's colour, as the browser computed it, is the colour of the legend bin of that
  utilization, and the page's legend is controllers/view.py's;
- the page refreshes by itself (no reload), shows the active policy and follows a change;
- switches sit in the model's layers (hosts lowest, core highest);
- clicking two hosts highlights exactly the links of ``/fabric/paths`` for that pair.

A screenshot is kept in the test's directory (docs/img/view.png is one of these).
"""

import subprocess
import time

import pytest
from selenium.webdriver.support.ui import Select

import browser
from controllers import view
from fabric import runner, spec as specs
from procs import stop, wait
from topologies import build

pytestmark = pytest.mark.emulation

# (client, server, Mbit/s per stream, streams): between pods, unequal, so links show several
# colours of the scale (host links are 20 Mbit/s in this spec).
TRAFFIC = (("h1", "h16", 4.0, 4), ("h2", "h13", 14.0, 1), ("h5", "h12", 5.0, 2),
           ("h9", "h3", 9.0, 1), ("h14", "h7", 3.0, 1))
PAIR = ("h1", "h16")      # clicked
SELECTED = ("h2", "h4")   # picked in the selects


def start_traffic(g, em):
    procs = []
    for client, server, mbps, streams in TRAFFIC:
        procs.append(em.host(server).popen(["iperf3", "-s", "-1"], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
    time.sleep(0.5)
    for client, server, mbps, streams in TRAFFIC:
        procs.append(em.host(client).popen(
            ["iperf3", "-c", g.nodes[server]["ip"], "-u", "-b", f"{mbps}M", "-l", "1200",
             "-P", str(streams), "-t", "60"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def bracketed(ctl, driver, path):
    """``(before, drawn, after)``: ``path`` read from the API, the page made to refresh and
    read, ``path`` read again; the page's own reads fall between the two."""
    before = ctl.get(path)
    browser.refresh(driver)
    drawn = browser.drawn_links(driver)
    return before, drawn, ctl.get(path)


def highlighted_paths(ctl, driver, src, dst):
    """The paths of ``/fabric/paths`` for a pair, checked to be what the page highlights
    (read between two equal answers: a policy can move the pair meanwhile)."""
    query = f"/fabric/paths?src={src}&dst={dst}"
    for _ in range(10):
        before, drawn, after = bracketed(ctl, driver, query)
        if before["paths"] == after["paths"]:
            break
    else:
        pytest.fail(f"the paths of {src} -> {dst} changed across every bracket")
    on_path = {link for p in before["paths"] for link in zip(p, p[1:])}
    assert on_path and on_path <= set(drawn)
    assert {link for link, d in drawn.items() if d["on_path"]} == on_path
    return before["paths"]


def directed(topology):
    return {(x["src"], x["dst"]): x for x in topology["links"]}


def test_the_live_view_draws_what_the_controller_says(tmp_path, clean_machine):
    g = build("fattree", k=4)
    spec = specs.check({"name": "view", "topology": {"name": "fattree", "params": {"k": 4}},
                        "workload": "moe_alltoall", "policy": "congestion", "timeout_s": 60})
    dpid = {n: d["dpid"] for n, d in g.nodes(data=True) if d["role"] != "host"}
    with runner.network(g, spec, str(tmp_path / "net"), lambda m: None) as net, \
            browser.chromium() as driver:
        ctl, em = net.ctl, net.em
        procs = start_traffic(g, em)
        try:
            driver.get(f"http://127.0.0.1:{ctl.rest_port}/fabric/view")
            driver.execute_script("window.loadedOnce = true;")   # gone if the page reloads
            wait("the page drawing 64 links",
                 lambda: len(browser.drawn_links(driver)) == 64, 20)
            wait("traffic on the drawing",
                 lambda: max(x["util"] for x in browser.drawn_links(driver).values()) > 0.1,
                 20)

            # Live: it refreshes by itself, about once a second.
            fabric = driver.find_element("id", "fabric")
            count = int(fabric.get_attribute("data-refreshes"))
            time.sleep(4.5)
            assert int(fabric.get_attribute("data-refreshes")) >= count + 2

            # The legend is controllers/view.py's, swatches drawn in its colours.
            shown = browser.legend(driver)
            assert [(lo, hi, c) for lo, hi, c, _ in shown] == \
                [(b["lo"], b["hi"], b["colour"]) for b in view.legend()]
            assert all(swatch == browser.rgb(c) for _, _, c, swatch in shown)

            # Links and colours against /fabric/topology.
            seen_colours, exact = set(), 0
            for _ in range(8):
                before, drawn, after = bracketed(ctl, driver, "/fabric/topology")
                before, after = directed(before), directed(after)
                assert set(drawn) == set(before) == set(after)
                for link, d in drawn.items():
                    assert d["util"] in (before[link]["utilization"],
                                         after[link]["utilization"]), (link, d, before[link],
                                                                       after[link])
                    bins = [c for lo, hi, c, _ in shown
                            if lo <= d["util"] and (hi is None or d["util"] < hi)]
                    assert bins == [d["colour"]] == [view.colour_for(d["util"])], (link, d)
                    assert d["stroke"] == browser.rgb(d["colour"]), (link, d)
                    seen_colours.add(d["colour"])
                exact += before == after
                time.sleep(0.3)
            assert exact >= 1, "a statistics round fell inside every bracket"
            assert len(seen_colours) >= 3, seen_colours

            # Layers: hosts at the bottom, then edge, aggregation, core (SVG y grows down).
            ys = driver.execute_script(
                "const out = {};"
                "for (const e of document.querySelectorAll('#fabric .switch'))"
                "  out['s' + e.dataset.dpid] = Number(e.querySelector('rect').getAttribute('y'))"
                "    + Number(e.querySelector('rect').getAttribute('height')) / 2;"
                "for (const e of document.querySelectorAll('#fabric .host'))"
                "  out[e.dataset.ip] = Number(e.querySelector('circle').getAttribute('cy'));"
                "return out;")
            row_y = {}
            for n, d in g.nodes(data=True):
                key = d["ip"] if d["role"] == "host" else f"s{d['dpid']}"
                row_y.setdefault(-1 if d["role"] == "host" else d["layer"], set()).add(ys[key])
            assert all(len(y) == 1 for y in row_y.values()), row_y
            heights = [row_y[layer].pop() for layer in sorted(row_y)]
            assert heights == sorted(heights, reverse=True) and len(set(heights)) == 4

            assert driver.find_element("id", "policy").text == "congestion" == \
                ctl.get("/fabric/policy")["policy"]

            # A host pair picked by clicking: the paths of /fabric/paths, nothing else.
            src, dst = (g.nodes[h]["ip"] for h in PAIR)
            for ip in (src, dst):
                browser.click(driver, f"#fabric .host[data-ip='{ip}'] circle")
                browser.refresh(driver)
            assert driver.find_element("id", "src").get_attribute("value") == src
            assert driver.find_element("id", "dst").get_attribute("value") == dst
            paths = highlighted_paths(ctl, driver, src, dst)
            # Different pods: up to a core and down, over as many cores as the policy spreads.
            assert 2 <= len(paths) <= 4 and all(len(p) == 5 for p in paths), paths
            assert all(p[0] == dpid["e1"] and p[-1] == dpid["e8"] for p in paths)
            driver.find_element("tag name", "body").screenshot(str(tmp_path / "view.png"))

            # Or picked with the selects: within a pod this time.
            src, dst = (g.nodes[h]["ip"] for h in SELECTED)
            for which, ip in (("src", src), ("dst", dst)):
                Select(driver.find_element("id", which)).select_by_value(ip)
            paths = highlighted_paths(ctl, driver, src, dst)
            assert all(len(p) == 3 and p[1] in (dpid["a1"], dpid["a2"]) for p in paths), paths

            # The page follows a change of policy, without reloading.
            ctl.request("PUT", "/fabric/policy", {"policy": "ecmp"})
            wait("the new policy on the page",
                 lambda: driver.find_element("id", "policy").text == "ecmp", 5)
            assert driver.execute_script("return window.loadedOnce === true;")
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == []
        finally:
            for p in procs:
                stop(p)
    assert (tmp_path / "view.png").stat().st_size > 10_000
