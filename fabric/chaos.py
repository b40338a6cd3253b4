"""Seeded chaos: faults injected into a live emulation while AI traffic runs, and what it cost.

A chaos run brings a fabric up under the controller (fabric/runner.py :func:`network`), starts
the spec's traffic (an all-to-all and a training iteration as two jobs, by default), and from
the moment every flow is connected injects a sequence of faults drawn from the seed
(:func:`plan`): a link cut, a switch crash (every port dark, its controller connection gone,
its tables kept), a controller kill (SIGKILL) and restart on the same ports, a gray link (up,
passing LLDP, its far end dropping every jumbo data frame: fabric/emulate.py ``gray_link``),
a slow link (up, its shaping cut to :data:`SLOW_FRACTION` of its rate, no drop counted
anywhere: fabric/emulate.py ``shape_link``).
Faults come one after another: wait ``gap_s``, inject, wait until the controller has noticed
and settled, check all-pairs reachability where the graph allows (the plan only picks faults
that leave every host connected), hold the fault for ``hold_s``, repair it, wait until the
controller has taken the repair in, next. The same seed gives the same sequence of kinds,
targets, gaps and holds.

The report (:func:`report`, printed and written as ``chaos.json`` and ``chaos.md``): flows
attempted, completed and lost; per fault kind how many were injected and detected and the
detection and recovery times (median, max); reachability checks passed; leftovers after
teardown. :func:`soak` interrupts runs of the runner at seeded random points with SIGINT,
SIGTERM or SIGKILL, then runs ``make clean``'s clean-up, checks nothing is left and that the
next run succeeds.

What the controller must show for a fault to count as *detected* (our controller's
``/fabric/status``): a link cut, one link fewer; a switch crash, one switch fewer; a
controller restart, every switch connected again; a gray or slow link, the link listed in
``degraded_links``. *Recovered*: the controller has no change pending (its routes around the
fault confirmed by barriers), and for a restart every switch, link and host known again.
Times are wall seconds from the injection (the restart's start for the controller). A gray
or slow link not found before the traffic ended is counted apart (``ended_first``): with
nothing crossing it, nothing could show it, so it was not observed rather than missed.

Usage: python -m fabric.chaos [SPEC] [--seed N] [--faults N] [--kinds link,switch,...]
       [--policy P] [--soak N] [--results DIR]
"""

import argparse
import dataclasses
import datetime
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

import networkx as nx

from fabric import bundled, cleanup, model, runner, spec as specs
from fabric.controller import ControllerError
from fabric.progress import Progress
from fabric.reach import all_pairs
from traffic import jobs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAULT_KINDS = ("link", "switch", "controller", "gray", "slow")
# A slow link delivers this share of its shaped rate.
SLOW_FRACTION = 0.1
# How long the controller gets to notice a fault, and then to settle, before the fault
# counts as undetected or unrecovered. A gray or slow link is seen only from rates measured
# over a few statistics rounds (a slow one once its queue has built up).
DETECT_TIMEOUT_S = {"link": 15.0, "switch": 20.0, "controller": 30.0, "gray": 20.0,
                    "slow": 20.0}
RECOVER_TIMEOUT_S = 30.0
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
# A gray link below this utilization when it failed carried too little traffic for its
# counters to show the failure (controllers/health.py judges only links with traffic); a slow
# link below its new rate builds no queue, so nothing shows it either, nor harms its traffic.
# Measured in the direction that fails (:func:`failing_utilization`).
IDLE_UTILIZATION = {"gray": 0.01, "slow": SLOW_FRACTION}


class ChaosError(ValueError):
    """A bad chaos option: one line for the user."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One fault of a plan: ``kind`` on ``target`` (a link's two nodes, a switch, or nothing
    for the controller), injected ``gap_s`` after the previous one ended, held ``hold_s``."""
    kind: str
    target: tuple
    gap_s: float
    hold_s: float

    def name(self):
        return f"{self.kind} {'-'.join(self.target)}".strip()


