"""The controller launcher keeps ryu-manager's flags working on Python 3.11."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from fabric.controller import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ryu_manager_flags_config_file_and_log_level(tmp_path):
    conf = tmp_path / "ryu.conf"
    conf.write_text("[DEFAULT]\nfabric_policy = shortest\n")
    of_port, rest_port = free_port(), free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "controllers.launcher", "--config-file", str(conf),
         "--default-log-level", "30", "--ofp-tcp-listen-port", str(of_port),
         "--wsapi-port", str(rest_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        status = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/fabric/status",
                                            timeout=1) as r:
                    status = json.loads(r.read())
                break
            except OSError:
                time.sleep(0.1)
        assert status is not None, "REST API never answered"
        assert status["policy"] == "shortest" and status["switches"] == 0
    finally:
        p.terminate()
        out, _ = p.communicate(timeout=10)
    # log level 30 (WARNING): the INFO lines ryu-manager prints by default are gone
    assert "loading app" not in out


def test_unknown_option_is_an_error():
    r = subprocess.run([sys.executable, "-m", "controllers.launcher", "--no-such-flag"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no-such-flag" in r.stderr


def _get(port, path, token=None):
    """HTTP status of a GET on the REST API (with a bearer token if given)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_rest_token_is_required_on_every_route_and_the_openflow_address_is_configurable(
        tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    of_port, rest_port = free_port(), free_port()
    p = subprocess.Popen(
        [sys.executable, "-m", "controllers.launcher", "--ofp-listen-host", "127.0.0.2",
         "--ofp-tcp-listen-port", str(of_port), "--wsapi-port", str(rest_port),
         "--fabric-rest-token-file", str(token)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                if _get(rest_port, "/fabric/status") == 401:
                    break
            except OSError:
                time.sleep(0.1)
        for path in ("/fabric/status", "/fabric/counters", "/fabric/hosts", "/stats/switches",
                     "/fabric/policy", "/stats/port/1"):
            assert _get(rest_port, path) == 401, path
            assert _get(rest_port, path, "wrong") == 401, path
        assert _get(rest_port, "/fabric/status", "s3cret-token") == 200
        assert _get(rest_port, "/stats/switches", "s3cret-token") == 200
        # OpenFlow listens on the address given, and only there.
        with socket.create_connection(("127.0.0.2", of_port), timeout=2):
            pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", of_port), timeout=2)
    finally:
        p.terminate()
        p.wait(timeout=10)


def test_an_unreadable_rest_token_file_is_one_error_line(tmp_path):
    missing = tmp_path / "no-token"
    r = subprocess.run([sys.executable, "-m", "controllers.launcher", "--ofp-tcp-listen-port",
                        str(free_port()), "--wsapi-port", str(free_port()),
                        "--fabric-rest-token-file", str(missing)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith(
        f"controller: --fabric-rest-token-file {missing}")


def test_a_rest_token_given_twice_is_one_error_line(tmp_path):
    token = tmp_path / "token"
    token.write_text("a\n")
    r = subprocess.run([sys.executable, "-m", "controllers.launcher", "--ofp-tcp-listen-port",
                        str(free_port()), "--wsapi-port", str(free_port()),
                        "--fabric-rest-token", "b", "--fabric-rest-token-file", str(token)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (
        "controller: give --fabric-rest-token or --fabric-rest-token-file, not both")
