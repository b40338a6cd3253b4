"""The live fabric view without an emulation: its layering and colour scale
(controllers/view.py), the routes that serve it (controllers/rest.py) from a real controller,
and the page in headless Chromium against a controller that requires a REST token.

The page during a real run is tested in tests/test_view_emulation.py.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import browser
from controllers import view
from fabric.controller import free_port
from fabric.model import host_switch, hosts, switches
from topologies import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def switch_links(g):
    dpid = {n: g.nodes[n]["dpid"] for n in switches(g)}
    return [(dpid[u], dpid[v]) for u, v in g.edges if u in dpid and v in dpid]


def known_hosts(g):
    out = []
    for h in hosts(g):
        sw, port = host_switch(g, h)
        out.append({"mac": g.nodes[h]["mac"], "ip": g.nodes[h]["ip"],
                    "dpid": g.nodes[sw]["dpid"], "port": port})
    return out


# -- the colour scale --------------------------------------------------------------------------
def test_the_scale_has_ten_bins_from_0_to_100_percent_each_its_own_colour():
    bins = view.legend()
    assert [b["lo"] for b in bins] == [i / 10 for i in range(10)]
    assert [b["hi"] for b in bins] == [i / 10 for i in range(1, 10)] + [None]
    assert len({b["colour"] for b in bins}) == 10


@pytest.mark.parametrize("util, index", [(0.0, 0), (0.0999, 0), (0.1, 1), (0.3, 3),
                                         (0.7, 7), (0.8999, 8), (0.9, 9), (1.0, 9),
                                         (2.5, 9), (-0.01, 0)])
def test_a_utilization_gets_the_colour_of_its_bin_edges_included_below(util, index):
    assert view.colour_for(util) == view.legend()[index]["colour"]


# -- layers ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, params", [("fattree", {"k": 4}), ("fattree", {"k": 6}),
                                          ("leafspine", {"leaves": 4, "spines": 2,
                                                         "hosts_per_leaf": 2}),
                                          ("rail", {})])
def test_distance_from_hosts_finds_the_layers_the_model_gives(name, params):
    g = build(name, **params)
    found = view.switch_layers([g.nodes[s]["dpid"] for s in switches(g)], switch_links(g),
                               [h["dpid"] for h in known_hosts(g)])
    assert found == {g.nodes[s]["dpid"]: g.nodes[s]["layer"] for s in switches(g)}


def test_the_model_layer_wins_and_a_switch_no_host_reaches_is_in_layer_0():
    # 1 - 2 - 3 with a host at 1; 4 alone; the model puts 2 at layer 7.
    assert view.switch_layers([1, 2, 3, 4], [(1, 2), (2, 1), (2, 3)], [1], {2: 7}) == \
        {1: 0, 2: 7, 3: 2, 4: 0}


def test_a_fat_tree_is_drawn_hosts_edge_aggregation_core_and_hosts_under_their_switch():
    g = build("fattree", k=4)
    dpids = [g.nodes[s]["dpid"] for s in switches(g)]
    out = view.layout(dpids, switch_links(g), known_hosts(g), view.model_view(g))
    assert out["layered_by"] == "model" and out["legend"] == view.legend()
    assert [r["label"] for r in out["rows"]] == ["hosts", "edge", "aggregation", "core"]
    names = [[n["name"] for n in r["nodes"]] for r in out["rows"]]
    assert names[0] == [f"h{i}" for i in range(1, 17)]
    assert names[1] == [f"e{i}" for i in range(1, 9)]
    assert names[2] == [f"a{i}" for i in range(1, 9)]
    assert sorted(names[3]) == ["c1", "c2", "c3", "c4"]
    edge_at = {n["dpid"]: i for i, n in enumerate(out["rows"][1]["nodes"])}
    host_switches = [edge_at[n["dpid"]] for n in out["rows"][0]["nodes"]]
    assert host_switches == sorted(host_switches)   # never a host left of its neighbour's
    assert {n["ip"] for n in out["rows"][0]["nodes"]} == {g.nodes[h]["ip"] for h in hosts(g)}


def test_without_a_model_layers_come_from_distance_and_switches_are_named_by_dpid():
    g = build("leafspine", leaves=4, spines=2, hosts_per_leaf=2)
    dpids = [g.nodes[s]["dpid"] for s in switches(g)]
    out = view.layout(dpids, switch_links(g), known_hosts(g))
    assert out["layered_by"] == "distance"
    assert [r["label"] for r in out["rows"]] == ["hosts", "edge / leaf", "core / spine"]
    leaves = {g.nodes[s]["dpid"] for s in switches(g) if g.nodes[s]["role"] == "leaf"}
    assert {n["dpid"] for n in out["rows"][1]["nodes"]} == leaves
    assert all(n["name"] == f"s{n['dpid']}" for r in out["rows"][1:] for n in r["nodes"])
    assert all(n["name"] == n["ip"] for n in out["rows"][0]["nodes"])


def test_an_empty_controller_has_one_empty_row():
    out = view.layout([], [], [])
    assert out["rows"] == [{"label": "hosts", "nodes": []}] and out["layered_by"] == "distance"


# -- the routes and the page, from a real controller ---------------------------------------------
def _get(port, path, token=None):
    """``(status, content type, body)`` of a GET (with a bearer token if given)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read()


