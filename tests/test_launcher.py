"""The controller launcher keeps ryu-manager's flags working on Python 3.11."""

import json
import os
import subprocess
import sys
import time
import urllib.request

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
