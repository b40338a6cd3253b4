"""Start, query and stop our Ryu controller as a child process of a run.

The controller runs through controllers/launcher.py in its own process group, with
PR_SET_PDEATHSIG so it dies with the run even if the run is killed, and is recorded with
fabric.cleanup. Its REST API, its Prometheus metrics and its OpenFlow listener bind to
127.0.0.1 only (the emulated switches connect over loopback); its REST API tells the run when
discovery is complete.
A reference policy (:data:`REFERENCE_APPS`) runs another Ryu app through the same launcher
instead of ours; such an app has no REST status, so the run must see for itself when the
fabric carries traffic.
"""

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from fabric import cleanup
from fabric.config import REFERENCE_APPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_PDEATHSIG = 1
OUR_APP = "controllers.app"
__all__ = ["REFERENCE_APPS", "Controller", "ControllerError", "free_port"]


class ControllerError(RuntimeError):
    pass


class ControllerUnreachable(ControllerError, OSError):
    """Nothing answers on the REST port (the controller is down or not up yet)."""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Controller:
    """Our controller with ``policy``, or the reference app a policy names
    (:data:`REFERENCE_APPS`), or another Ryu app (``app=``), listening on free local ports.
    ``extra_args`` are more ryu-manager options (``--fabric-*`` for ours)."""

    def __init__(self, log_path, policy="ecmp", app=None, extra_args=()):
        self.of_port = free_port()
        self.rest_port = free_port()
        # Ours serves Prometheus metrics there (controllers/prom.py); reference apps do not.
        self.metrics_port = free_port()
        self.log_path = log_path
        self.policy = policy
        self.app = app or REFERENCE_APPS.get(policy, OUR_APP)
        self.ours = self.app == OUR_APP
        self.extra_args = list(extra_args)
        self.proc = None

    def start(self):
        """Start the controller (again, after :meth:`stop`, on the same ports). It dies when
        the *thread* that started it ends (PR_SET_PDEATHSIG follows the parent thread): start
        it from a thread that lives as long as it should."""
        # Switches of an emulation connect over loopback: the OpenFlow listener binds there.
        listen = [] if any(a.startswith("--ofp-listen-host") for a in self.extra_args) else [
            "--ofp-listen-host", "127.0.0.1"]
        args = [sys.executable, "-m", "controllers.launcher", *listen,
                "--ofp-tcp-listen-port", str(self.of_port),
                "--wsapi-host", "127.0.0.1", "--wsapi-port", str(self.rest_port),
                *self.extra_args, self.app]
        if self.ours:
            args[-1:-1] = ["--fabric-policy", self.policy]
            if not any(a.startswith("--fabric-metrics-port") for a in self.extra_args):
                args[-1:-1] = ["--fabric-metrics-port", str(self.metrics_port)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        cleanup.record(pids=[self.proc.pid])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ControllerError(f"controller exited with {self.proc.returncode}; "
                                      f"see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.of_port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise ControllerError(f"controller did not listen on {self.of_port} in 20 s")

    def get(self, path, timeout=5.0):
        return self.request("GET", path, timeout=timeout)

    def request(self, method, path, body=None, timeout=10.0):
        """Call the REST API; return the decoded JSON answer. An error answer raises
        ControllerError with the controller's message."""
        url = f"http://127.0.0.1:{self.rest_port}{path}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                message = json.loads(e.read()).get("error")
            except ValueError:
                message = None
            raise ControllerError(f"{method} {path}: {e.code} {message or e.reason}") from None
        except urllib.error.URLError as e:
            raise ControllerUnreachable(f"{method} {path}: controller not answering on port "
                                        f"{self.rest_port} ({e.reason}); see "
                                        f"{self.log_path}") from None

    def wait_status(self, predicate, timeout_s, what):
        """Poll /fabric/status until ``predicate(status)``; return the status."""
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ControllerError(f"controller died; see {self.log_path}")
            try:
                status = self.get("/fabric/status")
                if predicate(status):
                    return status
            except OSError:
                pass
            time.sleep(0.1)
        raise ControllerError(f"controller did not reach '{what}' in {timeout_s} s "
                              f"(last status {status})")

    def crash(self):
        """Kill the controller at once (SIGKILL, as a crash: no clean-up of its own); the
        switches keep their tables. :meth:`start` brings up another on the same ports, from
        a thread that outlives it: the controller dies with the thread that started it
        (PR_SET_PDEATHSIG)."""
        if self.proc is not None:
            cleanup.kill_pids([self.proc.pid], grace_s=0.0)
            self.proc.wait()
            cleanup.forget(pids=[self.proc.pid])
            self.proc = None
            self._log.close()

    def stop(self):
        if self.proc is not None:
            cleanup.kill_pids([self.proc.pid])
            self.proc.wait()
            cleanup.forget(pids=[self.proc.pid])
            self.proc = None
            self._log.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False