@pytest.fixture
def controller_with_token(tmp_path):
    """A controller (no switches) whose REST API requires the token ``s3cret``; its port."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    port = free_port()
    with open(tmp_path / "controller.txt", "wb") as log:
        p = subprocess.Popen(
            [sys.executable, "-m", "controllers.launcher", "--ofp-tcp-listen-port",
             str(free_port()), "--wsapi-port", str(port), "--fabric-rest-token-file",
             str(token), "--fabric-policy", "shortest"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(200):
                try:
                    _get(port, "/fabric/status")
                    break
                except OSError:
                    time.sleep(0.1)
            yield port
        finally:
            p.terminate()
            p.wait(timeout=10)


def test_the_page_and_its_files_need_no_token_and_its_data_does(controller_with_token):
    port = controller_with_token
    status, kind, page = _get(port, "/fabric/view")
    assert status == 200 and kind.startswith("text/html") and b"view/static/view.js" in page
    for name, kind_of in (("view.js", "text/javascript"), ("view.css", "text/css")):
        status, kind, body = _get(port, f"/fabric/view/static/{name}")
        assert status == 200 and kind.startswith(kind_of) and len(body) > 500, name
    status, _, body = _get(port, "/fabric/view/static/app.py")
    assert status == 404 and "view.js" in json.loads(body)["error"]
    assert _get(port, "/fabric/view/static/..%2Fapp.py")[0] == 404
    assert _get(port, "/fabric/view/layout")[0] == 401
    assert _get(port, "/fabric/view/layout", "wrong")[0] == 401
    status, _, body = _get(port, "/fabric/view/layout", "s3cret")
    assert status == 200 and json.loads(body) == view.layout([], [], [])


def test_the_page_takes_its_token_from_the_url_fragment_and_asks_for_it_otherwise(
        controller_with_token, tmp_path):
    port = controller_with_token
    with browser.chromium() as driver:
        driver.get(f"http://127.0.0.1:{port}/fabric/view#token=s3cret")
        browser.refresh(driver)
        assert driver.find_element("id", "policy").text == "shortest"
        assert "0 switches" in driver.find_element("id", "status").text
        assert not driver.find_element("id", "token-form").is_displayed()
        assert "token" not in driver.current_url   # out of the address bar, history, shots
        assert len(browser.legend(driver)) == 10

        driver.execute_script("sessionStorage.clear();")
        driver.get(f"http://127.0.0.1:{port}/fabric/view")
        form = driver.find_element("id", "token-form")
        time.sleep(0.5)
        browser.refresh(driver, ok=False)
        assert form.is_displayed()
        assert "token" in driver.find_element("id", "status").text
        driver.find_element("id", "token").send_keys("s3cret\n")
        deadline = time.monotonic() + 5
        while driver.find_element("id", "policy").text != "shortest":
            assert time.monotonic() < deadline, "the token typed in was not used"
            time.sleep(0.1)
        assert not form.is_displayed()
        errors = [e for e in driver.get_log("browser")
                  if e["level"] == "SEVERE" and "401" not in e["message"]]
        assert errors == []


def test_an_installation_without_the_page_says_which_file_is_missing(monkeypatch, tmp_path):
    from controllers.launcher import apply_shim
    apply_shim()   # before Ryu is imported, as the launcher does
    from controllers import rest
    monkeypatch.setattr(rest.importlib.resources, "files", lambda package: tmp_path)
    response = rest.view_file("view.js")
    assert response.status_int == 500
    assert "controllers/static/view.js is not installed" in json.loads(response.body)["error"]
    assert rest.view_file("nope.txt").status_int == 404