def candidates(g):
    """What the plan may break: ``{"link": [(u, v), ...], "switch": [s, ...]}``, the
    switch-to-switch links and the switches with no host whose loss leaves every host
    connected (so every flow can survive each fault)."""
    # On a connected fabric: a link is safe to cut unless it is a bridge, a switch with no
    # host safe to take down unless it is an articulation point (one pass each, not a
    # connectivity search per candidate).
    bridges = {frozenset(e) for e in nx.bridges(g)}
    cut_nodes = set(nx.articulation_points(g))
    links = sorted(tuple(sorted((u, v))) for u, v in g.edges
                   if not model.is_host(g, u) and not model.is_host(g, v)
                   and frozenset((u, v)) not in bridges)
    switches = sorted(s for s in model.switches(g)
                      if not any(model.is_host(g, n) for n in g.neighbors(s))
                      and s not in cut_nodes)
    return {"link": links, "gray": links, "slow": links, "switch": switches}


def plan(g, seed, count, kinds=FAULT_KINDS, gap_s=(1.0, 3.0), hold_s=(3.0, 6.0)):
    """A sequence of ``count`` faults on fabric ``g`` drawn from ``seed``.

    Parameters
    ----------
    g : nx.Graph
        The topology model.
    seed : int
    count : int
    kinds : sequence of str
        Fault kinds to draw from (:data:`FAULT_KINDS`), each equally likely.
    gap_s, hold_s : (float, float)
        Ranges of the wait before each fault and of how long it lasts, seconds.

    Returns
    -------
    list of Fault
        The same for the same arguments.

    Raises
    ------
    ChaosError
        For an unknown kind, or a kind the fabric offers no target for.

    Examples
    --------
    >>> from topologies import build
    >>> plan(build("fattree", k=4), 7, 3) == plan(build("fattree", k=4), 7, 3)
    True
    """
    bad = [k for k in kinds if k not in FAULT_KINDS]
    if bad or not kinds:
        raise ChaosError(f"kinds must be some of {', '.join(FAULT_KINDS)}, got {list(kinds)}")
    cands = candidates(g)
    for k in kinds:
        if k != "controller" and not cands[k]:
            raise ChaosError(f"fabric {g.graph.get('name')} has no {k} whose loss leaves "
                             f"every host connected")
    rng = random.Random(seed)
    faults = []
    for _ in range(count):
        kind = rng.choice(sorted(kinds))
        if kind == "controller":
            target = ()
        elif kind == "switch":
            target = (rng.choice(cands["switch"]),)
        else:
            target = rng.choice(cands[kind])
        faults.append(Fault(kind, target, round(rng.uniform(*gap_s), 3),
                            round(rng.uniform(*hold_s), 3)))
    return faults


def failing_utilization(g, loads, fault):
    """The utilization of what ``fault`` breaks, from the controller's directed link loads
    (``/fabric/topology``'s ``links``: ``src`` and ``dst`` dpids, ``utilization``), or None.

    A gray link drops only what its first node sends (its second node's end takes standard
    frames only, fabric/emulate.py ``gray_link``): the other direction, however busy, loses
    nothing, and its acknowledgements are too small to be dropped. A slow link is cut both
    ways: the busier direction.

    Examples
    --------
    >>> from topologies import build
    >>> g = build("fattree", k=4)
    >>> a, c = g.nodes["a1"]["dpid"], g.nodes["c1"]["dpid"]
    >>> loads = [{"src": a, "dst": c, "utilization": 0.001},
    ...          {"src": c, "dst": a, "utilization": 0.4}]
    >>> failing_utilization(g, loads, Fault("gray", ("a1", "c1"), 1.0, 1.0))
    0.001
    >>> failing_utilization(g, loads, Fault("slow", ("a1", "c1"), 1.0, 1.0))
    0.4
    """
    u, v = (g.nodes[n]["dpid"] for n in fault.target)
    ways = {(u, v)} if fault.kind == "gray" else {(u, v), (v, u)}
    return max((x["utilization"] for x in loads if (x["src"], x["dst"]) in ways),
               default=None)


