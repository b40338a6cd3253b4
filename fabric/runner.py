"""Run an experiment spec end to end and write results/<run-id>/.

For every repeat (seed = spec seed + repeat) and every fabric of the spec (the topology, and
the one-switch non-blocking baseline with the same hosts and rates when ``baseline`` is on,
alternating which goes first), one *run*:

1. builds the topology model and the flow schedule: the spec's workload, or its jobs placed on
   their hosts and merged into one schedule (traffic/jobs.py; the baseline's jobs keep the
   main fabric's hosts); bad input fails here, before any network;
2. starts the controller (ours with the spec's policy, or the reference app a policy such as
   ``stp`` names) and the Mininet network, and brings the fabric up the way its controller
   needs (:data:`BRING_UP`): for ours, it waits until the controller has discovered every
   switch and link the model has, lets every host announce itself (gratuitous ARP) and waits
   until the routes to every host are confirmed installed;
3. starts one agent per host, which connects every flow before the clock; under the
   ``collective`` policy the run then announces the flow set to the controller (one intent
   per job when there are jobs) and waits until its paths are installed
   (:class:`CollectiveAnnouncement`); then the schedule runs, CPU idle sampled all along;
4. tears everything down (also on error and Ctrl-C), computes the metrics from the flow
   records and writes ``runs/<label>/summary.json`` and ``flows.csv``.

``summary.json`` at the top of the run directory holds the main fabric's figures (medians
over repeats), the baseline's, each fabric's cable kilometres and transceivers (``optics``),
and every run; with jobs, each run's and each fabric's figures
also hold every job's own (``jobs``). This module orchestrates; it decides no routes
and computes no metric itself. Other drivers (bench/policies.py) reuse its pieces:
:func:`network` brings a fabric up once and :func:`run_on` runs schedules on it.

Usage: python -m fabric.runner SPEC [--results DIR] [--quiet]
"""

import argparse
import contextlib
import csv
import datetime
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time

from fabric import bundled, cleanup, model, ocs, optical, optics, report, spec as specs
from fabric.controller import REFERENCE_APPS, Controller, ControllerError
from fabric.emulate import Emulation, EmulationError, rate_scale, window_warning
from fabric.reach import all_pairs
from fabric.twin import TwinError
from topologies import build as build_topology
from topologies.nonblocking import nonblocking_like
from traffic import jobs, metrics
from traffic import workloads
from traffic.agent import PORT
from traffic.coordinator import Coordinator, CoordinatorError
from traffic.inference import inference_summary
from traffic.ports import PortError, schedule_ports
from traffic.trace import write_trace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_SATURATED_IDLE = 0.05
# Above this many flow records a run does not draw its report itself (it would take longer
# than a twin run); `aifabric report RUN` still makes it.
REPORT_MAX_FLOWS = 200_000
# Ryu's stplib runs 802.1D timers (hello 2 s, max age 20 s, forward delay 15 s): a port takes
# 30 s from listening to forwarding, and a root elected late (switches connect one by one) or
# stale information aging out (max age) starts that again. 60 s was measured to be too short on
# a loaded 2-core machine (183 of 240 pairs still unreachable once in CI).
STP_CONVERGENCE_TIMEOUT_S = 150.0
# Connection set-up that keeps making progress may take this many times its base limit.
SETUP_CAP = 4
KEY_FIGURES = ("efficiency", "completion_time_s", "lower_bound_s", "algbw_gbps", "busbw_gbps",
               "cpu_idle_min", "completion_time_emulated_s", "fct_p99_s")


class RunError(RuntimeError):
    """A run could not be carried out (the network, controller or agents failed)."""


class CpuSampler:
    """Samples the machine's CPU idle fraction from /proc/stat every ``period_s``."""

    def __init__(self, period_s=0.5):
        self.period_s = period_s
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    @staticmethod
    def _read():
        with open("/proc/stat") as f:
            vals = [int(x) for x in f.readline().split()[1:]]
        return vals[3] + vals[4], sum(vals)

    def _loop(self):
        idle0, total0 = self._read()
        while not self._stop.wait(self.period_s):
            idle1, total1 = self._read()
            if total1 > total0:
                self.samples.append((time.monotonic(), (idle1 - idle0) / (total1 - total0)))
            idle0, total0 = idle1, total1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self, since=None, until=None):
        """Idle fractions of the samples taken between ``since`` and ``until`` (monotonic)."""
        vals = [v for t, v in self.samples  # every sample whose interval overlaps the window
                if (since is None or t > since) and (until is None or t - self.period_s < until)]
        if not vals:
            return {"cpu_idle_min": None, "cpu_idle_mean": None}
        return {"cpu_idle_min": round(min(vals), 4),
                "cpu_idle_mean": round(statistics.fmean(vals), 4)}


def terminate_on_sigterm():
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every ``with`` block tears down."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def expected_links(g):
    return sum(1 for u, v in g.edges if not model.is_host(g, u) and not model.is_host(g, v))


def bring_up(g, controller, em, timeout_s=90.0):
    """Wait until the controller knows every switch, link and host of ``g`` and its routes are
    confirmed installed; returns seconds taken per phase."""
    t0 = time.monotonic()
    n_sw, n_links, hs = len(model.switches(g)), expected_links(g), model.hosts(g)
    controller.wait_status(lambda s: s["switches"] == n_sw and s["links"] == n_links,
                           timeout_s, f"{n_sw} switches and {n_links} links")
    t1 = time.monotonic()
    for h in hs:
        em.host(h).sendCmd(f"arping -q -U -c1 -w1 -I {h}-eth0 {g.nodes[h]['ip']}")
    for h in hs:
        em.host(h).waitOutput()
    controller.wait_status(lambda s: s["hosts"] == len(hs) and not s["pending"], timeout_s,
                           f"{len(hs)} hosts with routes installed")
    t2 = time.monotonic()
    return {"discovery_s": round(t1 - t0, 3), "hosts_and_routes_s": round(t2 - t1, 3)}


