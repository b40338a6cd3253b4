"""`make bench-scale`: bring up a large fat-tree under our controller and time it.

Prints the time until the fabric is ready (switches connected, every link discovered, every
host learned, routes confirmed installed), the all-pairs reachability check, the teardown
time and the peak memory (machine-wide used memory above the idle level, and the peak RSS of
ovs-vswitchd and the controller), and writes results/<run-id>/summary.json.
"""

import argparse
import datetime
import json
import os
import sys
import threading
import time

from fabric import model
from fabric.controller import Controller
from fabric.emulate import Emulation, rate_scale
from fabric.reach import all_pairs
from fabric.runner import bring_up
from topologies import build


def _mem_used_kib():
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            info[k] = int(v.split()[0])
    return info["MemTotal"] - info["MemAvailable"]


def _rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pidof(name):
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == name:
                        return int(pid)
            except OSError:
                pass
    return None


class MemoryPeak:
    def __init__(self, pids):
        self.pids = pids
        self.base = _mem_used_kib()
        self.peak_used = 0
        self.peak_rss = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.wait(0.2):
            self.peak_used = max(self.peak_used, _mem_used_kib() - self.base)
            for name, pid in self.pids().items():
                self.peak_rss[name] = max(self.peak_rss.get(name, 0), _rss_kib(pid))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--host-link-mbps", type=float, default=10.0)
    p.add_argument("--results", default="results")
    a = p.parse_args(argv)
    g = build("fattree", k=a.k)
    run_dir = os.path.join(a.results, datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
                           + f"-scale-k{a.k}")
    os.makedirs(run_dir, exist_ok=True)
    n_sw, n_h = len(model.switches(g)), len(model.hosts(g))
    print(f"fat-tree k={a.k}: {n_sw} switches, {n_h} hosts, "
          f"{g.number_of_edges()} links; userspace OVS, our controller (ecmp)")
    ctl = None
    pids = lambda: {"ovs-vswitchd": _pidof("ovs-vswitchd"),  # noqa: E731
                    "controller": ctl.proc.pid if ctl and ctl.proc else None}
    with MemoryPeak(lambda: {k: v for k, v in pids().items() if v}) as mem:
        t0 = time.monotonic()
        with Controller(os.path.join(run_dir, "controller.log")) as ctl:
            em = Emulation(g, ctl.of_port, rate_scale(g, a.host_link_mbps))
            with em:
                t_net = time.monotonic()
                phases = bring_up(g, ctl, em, timeout_s=120)
                t_ready = time.monotonic()
                print(f"ready in {t_ready - t0:.1f} s (network up {t_net - t0:.1f} s, "
                      f"discovery {phases['discovery_s']:.1f} s, hosts and routes "
                      f"{phases['hosts_and_routes_s']:.1f} s)")
                reach = all_pairs(g, em)
                t_reach = time.monotonic()
                ok = reach["pairs"] - len(reach["unreachable"])
                print(f"reachability: {ok}/{reach['pairs']} host pairs in {t_reach - t_ready:.1f} s"
                      f" ({reach['first_round_lost']} needed a retry, {reach['rounds']} rounds)")
                status = ctl.get("/fabric/status")
                t_down = time.monotonic()
        teardown = em.info["timings_s"].get("teardown")
        t_end = time.monotonic()
    summary = {
        "topology": "fattree", "k": a.k, "switches": n_sw, "hosts": n_h,
        "ready_s": round(t_ready - t0, 3), "network_up_s": round(t_net - t0, 3), **phases,
        "reachability": {**reach, "seconds": round(t_reach - t_ready, 3)},
        "teardown_s": teardown, "teardown_total_s": round(t_end - t_down, 3),
        "peak_memory_mib": round(mem.peak_used / 1024, 1),
        "peak_rss_mib": {k: round(v / 1024, 1) for k, v in mem.peak_rss.items()},
        "controller": status, "emulation": em.info,
    }
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    print(f"teardown in {teardown:.1f} s (network), {t_end - t_down:.1f} s with controller")
    print(f"peak memory: {summary['peak_memory_mib']} MiB above idle; peak RSS "
          + ", ".join(f"{k} {v} MiB" for k, v in summary["peak_rss_mib"].items()))
    print(f"results: {run_dir}")
    return 0 if not reach["unreachable"] else 1


if __name__ == "__main__":
    sys.exit(main())