class Injector:
    """Applies a plan's faults to a live :class:`fabric.runner.Network`, one after another, in
    a thread started by :meth:`go`; :meth:`finish` stops it (repairing the fault in place) and
    returns one record per fault. Each fault done (or skipped) is a milestone of
    ``progress`` (a :class:`fabric.progress.Progress` counting the faults)."""

    def __init__(self, net, faults, progress, log=print):
        self.net, self.faults, self.progress, self.log = net, faults, progress, log
        self.records = []
        self._stop = threading.Event()
        self._ended_at = None   # when the traffic ended (finish was called), monotonic
        self._thread = None
        g = net.g
        self.expect = {"switches": len(model.switches(g)),
                       "links": runner.expected_links(g), "hosts": len(model.hosts(g))}

    def go(self):
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)
        self._thread.start()

    def finish(self, timeout_s=240.0):
        """Inject no more faults; wait for the one in place to be measured and repaired."""
        self._ended_at = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self.records

    # -- the sequence ------------------------------------------------------------------------
    def _run(self):
        try:
            self._sequence()
        finally:
            # A controller restarted by this thread dies with it (fabric/controller.py): the
            # thread lives until the run is over.
            self._stop.wait()

    def _sequence(self):
        for fault in self.faults:
            if self._stop.wait(fault.gap_s):
                self.records.append({"fault": fault.name(), "kind": fault.kind,
                                     "injected": False})
                self.progress.advance(f"{fault.name()}: not injected (the traffic ended)")
                continue
            rec = {"fault": fault.name(), "kind": fault.kind, "injected": True,
                   "hold_s": fault.hold_s}
            self.records.append(rec)
            try:
                self._one(fault, rec)
                outcome = (f"detected {rec['detect_s']} s, recovered {rec['recover_s']} s, "
                           f"unreachable pairs {len(rec['reachability']['unreachable'])}")
            except Exception as e:  # noqa: BLE001 - a failed injection is reported, not fatal
                rec["error"] = outcome = f"{type(e).__name__}: {e}"
            self.progress.advance(f"{fault.name()}: {outcome}")

    def _one(self, fault, rec):
        ctl = self.net.ctl
        if fault.kind in IDLE_UTILIZATION:
            # Counters show a gray or slow link only while traffic crosses it.
            rec["utilization"] = self._utilization(fault)
        drops = self._drops(fault) if fault.kind == "gray" else None
        undo = self._inject(fault)
        t0 = time.monotonic()
        self.log(f"  chaos: {fault.name()} injected")
        if fault.kind == "controller":
            self._stop.wait(fault.hold_s)  # the controller stays dead this long
            t0 = time.monotonic()
            ctl.start()
        detected = self._wait(self._detected(fault), DETECT_TIMEOUT_S[fault.kind])
        rec["detect_s"] = None if detected is None else round(detected - t0, 3)
        if drops is not None:
            after = self._drops(fault)
            if after is not None:
                # What it dropped until found (or until the controller's time was up).
                rec["dropped"] = after - drops
        if detected is not None and fault.kind in IDLE_UTILIZATION:
            rec["why"] = self._why(fault.target)
        if detected is None and self._ended_at is not None:
            # The traffic ended while the controller could still have found it: a gray or
            # slow link with nothing crossing it shows nothing. Not observed, not missed.
            rec["traffic_ended_s"] = round(self._ended_at - t0, 3)
        settled = self._wait(self._settled(fault), RECOVER_TIMEOUT_S)
        rec["recover_s"] = None if settled is None else round(settled - t0, 3)
        rec["reachability"] = self._reach()
        if fault.kind != "controller":
            self._stop.wait(max(0.0, fault.hold_s - (time.monotonic() - t0)))
            undo()
            t1 = time.monotonic()
            back = self._wait(self._restored, RECOVER_TIMEOUT_S)
            rec["repair_s"] = None if back is None else round(back - t1, 3)

    def _inject(self, fault):
        """Break what ``fault`` says; return the function that repairs it."""
        em, ctl = self.net.em, self.net.ctl
        if fault.kind == "link":
            em.set_link(*fault.target, up=False)
            return lambda: em.set_link(*fault.target, up=True)
        if fault.kind == "gray":
            em.gray_link(*fault.target, on=True)
            return lambda: em.gray_link(*fault.target, on=False)
        if fault.kind == "slow":
            em.shape_link(*fault.target, SLOW_FRACTION)
            return lambda: em.shape_link(*fault.target, 1.0)
        if fault.kind == "switch":
            targets = em.set_switch(fault.target[0], up=False)
            return lambda: em.set_switch(fault.target[0], up=True, targets=targets)
        ctl.crash()
        return lambda: None

    # -- what the controller says --------------------------------------------------------------
    def _status(self):
        try:
            return self.net.ctl.get("/fabric/status", timeout=2.0)
        except (OSError, ControllerError, ValueError):
            return None

    def _wait(self, predicate, timeout_s):
        """The monotonic time at which ``predicate(status)`` first held, or None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            s = self._status()
            if s is not None and predicate(s):
                return time.monotonic()
            time.sleep(0.05)
        return None

    def _detected(self, fault):
        e = self.expect
        if fault.kind == "link":
            return lambda s: s["links"] < e["links"]
        if fault.kind == "switch":
            return lambda s: s["switches"] < e["switches"]
        if fault.kind == "controller":
            return lambda s: s["switches"] == e["switches"]
        link = sorted(fault.target)
        return lambda s: link in [sorted(x) for x in s.get("degraded_links", [])]

    def _why(self, link):
        """What the controller found wrong with ``link`` (its health record's ``why``:
        drops, delivered share, probe lag or delay, rate share), or None."""
        s = self._status()
        names = [self.net.g.nodes[n]["dpid"] for n in link]
        for x in (s or {}).get("health", {}).get("excluded", []):
            if sorted(end[0] for end in x["link"]) == sorted(names):
                return x.get("why")
        return None

    def _settled(self, fault):
        if fault.kind == "controller":
            return self._restored
        return lambda s: not s["pending"]

    def _restored(self, s):
        e = self.expect
        return (s["switches"] == e["switches"] and s["links"] == e["links"]
                and s["hosts"] == e["hosts"] and not s["pending"]
                and not s.get("degraded_links"))

    def _drops(self, fault):
        """Packets the failing direction of a gray link has dropped so far (counted at
        either end, the larger count), or None if the controller cannot say."""
        (u, v), g = fault.target, self.net.g
        counts = []
        for node, field in ((u, "tx_dropped"), (v, "rx_dropped")):
            dpid, port = g.nodes[node]["dpid"], g.edges[u, v]["ports"][node]
            try:
                (row,) = self.net.ctl.get(f"/stats/port/{dpid}/{port}",
                                          timeout=2.0)[str(dpid)]
                counts.append(int(row[field]))
            except (OSError, ControllerError, ValueError, KeyError, TypeError):
                return None
        return max(counts)

    def _utilization(self, fault):
        """The utilization of what ``fault`` breaks as the controller last measured it
        (:func:`failing_utilization`; None if it cannot say)."""
        try:
            loads = self.net.ctl.get("/fabric/topology", timeout=2.0)["links"]
        except (OSError, ControllerError, ValueError, KeyError):
            return None
        return failing_utilization(self.net.g, loads, fault)

    def _reach(self):
        r = all_pairs(self.net.g, self.net.em, rounds=3, timeout_ms=1000)
        return {"pairs": r["pairs"], "unreachable": r["unreachable"]}


def _med_max(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": round(statistics.median(vals), 3), "max": round(max(vals), 3)}


def report(records, result, left):
    """The chaos report from the injector's ``records``, the traffic run's summary
    ``result`` and what teardown ``left`` behind (:func:`fabric.cleanup.leftovers`)."""
    kinds = {}
    for kind in FAULT_KINDS:
        mine = [r for r in records if r["kind"] == kind and r["injected"]]
        if not mine and not any(r["kind"] == kind for r in records):
            continue
        kinds[kind] = {
            "planned": sum(1 for r in records if r["kind"] == kind),
            "injected": len(mine),
            "detected": sum(1 for r in mine if r.get("detect_s") is not None),
            "recovered": sum(1 for r in mine if r.get("recover_s") is not None),
            "detect_s": _med_max(r.get("detect_s") for r in mine),
            "recover_s": _med_max(r.get("recover_s") for r in mine),
            "repair_s": _med_max(r.get("repair_s") for r in mine),
            "errors": [r["error"] for r in mine if "error" in r],
            # Idle explains a miss; a link found anyway (its traffic grew after the sample)
            # is not counted. The utilization is a smoothed rate from before the fault: a
            # gray link that dropped nothing while it failed (its traffic had just moved or
            # ended) carried nothing it could show too.
            "idle": sum(1 for r in mine if r.get("detect_s") is None and (
                (r.get("utilization") is not None
                 and r["utilization"] < IDLE_UTILIZATION[kind]) or r.get("dropped") == 0)),
            "ended_first": sum(1 for r in mine if "traffic_ended_s" in r),
        }
    checks = [r["reachability"] for r in records if "reachability" in r]
    return {
        "flows_attempted": result["flows_total"],
        "flows_completed": result["flows_completed"],
        "flows_lost": result["flows_total"] - result["flows_completed"],
        "faults": kinds,
        "reachability_checks": len(checks),
        "reachability_passed": sum(1 for c in checks if not c["unreachable"]),
        "leftovers": left,
        "records": records,
    }


def report_md(rep):
    """The report as Markdown, as printed."""
    def mm(x):
        return "-" if x is None else f"{x['median']:.2f} / {x['max']:.2f}"
    lines = [f"flows attempted {rep['flows_attempted']}, completed {rep['flows_completed']}, "
             f"lost {rep['flows_lost']}",
             "",
             "| fault | injected | detected | recovered | detect s (med / max) | "
             "recover s (med / max) | repair s (med / max) |",
             "|---|---|---|---|---|---|---|"]
    for kind, k in rep["faults"].items():
        lines.append(f"| {kind} | {k['injected']}/{k['planned']} | {k['detected']} | "
                     f"{k['recovered']} | {mm(k['detect_s'])} | {mm(k['recover_s'])} | "
                     f"{mm(k['repair_s'])} |")
    for kind, under in IDLE_UTILIZATION.items():
        idle = rep["faults"].get(kind, {}).get("idle")
        if idle:
            lines += ["", f"{kind} links idle when they failed (under {under:.0%} "
                          f"utilization in the direction that fails"
                          f"{', or nothing dropped' if kind == 'gray' else ''}: nothing for the "
                          f"counters to show): {idle}"]
    ended = {kind: k["ended_first"] for kind, k in rep["faults"].items() if k["ended_first"]}
    if ended:
        lines += ["", "undetected because the traffic ended before the controller could "
                      "see them (not missed): "
                      + ", ".join(f"{kind} {n}" for kind, n in ended.items())]
    lines += ["", f"all-pairs reachability after a fault: {rep['reachability_passed']} of "
                  f"{rep['reachability_checks']} checks with every pair reachable",
              f"leftovers after teardown: {len(rep['leftovers'])} kinds "
              f"{json.dumps(rep['leftovers']) if rep['leftovers'] else ''}".rstrip()]
    if "soak" in rep:
        s = rep["soak"]
        lines.append(f"teardown soak: {s['runs']} runs interrupted "
                     f"({', '.join(f'{k} {v}' for k, v in s['signals'].items())}); "
                     f"leftovers after make clean: {len(s['leftovers'])}; next run "
                     f"{'succeeded' if s['next_run_ok'] else 'FAILED'}")
    return "\n".join(lines)


def chaos_run(spec, faults, run_dir, log=print, stream=None):
    """Bring the spec's fabric up, run its traffic (first seed) with ``faults`` injected from
    the moment every flow is connected; tear down and return the report. Progress (faults
    done) goes to ``stream`` (default stdout), a bar on a terminal."""
    g = runner.prepare(spec, "chaos")[0]
    placed = None if spec["jobs"] is None else jobs.place(g, spec["jobs"], spec["seed"])
    schedule = runner.build_schedule(spec, g, spec["seed"], placed)
    with Progress(len(faults), "faults", stream=stream) as progress, \
            runner.network(g, spec, os.path.join(run_dir, "net"), log) as net:
        injector = Injector(net, faults, progress, log)
        try:
            result = runner.run_on(net, schedule, spec, os.path.join(run_dir, "traffic"),
                                   on_go=injector.go)
        finally:
            records = injector.finish()  # the fault in place is repaired before teardown
    left = cleanup.leftovers(names=model.switches(g) + model.hosts(g))
    return report(records, result, left)


def soak(spec_path, runs, seed, results_dir, max_wait_s=12.0, signals=None, stream=None):
    """Start the runner on ``spec_path`` ``runs`` times and interrupt each at a seeded random
    point (0.5 to ``max_wait_s`` seconds in: starting, bringing up, running or tearing down)
    with SIGINT, SIGTERM or SIGKILL (drawn, or ``signals`` in turn); then clean up as ``make
    clean`` does, check that nothing is left and that one more run completes. Returns the
    soak's report. Progress (runs done) goes to ``stream`` (default stdout)."""
    rng = random.Random(seed)
    py = sys.executable
    # The runs start in the package's directory: paths given relative to ours are made whole.
    spec_path, results_dir = os.path.abspath(spec_path), os.path.abspath(results_dir)
    counts = {s.name: 0 for s in SIGNALS}
    exits = []
    with Progress(runs, "soak runs", stream=stream) as progress:
        for i in range(runs):
            sig = rng.choice(SIGNALS) if signals is None else signals[i % len(signals)]
            wait = rng.uniform(0.5, max_wait_s)
            os.makedirs(os.path.join(results_dir, "soak"), exist_ok=True)
            with open(os.path.join(results_dir, "soak", f"run-{i + 1}.log"), "wb") as out:
                p = subprocess.Popen([py, "-m", "fabric.runner", spec_path, "--results",
                                      os.path.join(results_dir, "soak")], cwd=ROOT, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     preexec_fn=cleanup.interruptible)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.send_signal(sig)
                counts[sig.name] += 1
            try:
                rc = p.wait(120)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
            exits.append(rc)
            progress.advance(f"{sig.name} after {wait:.1f} s, exit {rc}")
    subprocess.run([py, "-m", "fabric.cleanup"], cwd=ROOT, capture_output=True)
    left = cleanup.leftovers()
    final = subprocess.run([py, "-m", "fabric.runner", spec_path, "--quiet", "--results",
                            os.path.join(results_dir, "soak")], cwd=ROOT, capture_output=True,
                           text=True)
    return {"runs": runs, "seed": seed, "signals": counts, "exits": exits,
            "leftovers": left, "next_run_ok": final.returncode == 0,
            "next_run_error": final.stderr.strip()[-500:] if final.returncode else None}