def bring_up_stp(g, controller, em, timeout_s=STP_CONVERGENCE_TIMEOUT_S):
    """Ryu's simple_switch_stp_13 has no status to ask: the spanning tree has converged (its
    ports went through listening and learning) when every host pair answers a ping."""
    t0 = time.monotonic()
    while True:
        reach = all_pairs(g, em, rounds=1, timeout_ms=500)
        if not reach["unreachable"]:
            return {"convergence_s": round(time.monotonic() - t0, 3)}
        if time.monotonic() - t0 > timeout_s:
            raise RunError(f"spanning tree did not converge in {timeout_s:.0f} s: "
                           f"{len(reach['unreachable'])} of {reach['pairs']} host pairs "
                           f"unreachable; see {controller.log_path}")
        time.sleep(1.0)


# How a fabric is brought up, by policy; every other policy is our controller's (bring_up).
BRING_UP = {"stp": bring_up_stp}


def controller_args(g, spec, scale, run_dir):
    """Options of our controller for a run: the model (so it knows link capacities, in
    emulated units) and the spec's ``controller`` section."""
    path = os.path.join(run_dir, "topology.json")
    model.dump_json(g, path)
    c = spec["controller"]
    args = ["--fabric-topology", path, "--fabric-scale", repr(scale),
            "--fabric-stats-interval", repr(float(c["stats_interval_s"]))]
    if not c["fast_failover"]:
        args.append("--nofabric-fast-failover")
    if c["options"]:
        args += ["--fabric-policy-options", json.dumps(c["options"])]
    if c["health"]:
        args += ["--fabric-health-options", json.dumps(c["health"])]
    return args


def flows_learned(ctl):
    """The controller's count of flows learned so far (None from a reference app)."""
    if not ctl.ours:
        return None
    return ctl.get("/fabric/status")["counters"].get("flows_learned", 0)


def _delta(learned):
    before, after = learned.get("before"), learned.get("after")
    return None if before is None or after is None else after - before


def controller_status(ctl):
    """What the controller says about itself at the end of a run (a reference app: its name)."""
    return ctl.get("/fabric/status") if ctl.ours else {"app": ctl.app}


class CollectiveAnnouncement:
    """The ``before_go`` hook of a run under ``collective``: announce the schedule's flows.

    Called with the 5-tuples the agents opened, it submits one intent with every flow, its
    bytes and its phase (its depth in the dependency DAG, ``Schedule.depths``, so the
    controller balances the flows that run together) through the REST API, and returns once
    the controller says the intent is installed and every switch confirmed it (status not
    pending); :meth:`withdraw` ends it after the run. A schedule with jobs is announced as one
    intent per job, ``<intent_id>.<job>`` (traffic/jobs.py ``intents``), in job order, so each
    job's assignment weighs the jobs announced before it.
    """

    def __init__(self, ctl, schedule, intent_id, timeout_s=60.0):
        self.ctl = ctl
        self.schedule = schedule
        self.intent_id = intent_id
        self.timeout_s = timeout_s
        self.status = None
        self.parts = jobs.intents(schedule, intent_id)

    def __call__(self, five_tuples):
        missing = [f.id for f in self.schedule.flows if f.id not in five_tuples]
        if missing:
            raise RunError(f"agents reported no connection for {len(missing)} flows, "
                           f"e.g. {missing[:4]}")
        t0 = time.monotonic()
        for intent_id, flows in jobs.intent_requests(self.schedule, self.intent_id,
                                                     five_tuples):
            self.ctl.request("POST", "/fabric/intents", {"id": intent_id, "flows": flows},
                             timeout=self.timeout_s)
        paths = {intent_id: f"/fabric/intents/{intent_id}" for intent_id, _ in self.parts}
        self.ctl.wait_status(lambda s: not s["pending"]
                             and all(self.ctl.get(p)["state"] == "installed"
                                     for p in paths.values()),
                             self.timeout_s, f"intent {', '.join(paths)} installed")
        statuses = {intent_id: self.ctl.get(p) for intent_id, p in paths.items()}
        announce_s = round(time.monotonic() - t0, 3)
        if self.schedule.meta.get("jobs"):
            self.status = {"intents": statuses, "announce_s": announce_s}
        else:
            self.status = dict(statuses[self.intent_id], announce_s=announce_s)

    def withdraw(self):
        """End the announced intents. A controller restarted during the run (a crash, a
        chaos fault) has forgotten them: intents live in its memory only, and it has routed
        their flows as unannounced traffic since. Those are listed in the status as
        ``forgotten``, not withdrawn, and are not an error."""
        if self.status is None:
            return
        known = {str(s["intent"]) for s in self.ctl.get("/fabric/intents")}
        forgotten = []
        for intent_id, _ in self.parts:
            if str(intent_id) in known:
                self.ctl.request("DELETE", f"/fabric/intents/{intent_id}")
            else:
                forgotten.append(intent_id)
        if forgotten:
            self.status["forgotten"] = forgotten


TCP_COUNTERS = ("TcpRetransSegs", "TcpOutSegs", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes")


def tcp_counters(g, em):
    """TCP counters summed over all hosts (each host is its own network namespace)."""
    total = dict.fromkeys(TCP_COUNTERS, 0)
    for h in model.hosts(g):
        for line in em.host(h).cmd(f"nstat -az {' '.join(TCP_COUNTERS)}").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] in total and parts[1].isdigit():
                total[parts[0]] += int(parts[1])
    return total


def run_seed(schedule, spec):
    """The seed a run's schedule was built with (its spec's when the schedule does not
    say): what the twin and the emulation's agents draw source ports from."""
    return schedule.meta.get("seed") or spec["seed"]