def main(argv=None):
    p = argparse.ArgumentParser(description="Inject seeded faults while AI traffic runs, "
                                            "and report what the fabric lost.")
    p.add_argument("spec", nargs="?", default="chaos",
                   help="experiment spec of the fabric and traffic, a file or a bundled "
                        "spec's name (default: %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault sequence")
    p.add_argument("--faults", type=int, default=6, help="faults to inject")
    p.add_argument("--kinds", default=",".join(FAULT_KINDS),
                   help="fault kinds, comma-separated (default: %(default)s)")
    p.add_argument("--policy", help="routing policy instead of the spec's")
    p.add_argument("--soak", type=int, default=30,
                   help="interrupted runs of the teardown soak (0: none)")
    p.add_argument("--soak-spec", default="demo",
                   help="spec the soak runs, a file or a bundled spec's name (default: "
                        "%(default)s)")
    p.add_argument("--results", default="results")
    a = p.parse_args(argv)
    a.spec, a.soak_spec = bundled.resolve(a.spec), bundled.resolve(a.soak_spec)
    log = lambda m: print(m, flush=True)  # noqa: E731
    try:
        if a.faults < 0 or a.soak < 0:
            raise ChaosError("--faults and --soak must be >= 0")
        spec = specs.load(a.spec, policy=a.policy)
        if spec["backend"] != "emulation":
            raise ChaosError(f"{a.spec}: backend: chaos runs the emulation, got "
                             f"{spec['backend']!r}")
        specs.load(a.soak_spec)
        g = runner.prepare(spec, a.spec)[0]
        faults = plan(g, a.seed, a.faults, kinds=[k for k in a.kinds.split(",") if k])
        if os.geteuid() != 0:
            raise runner.RunError("emulation needs root (Mininet creates namespaces and "
                                  "bridges)")
        runner.terminate_on_sigterm()
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = os.path.join(a.results, f"{stamp}-chaos-{spec['name']}")
        os.makedirs(out, exist_ok=True)
        log(f"chaos: seed {a.seed}, policy {spec['policy']}, {len(faults)} faults: "
            + ", ".join(f.name() for f in faults))
        rep = chaos_run(spec, faults, out, log)
        rep.update(seed=a.seed, policy=spec["policy"], spec=a.spec,
                   plan=[dataclasses.asdict(f) for f in faults])
        if a.soak:
            log(f"teardown soak: {a.soak} runs of {a.soak_spec}")
            rep["soak"] = soak(a.soak_spec, a.soak, a.seed, out)
    except (ChaosError, *runner.RUN_ERRORS) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: network, controller and agents torn down", file=sys.stderr)
        return 130
    with open(os.path.join(out, "chaos.json"), "w") as f:
        json.dump(rep, f, indent=2, default=str)
    md = report_md(rep)
    with open(os.path.join(out, "chaos.md"), "w") as f:
        f.write(md + "\n")
    print(md)
    print(f"results: {out}")
    ok = (rep["flows_lost"] == 0 and not rep["leftovers"]
          and rep["reachability_passed"] == rep["reachability_checks"]
          and ("soak" not in rep or (rep["soak"]["next_run_ok"]
                                     and not rep["soak"]["leftovers"])))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