def run_agents(g, em, schedule, run_dir, spec, before_go=None, on_done=None, ports=None):
    """Start an agent in every host, run the schedule, return (records, timed_out, cpu,
    connect_s): ``connect_s`` is the connection setup time (every flow connected, before the
    clock). ``before_go`` and ``on_done`` are the coordinator's hooks (see
    traffic/coordinator.py). ``ports`` (``{flow id: source port}``) are the ports the agents
    bind their connections to (else the kernel picks them)."""
    sched_path = os.path.join(run_dir, "schedule-emulated.jsonl")
    schedule.to_jsonl(sched_path)
    port_args = []
    if ports is not None:
        port_args = ["--ports", os.path.join(run_dir, "ports.json")]
        _write_json(port_args[1], ports)
    ctl_path = os.path.join(cleanup.STATE_DIR, f"ctl-{os.getpid()}.sock")
    hs = model.hosts(g)
    coord = Coordinator(ctl_path, schedule, {h: g.nodes[h]["ip"] for h in hs},
                        on_done=on_done)
    procs = {}
    try:
        for h in hs:
            log = open(os.path.join(run_dir, f"agent-{h}.log"), "wb")
            procs[h] = em.host(h).popen(
                [sys.executable, "-m", "traffic.agent", "--host", h, "--schedule", sched_path,
                 "--control", ctl_path, "--port", str(PORT),
                 "--cc", spec["emulation"]["congestion_control"],
                 "--window", str(spec["emulation"]["tcp_window_bytes"]), *port_args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            log.close()
        cleanup.record(pids=[p.pid for p in procs.values()])

        def alive():
            dead = {h: p.returncode for h, p in procs.items() if p.poll() not in (None, 0)}
            if dead:
                h, rc = next(iter(dead.items()))
                raise RunError(f"agent on {h} exited with {rc}; see {run_dir}/agent-{h}.log")

        with CpuSampler(period_s=0.2) as cpu:
            # Starting agents and connecting every flow takes longer with more of them (on
            # two cores, 128 agents and 16,000 connections take tens of seconds; minutes
            # when a learning policy's controller sets up every connection's flows on a
            # saturated CPU). Set-up goes on while the agents report progress, up to
            # SETUP_CAP times this.
            setup_s = max(60.0, 0.5 * len(hs) + 0.01 * len(schedule.flows))
            records, timed_out = coord.run(setup_timeout_s=setup_s,
                                           run_timeout_s=spec["timeout_s"], alive=alive,
                                           before_go=before_go,
                                           setup_cap_s=SETUP_CAP * setup_s)
            last_end = max((r["end_s"] for r in records if r["end_s"] is not None), default=0.0)
        return (records, timed_out, cpu.summary(since=coord.t0, until=coord.t0 + last_end),
                coord.connect_s)
    finally:
        coord.close()
        cleanup.kill_pids([p.pid for p in procs.values()], grace_s=2.0)
        cleanup.forget(pids=[p.pid for p in procs.values()])


class Network:
    """A fabric brought up under its controller, ready for runs (made by :func:`network`)."""

    def __init__(self, g, ctl, em, scale, ready):
        self.g, self.ctl, self.em, self.scale, self.ready = g, ctl, em, scale, ready


@contextlib.contextmanager
def network(g, spec, run_dir, log):
    """Start the spec's controller and fabric ``g``, bring it up, yield a :class:`Network`;
    everything is torn down on exit, also on error and Ctrl-C."""
    run_dir = os.path.abspath(run_dir)  # the controller runs in the package's directory
    os.makedirs(run_dir, exist_ok=True)
    em_spec = spec["emulation"]
    scale = rate_scale(g, em_spec["host_link_mbps"])
    if em_spec["emulate_delay"]:
        warning = window_warning(g, scale, em_spec["tcp_window_bytes"])
        if warning:
            log(f"  {g.graph['name']}: {warning}")
    policy = spec["policy"]
    t_start = time.monotonic()
    args = () if policy in REFERENCE_APPS else controller_args(g, spec, scale, run_dir)
    with Controller(os.path.join(run_dir, "controller.log"), policy=policy,
                    extra_args=args) as ctl:
        if ctl.ours:   # to watch the fabric come up and carry the run (README, "Live view")
            log(f"  live view: http://127.0.0.1:{ctl.rest_port}/fabric/view")
        with Emulation(g, ctl.of_port, scale, congestion_control=em_spec["congestion_control"],
                       queue_packets=em_spec["queue_packets"], mtu=em_spec["mtu"],
                       emulate_delay=em_spec["emulate_delay"],
                       static_arp=em_spec["static_arp"],
                       flow_counter_refresh_ms=em_spec["flow_counter_refresh_ms"],
                       log=log) as em:
            ready = BRING_UP.get(policy, bring_up)(g, ctl, em)
            em.check_shaping()
            ready["ready_s"] = round(time.monotonic() - t_start, 3)
            log(f"  {g.graph['name']}: ready in {ready['ready_s']:.1f} s "
                f"({len(model.switches(g))} switches, {len(model.hosts(g))} hosts)")
            yield Network(g, ctl, em, scale, ready)


class PhaseMover:
    """Circuits that follow a schedule's phases in the emulation: a thread that moves the
    OCS bridges to the next phase's plan once every flow of the current phase has been
    received (fabric/optical.py ``next_phase``, the twin's rule), in the steps
    ``staged_reconfigure`` gives, each make-before-break through the controller
    (:func:`fabric.ocs.make_before_break`), dark for the OCS's reconfiguration time scaled
    like every time.

    Parameters
    ----------
    net : Network
        Up, built from ``g``.
    g : networkx.Graph
        The logical fabric, holding the first phase's circuits.
    schedule : traffic.schedule.Schedule
        The run's flows (ids as the agents report them).
    phases : dict
        fabric/optical.py ``phase_plans`` of the schedule.
    """

    def __init__(self, net, g, schedule, phases):
        self.net, self.lg, self.phases = net, g, phases
        self.phase_of = {f.id: int(k) for f, k in zip(schedule.flows, phases["phase_of"])}
        self.left = [0] * len(phases["labels"])
        for k in self.phase_of.values():
            self.left[k] += 1
        self.current, self.moves, self.error, self.t0 = 0, [], None, None
        self.wake = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="ocs-phases", daemon=True)
        self.thread.start()

    def done(self, flow_id, t_s):
        """A flow was received ``t_s`` seconds into the run (the coordinator's thread)."""
        if self.t0 is None:
            self.t0 = time.monotonic() - t_s
        k = self.phase_of.get(flow_id)
        if k is not None:
            self.left[k] -= 1
            if self.left[k] == 0:
                self.wake.put(t_s)

    def stop(self):
        """Let a move under way finish, then end the thread."""
        self.wake.put(None)
        self.thread.join()

    def _loop(self):
        while True:
            if self.wake.get() is None or self.error is not None:
                return
            j = optical.next_phase(list(self.left), self.current)
            while j is not None:
                self.current = j
                try:
                    self._move(j)
                except (ControllerError, ocs.OcsError, model.TopologyError) as e:
                    self.error = str(e)
                    return
                j = optical.next_phase(list(self.left), self.current)

    def _move(self, j):
        net, ph = self.net, self.phases
        # Nominal seconds since the clock started, as the run's other times.
        at_s = (time.monotonic() - self.t0) * net.scale
        steps = optical.staged_reconfigure(self.lg, ph["circuits"][j], list(ph["demands"][j]))
        entry = {"at_s": round(at_s, 9), "phase": ph["labels"][j], "steps": len(steps),
                 "circuits_changed": 0, "dark_ms": 0.0, "step_wall_s": []}
        for new, plan in steps:
            self.lg, took = ocs.make_before_break(
                net.ctl, net.em, self.lg, optical.circuits_of(new),
                plan.reconfiguration_ms / 1e3 / net.scale)
            entry["step_wall_s"].append(took)
            entry["circuits_changed"] += len(plan.removed) + len(plan.added)
            entry["dark_ms"] += plan.reconfiguration_ms
        if steps:
            self.moves.append(entry)


def run_once(g, schedule, spec, run_dir, log, circuits=None, phases=None):
    """One run on fabric ``g`` with its own network (or in the twin, as the spec's
    ``backend`` says); returns its summary dict (also written to run_dir). ``circuits``
    (``{ocs: [(p, q), ...]}``, OCS fabrics only) are moved to as the run starts,
    make-before-break (the twin's ``reconfiguration``, the emulation's
    :func:`fabric.ocs.make_before_break`), dark for the OCS reconfiguration time scaled
    like every time; the result's ``ocs_steps`` says what it took. ``phases``
    (fabric/optical.py ``phase_plans``; ``g`` holds the first phase's circuits) move the
    circuits between the schedule's phases as each is received (:class:`PhaseMover`, the
    twin's ``circuit_phases``); the result's ``ocs_reconfigurations`` lists the moves."""
    if spec["backend"] == "twin":
        return run_twin(g, schedule, spec, run_dir, log, circuits=circuits, phases=phases)
    with network(g, spec, run_dir, log) as net:
        if phases is not None:
            mover = PhaseMover(net, g, schedule, phases)
            try:
                res = run_on(net, schedule, spec, run_dir, on_done=mover.done)
            finally:
                mover.stop()
            if mover.error is not None:
                raise RunError(f"OCS reconfiguration failed: {mover.error}")
            res["ocs_reconfigurations"] = mover.moves
            return res
        if circuits is None:
            return run_on(net, schedule, spec, run_dir)
        _new, plan = optical.reconfigure(g, circuits)
        moved = {}

        def move():
            try:
                moved["lg"], moved["steps"] = ocs.make_before_break(
                    net.ctl, net.em, g, circuits, plan.reconfiguration_ms / 1e3 / net.scale)
            except (ControllerError, ocs.OcsError) as e:
                moved["error"] = str(e)

        mover = threading.Thread(target=move, name="ocs-reconfiguration")
        try:
            res = run_on(net, schedule, spec, run_dir, on_go=mover.start)
        finally:
            if mover.ident is not None:
                mover.join()
        if "error" in moved:
            raise RunError(f"OCS reconfiguration failed: {moved['error']}")
        res["ocs_steps"] = moved.get("steps")
        return res


def run_on(net, schedule, spec, run_dir, on_go=None, on_done=None):
    """Run ``schedule`` on a network that is up; returns its summary dict (also written to
    run_dir). The network is left as the run found it (an announced collective withdrawn).
    ``on_go()``, if given, is called once every flow is connected, just before the clock
    starts (fabric/chaos.py starts its faults there); ``on_done(flow id, s)`` as each flow
    is received, ``s`` seconds after the clock started."""
    run_dir = os.path.abspath(run_dir)  # the agents run in the package's directory
    os.makedirs(run_dir, exist_ok=True)
    schedule.to_jsonl(os.path.join(run_dir, "schedule.jsonl"))
    g, em, ctl, scale = net.g, net.em, net.ctl, net.scale
    em_spec = spec["emulation"]
    # Compute gaps and arrival times stretch with the emulated network (1 / scale).
    executed = schedule.scale_times(1.0 / scale)
    info = {"emulation": em.info}
    announce = None
    if spec["policy"] == "collective":
        announce = CollectiveAnnouncement(ctl, executed, os.path.basename(run_dir) or "run")
    tcp_before, drops_before = tcp_counters(g, em), em.drop_counters()
    learned = {}

    # Each connection's source port, drawn from the run's seed as the twin draws it.
    ports = None
    if em_spec["source_ports"] == "seeded":
        try:
            ports = schedule_ports(executed, g, run_seed(schedule, spec))
        except PortError as e:
            raise RunError(str(e)) from None
    opened = {}

    def before_go(five_tuples):
        # The flows the controller learned while the agents connected (every flow connects
        # before the clock), read before an intent adds its own work.
        learned["after"] = flows_learned(ctl)
        opened.update(five_tuples)
        # The 5-tuple of every connection, so the twin can replay the run's hash choices.
        _write_json(os.path.join(run_dir, "connections.json"), five_tuples)
        if announce is not None:
            announce(five_tuples)
        if ctl.ours:
            recorder.mark()
        if on_go is not None:
            on_go()

    learned["before"] = flows_learned(ctl)
    # The controller's view of every link over time (links.csv, for the report); a reference
    # app has no such view.
    recorder = (report.LinkRecorder(ctl, g, os.path.join(run_dir, "links.csv"),
                                    spec["controller"]["stats_interval_s"])
                if ctl.ours else contextlib.nullcontext())
    try:
        with recorder:
            records, timed_out, cpu, connect_s = run_agents(g, em, executed, run_dir, spec,
                                                            before_go=before_go,
                                                            on_done=on_done, ports=ports)
    finally:
        if announce is not None:
            announce.withdraw()
    tcp_after, drops_after = tcp_counters(g, em), em.drop_counters()
    info["tcp"] = {k: tcp_after[k] - tcp_before[k] for k in TCP_COUNTERS}
    info["drops"] = {k: drops_after[k] - drops_before[k] for k in drops_after}
    info["controller"] = controller_status(ctl)
    ready = net.ready
    head = {
        "backend": "emulation",
        "scale": scale,
        "host_link_mbps": em_spec["host_link_mbps"],
        "delay_emulated": info["emulation"]["delay_emulated"],
        "delay_method": info["emulation"]["delay_method"],
        "timed_out": timed_out,
        "ready": ready,
        "connection_setup_s": None if connect_s is None else round(connect_s, 3),
        "source_ports": source_port_use(em_spec["source_ports"], ports, opened),
        "controller_flows_learned": _delta(learned),
        "controller_flow_setups_per_s": (
            None if not connect_s or _delta(learned) is None
            else round(_delta(learned) / connect_s, 1)),
        **cpu,
        "cpu_saturated": cpu["cpu_idle_min"] is not None
        and cpu["cpu_idle_min"] < CPU_SATURATED_IDLE,
    }
    tail = {"tcp": info["tcp"], "drops": info["drops"], "emulation": info["emulation"],
            "controller": info["controller"]}
    if info["emulation"]["delay_method"] == "forwarder":
        tail["delay_forwarder"] = em.forwarder_stats()
    if announce is not None:
        tail["intent"] = announce.status
    return record_run(g, schedule, executed, records, scale, spec, run_dir, head, tail)


def source_port_use(mode, ports, opened):
    """How a run's connections got their source ports: the mode and, when seeded, how many
    were bound to their drawn port and how many the kernel chose because it was in use on
    the host (a connection from an earlier run waiting out TIME_WAIT, say)."""
    if ports is None:
        return {"mode": mode}
    bound = sum(1 for fid, five in opened.items() if ports.get(fid) == five[3])
    return {"mode": mode, "bound": bound, "kernel": len(opened) - bound}


def workload_name(spec):
    """What a run's results call its workload: the spec's, or its jobs' joined by ``+``."""
    if spec["jobs"] is None:
        return spec["workload"]["name"]
    return "+".join(job["workload"]["name"] for job in spec["jobs"])


def tagged_figures(schedule, executed, records, scale):
    """Per-phase figures and inference latencies of a run, for the flows that carry the
    ``phase`` and ``request`` tags (none if no flow does)."""
    out = {}
    if any(f.tag("phase") is not None for f in schedule.flows):
        out["phases"] = metrics.phase_breakdown(schedule, records, scale)
    if any(f.tag("request") is not None for f in schedule.flows):
        out["inference"] = inference_summary(executed, records, scale)
    return out


def job_figures(g, schedule, executed, records, scale):
    """Each job's own figures in a run of several (traffic/jobs.py), by job name: its
    workload, placement, hosts and seed, and the metrics of its own flows and records alone
    (so its efficiency is against its own lower bound, its busbw its own collective's)."""
    parts, ran = jobs.split(schedule), jobs.split(executed)
    job_of = {f.id: f.tag(jobs.TAG) for f in schedule.flows}
    mine = {name: [] for name in parts}
    for r in records:
        mine[job_of[r["id"]]].append(r)
    return {j["name"]: {"workload": j["workload"], "workload_params": j["params"],
                        "placement": j["placement"], "hosts": j["hosts"], "seed": j["seed"],
                        **metrics.summarize(g, parts[j["name"]], mine[j["name"]],
                                            time_scale=scale),
                        **tagged_figures(parts[j["name"]], ran[j["name"]], mine[j["name"]],
                                         scale)}
            for j in schedule.meta["jobs"]}


def record_run(g, schedule, executed, records, scale, spec, run_dir, head, tail):
    """The metrics of one run from its flow records, written as ``summary.json``,
    ``flows.csv`` and ``trace.jsonl`` in ``run_dir``, the same for every backend; returns the
    summary dict. ``executed`` is the schedule as the backend ran it (times divided by
    ``scale``); ``head`` and ``tail`` are the backend's own fields. A schedule with jobs gets
    the fabric-wide figures over every flow and, under ``jobs``, each job's own
    (:func:`job_figures`), phases and inference latencies included (requests and phases of
    different jobs are not pooled). ``optics`` is the fabric's cable kilometres and
    transceivers (:func:`fabric.optics.fabric_optics`)."""
    result = {
        "topology": g.graph["name"],
        "topology_params": g.graph.get("params", {}),
        "policy": spec["policy"],
        "workload": workload_name(spec),
        "workload_params": None if spec["jobs"] else spec["workload"]["params"],
        "seed": schedule.meta.get("seed"),
        "optics": optics.fabric_optics(g),
        **head,
        **metrics.summarize(g, schedule, records, time_scale=scale),
        **tail,
    }
    if schedule.meta.get("jobs"):
        result["jobs"] = job_figures(g, schedule, executed, records, scale)
    else:
        result.update(tagged_figures(schedule, executed, records, scale))
    metrics.write_flows_csv(os.path.join(run_dir, "flows.csv"), schedule, records, scale)
    write_trace(os.path.join(run_dir, "trace.jsonl"), schedule, records, scale,
                topology=model.summary(g))
    _write_json(os.path.join(run_dir, "summary.json"), result)
    return result


def run_twin(g, schedule, spec, run_dir, log, five_tuples=None, circuits=None, phases=None):
    """One run on fabric ``g`` in the flow-level simulator (fabric/twin.py); returns its
    summary dict (also written to run_dir), in the emulation's format with ``backend:
    twin``. ``five_tuples`` (an emulation run's ``connections.json``) replays that run's
    connections, so its ECMP hash choices; ``circuits`` are moved to as the run starts,
    ``phases`` between the schedule's phases (see :func:`run_once`)."""
    from fabric.twin import Twin
    os.makedirs(run_dir, exist_ok=True)
    schedule.to_jsonl(os.path.join(run_dir, "schedule.jsonl"))
    tw, em, ctl = spec["twin"], spec["emulation"], spec["controller"]
    emulated = tw["timebase"] == "emulated"
    scale = rate_scale(g, em["host_link_mbps"]) if emulated else 1.0
    executed = schedule.scale_times(1.0 / scale) if emulated else schedule
    twin = Twin(g, executed, policy=spec["policy"], capacity_scale=scale,
                stats_interval_s=ctl["stats_interval_s"], fast_failover=ctl["fast_failover"],
                options=ctl["options"], seed=run_seed(schedule, spec),
                delay_scale=(1.0 / scale) if em["emulate_delay"] else None,
                mtu_bytes=em["mtu"],
                detect_s=tw["detect_s"], max_time_s=tw["max_time_s"],
                resolution=tw["resolution"], epoch=tw["epoch"], five_tuples=five_tuples,
                reconfiguration=None if circuits is None else {
                    "at_s": 0.0, "circuits": circuits,
                    "dark_s": optical.reconfigure(g, circuits)[1].reconfiguration_ms / 1e3
                    / scale},
                circuit_phases=None if phases is None else {
                    "phase_of": phases["phase_of"], "circuits": phases["circuits"],
                    "pairs": [list(d) for d in phases["demands"]],
                    "dark_s_per_ms": 1e-3 / scale})
    records, info = twin.run()
    log(f"  {g.graph['name']}: twin simulated {info['simulated_s']:.4g} s in "
        f"{info['wall_s']:.2f} s wall ({info['events']} events)")
    head = {
        "backend": "twin",
        "scale": scale,
        "host_link_mbps": em["host_link_mbps"] if emulated else None,
        "delay_emulated": bool(em["emulate_delay"]),
        "delay_method": "twin" if em["emulate_delay"] else "none",
        "timed_out": info["timed_out"],
        "ready": {},
        "connection_setup_s": None,
        "controller_flows_learned": info["flows_learned_at_setup"],
        "controller_flow_setups_per_s": None,
        "cpu_idle_min": None, "cpu_idle_mean": None, "cpu_saturated": False,
    }
    tail = {"twin": dict(info, timebase=tw["timebase"], resolution=tw["resolution"],
                        epoch=tw["epoch"]),
            "controller": twin.core.status()}
    res = record_run(g, schedule, executed, records, scale, spec, run_dir, head, tail)
    if phases is not None:
        # Nominal, as the run's other times (an emulated timebase runs 1 / scale slower).
        res["ocs_reconfigurations"] = [
            {"at_s": round(m["at_s"] * scale, 9), "phase": phases["labels"][m["phase"]],
             "steps": m["steps"], "circuits_changed": m["circuits_removed"]
             + m["circuits_added"], "dark_ms": round(m["dark_s"] * scale * 1e3, 6)}
            for m in twin.reconfigurations]
    return res


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")


def build_schedule(spec, g, seed, placed=None):
    """The schedule of a run of ``spec`` on fabric ``g`` with ``seed``: its workload's, or its
    jobs' merged (traffic/jobs.py), placed as ``placed`` says (job name -> hosts, from
    ``jobs.place`` on the main fabric), by default on ``g`` itself."""
    if spec["jobs"] is None:
        return workloads.build(spec["workload"]["name"], g, seed, **spec["workload"]["params"])
    return jobs.build(g, spec["jobs"], seed, placed=placed, name=spec["name"])


def with_circuits(g, schedule, spec):
    """Fabric ``g`` with the circuit plan the spec asks for the run of ``schedule``, and what
    that plan is (None for a fabric without optical circuit switches).

    ``circuits: engineered`` engineers circuits for the schedule's demand between blocks
    (fabric/optical.py, controllers/topoeng.py) before the run starts, as between two jobs:
    the reconfiguration from the topology's own plan is reported (``reconfiguration_ms``,
    nominal), not overlapped with the run's flows. ``circuits: reconfigure`` runs on the
    topology's own plan and moves to the engineered one as the flows start: the fabric
    returned is the starting one and ``info["move_to"]`` the circuits to move to.
    ``circuits: phased`` engineers one plan per phase of the schedule (fabric/optical.py
    ``phase_plans``): the fabric returned holds the first phase's (set up before the run, as
    for ``engineered``), ``info["phase_plans"]`` (not JSON: :func:`run_once` takes it) all
    of them, and ``info["phases"]`` each phase's label, circuits and direct share.
    """
    if not optical.is_optical(g):
        return g, None
    demand = optical.block_demand(g, schedule)
    info = {"plan": spec["circuits"], "direct_share_uniform": optical.direct_share(g, demand)}
    if spec["circuits"] == "phased":
        try:
            pp = optical.phase_plans(g, schedule)
        except model.TopologyError as e:
            raise RunError(f"circuits: phased: {e}") from None
        # Each phase's fabric, once; the first phase's is also the run's starting move.
        moved = [optical.reconfigure(g, c) for c in pp["circuits"]]
        new, plan = moved[0]
        lgs = [lg for lg, _ in moved]
        served = sum(optical.direct_share(lg, d) * sum(d.values())
                     for lg, d in zip(lgs, pp["demands"]))
        total = sum(sum(d.values()) for d in pp["demands"])
        info.update(reconfiguration_ms=plan.reconfiguration_ms,
                    circuits_changed=len(plan.removed) + len(plan.added),
                    phase_tag=pp["tag"], phase_plans=pp,
                    phases=[{"phase": label, "circuits": c,
                             "direct_share": optical.direct_share(lg, d)}
                            for label, c, lg, d in zip(pp["labels"], pp["circuits"], lgs,
                                                       pp["demands"])],
                    direct_share=served / total if total else 1.0,
                    circuits=optical.circuits_of(new))
        return new, info
    if spec["circuits"] in ("engineered", "reconfigure"):
        try:
            target = optical.engineered_circuits(optical.physical(g), demand)
        except model.TopologyError as e:
            raise RunError(f"circuits: {spec['circuits']}: {e}") from None
        new, plan = optical.reconfigure(g, target)
        info.update(reconfiguration_ms=plan.reconfiguration_ms,
                    circuits_changed=len(plan.removed) + len(plan.added))
        if spec["circuits"] == "engineered":
            g = new
        else:
            info.update(move_to=optical.circuits_of(new),
                        direct_share_after=optical.direct_share(new, demand))
    else:
        info.update(reconfiguration_ms=0.0, circuits_changed=0)
    info.update(direct_share=optical.direct_share(g, demand), circuits=optical.circuits_of(g))
    return g, info


def prepare(spec, where):
    """Build the fabric(s) and check the workload (or the jobs: their placement and
    workloads) before any network exists."""
    try:
        g = build_topology(spec["topology"]["name"], **spec["topology"]["params"])
    except model.TopologyError as e:
        raise specs.SpecError(f"{where}: topology: {e}") from None
    try:
        if spec["backend"] == "emulation" or spec["twin"]["timebase"] == "emulated":
            rate_scale(g, spec["emulation"]["host_link_mbps"])
        build_schedule(spec, g, spec["seed"])
    except (EmulationError, workloads.WorkloadError, jobs.JobError) as e:
        raise specs.SpecError(f"{where}: {e}") from None
    if spec["circuits"] != "uniform" and not optical.is_optical(g):
        raise specs.SpecError(f"{where}: circuits: {spec['circuits']!r} needs a topology with "
                              f"optical circuit switches (jupiter, railocs), got "
                              f"{spec['topology']['name']!r}")
    fabrics = [g]
    if spec["baseline"]:
        fabrics.append(nonblocking_like(g))
    return fabrics


def _medians(results):
    """Median, min and max over ``results`` of every key figure they all have."""
    out = {}
    for key in KEY_FIGURES:
        vals = [r.get(key) for r in results]
        if vals and all(v is not None for v in vals):
            out[key] = metrics.median_min_max(vals)
    out["all_flows_completed"] = all(r["flows_completed"] == r["flows_total"] for r in results)
    return out


def aggregate(runs, fabric_name):
    """A fabric's figures over its runs (repeats); with jobs, each job's under ``jobs``."""
    mine = [r for r in runs if r["topology"] == fabric_name]
    out = _medians(mine)
    out["runs"] = len(mine)
    out["cpu_saturated_runs"] = sum(1 for r in mine if r["cpu_saturated"])
    if mine and "jobs" in mine[0]:
        out["jobs"] = {name: _medians([r["jobs"][name] for r in mine])
                       for name in mine[0]["jobs"]}
    return out


def _job_summary(main, runs):
    """The top-level figures of every job of the main fabric: medians over its runs."""
    return {name: {"workload": runs[0]["jobs"][name]["workload"],
                   "placement": runs[0]["jobs"][name]["placement"],
                   "ranks": runs[0]["jobs"][name]["ranks"],
                   "flows_total": runs[0]["jobs"][name]["flows_total"],
                   "flows_completed": min(r["jobs"][name]["flows_completed"] for r in runs),
                   **{k: fig[k]["median"] if k in fig else None for k in KEY_FIGURES
                      if not k.startswith("cpu_")}}
            for name, fig in main["jobs"].items()}


def run_spec(spec, where, results_dir, log=print, report_at_end=True):
    """Run every repeat of a checked spec; return (run directory, top-level summary). The
    report (fabric/report.py) is drawn at the end unless ``report_at_end`` is off."""
    # Absolute: the controller and the agents run in the package's directory, not ours.
    results_dir = os.path.abspath(results_dir)
    fabrics = prepare(spec, where)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{spec['name']}"
    out_dir = os.path.join(results_dir, run_id)
    os.makedirs(out_dir, exist_ok=True)
    runs = []
    all_rows = []
    for rep in range(spec["repeats"]):
        seed = spec["seed"] + rep
        order = fabrics if rep % 2 == 0 else fabrics[::-1]
        placed = None if spec["jobs"] is None else jobs.place(fabrics[0], spec["jobs"], seed)
        for g in order:
            schedule = build_schedule(spec, g, seed, placed)
            label = f"{g.graph['name']}-r{rep + 1}"
            log(f"run {label} (seed {seed})")
            run_g, circuits = with_circuits(g, schedule, spec)
            phases = None if circuits is None else circuits.pop("phase_plans", None)
            res = run_once(run_g, schedule, spec, os.path.join(out_dir, "runs", label), log,
                           circuits=None if circuits is None else circuits.get("move_to"),
                           phases=phases)
            res["label"] = label
            if circuits is not None:
                if phases is not None:
                    moves = res.pop("ocs_reconfigurations")
                    circuits.update(reconfigurations=moves, reconfigurations_dark_ms=sum(
                        m["dark_ms"] for m in moves))
                res["ocs"] = circuits
                _write_json(os.path.join(out_dir, "runs", label, "summary.json"), res)
            runs.append(res)
            with open(os.path.join(out_dir, "runs", label, "flows.csv")) as f:
                all_rows += [dict(row, run=label) for row in csv.DictReader(f)]
    main_name = fabrics[0].graph["name"]
    main = aggregate(runs, main_name)
    mine = [r for r in runs if r["topology"] == main_name]
    first = mine[0]
    summary = {
        "run_id": run_id,
        "spec": spec,
        "topology": main_name,
        "policy": spec["policy"],
        "backend": spec["backend"],
        "workload": workload_name(spec),
        "repeats": spec["repeats"],
        "scale": first["scale"],
        "delay_emulated": first["delay_emulated"],
        "delay_method": first.get("delay_method"),
        "flows_total": first["flows_total"],
        "flows_completed": min(r["flows_completed"] for r in mine),
        **{k: main[k]["median"] if k in main else None for k in KEY_FIGURES},
        **({"jobs": _job_summary(main, mine)} if "jobs" in main else {}),
        "figures": {g.graph["name"]: aggregate(runs, g.graph["name"]) for g in fabrics},
        "optics": {g.graph["name"]: optics.fabric_optics(g) for g in fabrics},
        **({"ocs": first["ocs"]} if "ocs" in first else {}),
        "runs": runs,
    }
    _write_json(os.path.join(out_dir, "summary.json"), summary)
    if all_rows:
        with open(os.path.join(out_dir, "flows.csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["run"] + [k for k in all_rows[0] if k != "run"])
            w.writeheader()
            w.writerows(all_rows)
    records = summary["flows_total"] * len(runs)
    if report_at_end and records <= REPORT_MAX_FLOWS:
        log(f"report: {report.write(out_dir)}")
    elif report_at_end:
        log(f"report: not written for {records} flow records "
            f"(`aifabric report {out_dir}` makes it)")
    return out_dir, summary


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}{unit}"
    return f"{v}{unit}"


def _table_row(name, runs, fig):
    eff = fig.get("efficiency")
    eff_s = (f"{eff['median']:.3f} / {eff['min']:.3f} / {eff['max']:.3f}" if eff else "-")
    med = {k: (fig[k]["median"] if k in fig else None) for k in KEY_FIGURES}
    return (f"{name:<12} {runs:>4} {eff_s:>26} "
            f"{fmt(med['completion_time_s'], ' s'):>12} "
            f"{fmt(med['lower_bound_s'], ' s'):>12} "
            f"{fmt(med['busbw_gbps'], ' Gb/s'):>12} "
            f"{fmt(med['cpu_idle_min']):>12}")


def _inference_line(label, inf):
    ms = {k: fmt(inf[k] * 1e3 if inf[k] is not None else None)
          for k in ("ttft_p50_s", "ttft_p95_s", "ttft_p99_s",
                    "e2e_p50_s", "e2e_p95_s", "e2e_p99_s")}
    return (f"{label}: TTFT p50/p95/p99 {ms['ttft_p50_s']}/{ms['ttft_p95_s']}/"
            f"{ms['ttft_p99_s']} ms, end-to-end {ms['e2e_p50_s']}/{ms['e2e_p95_s']}/"
            f"{ms['e2e_p99_s']} ms, goodput {fmt(inf['goodput_rps'])} req/s, "
            f"{inf['completed']}/{inf['requests']} requests")


def _optics_line(name, o):
    used = ", ".join(f"{c} {n}" for c, n in o["transceivers_by_class"].items() if n)
    return (f"optics {name}: {o['length_km_by_medium']['optical']:.4g} km fiber, "
            f"{o['length_km_by_medium']['copper']:.4g} km copper, "
            f"{o['transceivers_total']} transceivers ({used})")


def table(summary):
    """The short table `make demo` and `make experiment` print: a line per fabric, under it
    a line per job (``job <name>``, its own figures) when the spec has jobs, and a line per
    fabric of its fiber, copper and transceivers."""
    lines = [f"{'fabric':<12} {'runs':>4} {'efficiency (med/min/max)':>26} "
             f"{'completion':>12} {'bound':>12} {'busbw':>12} {'cpu idle min':>12}"]
    for name, fig in summary["figures"].items():
        lines.append(_table_row(name, fig["runs"], fig))
        for job, job_fig in fig.get("jobs", {}).items():
            lines.append(_table_row(f"  job {job}", fig["runs"], job_fig))
    for run in summary["runs"]:
        if run.get("inference"):
            lines.append(_inference_line(run["label"], run["inference"]))
        for job, job_fig in run.get("jobs", {}).items():
            if job_fig.get("inference"):
                lines.append(_inference_line(f"{run['label']} job {job}", job_fig["inference"]))
    for name, o in summary["optics"].items():
        lines.append(_optics_line(name, o))
    lines.append(f"(backend {summary['backend']}; nominal units: run time x scale "
                 f"{summary['scale']:.3g}; "
                 f"propagation delay emulated: {summary['delay_emulated']} "
                 f"({summary.get('delay_method', '-')}); "
                 f"flows completed {summary['flows_completed']}/{summary['flows_total']})")
    return "\n".join(lines)


# What a bad spec or a failed run raises: one line naming what is wrong, exit status 2.
RUN_ERRORS = (specs.SpecError, RunError, ControllerError, EmulationError, CoordinatorError,
              TwinError)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run an experiment spec.")
    p.add_argument("spec", help="spec file, or the name of a bundled one (demo, ...: "
                                "fabric/bundled.py)")
    p.add_argument("--results", default="results")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--policy", help="run under this routing policy instead of the spec's")
    a = p.parse_args(argv)
    a.spec = bundled.resolve(a.spec)
    log = (lambda *_: None) if a.quiet else (lambda m: print(m, flush=True))
    try:
        spec = specs.load(a.spec, policy=a.policy)
        if spec["backend"] == "emulation" and os.geteuid() != 0:
            raise RunError("emulation needs root (Mininet creates namespaces and bridges)")
        terminate_on_sigterm()
        out_dir, summary = run_spec(spec, a.spec, a.results, log)
    except RUN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: network, controller and agents torn down", file=sys.stderr)
        return 130
    print(table(summary))
    print(f"results: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
