"""Experiment specs: one YAML file names the topology, policy, workload, seed and repeats.

:func:`load` reads and checks a spec once and returns a plain dict with every default filled
in; any problem raises :class:`SpecError` naming the file, the key and the value. Nothing here
builds a network; fabric/runner.py does that from the checked spec.

Example::

    name: demo
    seed: 1
    repeats: 1
    baseline: false              # also run a one-switch non-blocking fabric, same hosts/rates
    circuits: uniform            # OCS topologies: engineered for the run's demand before it,
                                 # or reconfigure to that plan as the run starts
    topology: {name: fattree, params: {k: 4}}
    policy: ecmp                 # a routing core policy, or "stp" (Ryu's simple_switch_stp_13)
    controller: {stats_interval_s: 1.0, fast_failover: true, options: {hot_util: 0.8}}
    workload: {name: moe_alltoall, params: {skew: 1.2, schedule: shift, channels: 3}}
    # or, instead of workload, several jobs at once (traffic/jobs.py):
    # jobs:
    #   - {name: moe, workload: {name: moe_alltoall}, placement: packed, hosts: 8}
    #   - {name: ring, workload: {name: allreduce_ring}, placement: {hosts: [h2, h4]}}
    emulation: {host_link_mbps: 20, queue_packets: 1000, congestion_control: cubic}
    timeout_s: 120
    backend: emulation           # or twin: the flow-level simulator (fabric/twin.py)
    twin: {timebase: nominal, detect_s: 0.0}

A spec has ``workload`` or ``jobs``, never both. Each job has a ``name`` (letters, digits, - or
_, at most :data:`MAX_JOB_NAME` characters, unique: it prefixes the job's flow ids, which the
agents send in 64 bytes), a ``workload`` (as the spec's) and where it runs: ``placement``
``packed`` (the default), ``spread`` or ``random`` with ``hosts: N``, or ``placement: {hosts:
[h1, h5, ...]}``; checked, the latter reads ``placement: explicit, hosts: [h1, h5, ...]``.
Whether the hosts exist and suffice is checked on the fabric (traffic/jobs.py, called by the
runner before any network exists).

``controller`` configures our controller (ignored by reference apps): statistics period,
FAST_FAILOVER protection, policy thresholds (controllers.policies.PolicyConfig) and
gray-failure and flap-dampening thresholds (``health``, controllers.health.HealthConfig).
``backend`` picks who carries the flows: ``emulation`` (Mininet, Open vSwitch, the Ryu app) or
``twin``, which needs no root; ``twin`` configures the latter (its ``timebase``: ``nominal``
runs the fabric's own rates and seconds, ``emulated`` the emulation's scaled ones; ``detect_s``:
time from a link failure to the controller's port event; ``max_time_s``: a simulated-time
limit, none by default; ``resolution``: a flow whose time left is below this fraction of the
time it has run ends with the flows ending now, 0 = exact).
"""

import copy
import numbers

import yaml

from controllers.core import POLICIES
from controllers.health import HealthConfig, HealthError
from controllers.policies import PolicyConfig, PolicyError
from fabric.controller import REFERENCE_APPS

POLICY_NAMES = POLICIES + tuple(REFERENCE_APPS)
BACKENDS = ("emulation", "twin")
TIMEBASES = ("nominal", "emulated")
CIRCUIT_PLANS = ("uniform", "engineered", "reconfigure")

DEFAULTS = {
    "name": None,
    "seed": 1,
    "repeats": 1,
    "baseline": False,
    "circuits": "uniform",
    "policy": "ecmp",
    "backend": "emulation",
    "timeout_s": 120.0,
    "controller": {
        "stats_interval_s": 1.0,
        "fast_failover": True,
        "options": {},
        "health": {},
    },
    "emulation": {
        "host_link_mbps": 20.0,
        "queue_packets": 1000,
        "congestion_control": "cubic",
        "tcp_window_bytes": 65536,
        "mtu": 9000,
        "static_arp": True,
        "emulate_delay": True,
    },
    "twin": {
        "timebase": "nominal",
        "detect_s": 0.0,
        "max_time_s": None,
        "resolution": 0.0,
    },
}
TOP_KEYS = set(DEFAULTS) | {"topology", "workload", "jobs"}
JOB_KEYS = ("name", "workload", "placement", "hosts")
COUNTED_PLACEMENTS = ("packed", "spread", "random")
MAX_JOB_NAME = 16


class SpecError(ValueError):
    """A spec file that cannot be run; the message names the file, key and value."""


def _need(cond, where, msg):
    if not cond:
        raise SpecError(f"{where}: {msg}")


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _named(spec, key, where):
    part = spec.get(key)
    _need(part is not None, where, f"missing key '{key}'")
    if isinstance(part, str):
        part = {"name": part}
    _need(isinstance(part, dict), where, f"'{key}' must be a name or a mapping, got {part!r}")
    extra = set(part) - {"name", "params"}
    _need(not extra, where, f"'{key}' has unknown keys {sorted(extra)}")
    _need(isinstance(part.get("name"), str), where, f"'{key}.name' must be a string")
    params = part.get("params") or {}
    _need(isinstance(params, dict), where, f"'{key}.params' must be a mapping, got {params!r}")
    return {"name": part["name"], "params": params}


def _job(job, index, where, seen):
    """One checked job of ``jobs``: ``name``, ``workload``, ``placement``, ``hosts``."""
    at = f"{where}: jobs[{index}]"
    _need(isinstance(job, dict), at, f"a job must be a mapping, got {job!r}")
    unknown = set(job) - set(JOB_KEYS)
    _need(not unknown, at, f"unknown keys {sorted(unknown)}; known: {list(JOB_KEYS)}")
    name = job.get("name")
    _need(isinstance(name, str) and name.replace("-", "").replace("_", "").isalnum()
          and len(name) <= MAX_JOB_NAME, at,
          f"'name' must be 1-{MAX_JOB_NAME} letters, digits, - or _, got {name!r}")
    at = f"{where}: job {name!r} (jobs[{index}])"
    _need(name not in seen, at, f"'name' {name!r} is used by jobs[{seen.get(name)}] too")
    seen[name] = index
    out = {"name": name, "workload": _named(job, "workload", at)}
    placement, hosts = job.get("placement", "packed"), job.get("hosts")
    if isinstance(placement, dict):
        extra = set(placement) - {"hosts"}
        _need(not extra, at, f"'placement' has unknown keys {sorted(extra)}; known: ['hosts']")
        _need(hosts is None, at, "'hosts' is not allowed beside 'placement.hosts'")
        placement, hosts, key = "explicit", placement.get("hosts"), "placement.hosts"
    else:
        key = "hosts"
    if placement == "explicit":
        _need(isinstance(hosts, list) and hosts and all(isinstance(h, str) for h in hosts),
              at, f"'{key}' must be a non-empty list of host names, got {hosts!r}")
        for h in hosts:
            _need(hosts.count(h) == 1, at, f"'{key}' lists {h!r} more than once")
    else:
        _need(placement in COUNTED_PLACEMENTS, at,
              f"'placement' must be one of {list(COUNTED_PLACEMENTS)} or "
              f"{{hosts: [h1, ...]}}, got {placement!r}")
        _need(_is_int(hosts) and hosts >= 1, at,
              f"'hosts' must be an integer >= 1 (how many hosts, placement {placement}), "
              f"got {hosts!r}")
    return dict(out, placement=placement, hosts=hosts)


def _jobs(jobs, where):
    """The checked ``jobs`` list (see the module docstring)."""
    _need(isinstance(jobs, list) and jobs, where,
          f"'jobs' must be a non-empty list of jobs, got {jobs!r}")
    seen = {}
    return [_job(job, i, where, seen) for i, job in enumerate(jobs)]


def check(spec, where="spec"):
    """Validate a spec mapping; return a new dict with defaults filled in."""
    _need(isinstance(spec, dict), where, "a spec must be a YAML mapping")
    unknown = set(spec) - TOP_KEYS
    _need(not unknown, where, f"unknown keys {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    out = copy.deepcopy(DEFAULTS)
    for section in ("emulation", "controller", "twin"):
        part = spec.get(section) or {}
        _need(isinstance(part, dict), where, f"'{section}' must be a mapping")
        bad = set(part) - set(DEFAULTS[section])
        _need(not bad, where, f"unknown {section} keys {sorted(bad)}; "
                              f"known: {sorted(DEFAULTS[section])}")
        out[section].update(part)
    out.update({k: v for k, v in spec.items() if k not in ("emulation", "controller", "twin")})
    out["topology"] = _named(spec, "topology", where)
    has_jobs = spec.get("jobs") is not None
    _need(not (has_jobs and spec.get("workload") is not None), where,
          "give 'workload' or 'jobs', not both")
    out["workload"] = None if has_jobs else _named(spec, "workload", where)
    out["jobs"] = _jobs(spec["jobs"], where) if has_jobs else None
    _need(_is_int(out["seed"]) and out["seed"] >= 0, where,
          f"'seed' must be an integer >= 0, got {out['seed']!r}")
    _need(_is_int(out["repeats"]) and out["repeats"] >= 1, where,
          f"'repeats' must be an integer >= 1, got {out['repeats']!r}")
    _need(isinstance(out["baseline"], bool), where,
          f"'baseline' must be true or false, got {out['baseline']!r}")
    _need(out["circuits"] in CIRCUIT_PLANS, where,
          f"'circuits' must be one of {list(CIRCUIT_PLANS)}, got {out['circuits']!r}")
    _need(out["policy"] in POLICY_NAMES, where,
          f"'policy' must be one of {list(POLICY_NAMES)}, got {out['policy']!r}")
    _need(out["backend"] in BACKENDS, where,
          f"'backend' must be one of {list(BACKENDS)}, got {out['backend']!r}")
    _need(out["backend"] != "twin" or out["policy"] in POLICIES, where,
          f"'policy' {out['policy']!r} is a Ryu reference app, which the twin does not run; "
          f"the twin runs {list(POLICIES)}")
    tw = out["twin"]
    _need(tw["timebase"] in TIMEBASES, where,
          f"'twin.timebase' must be one of {list(TIMEBASES)}, got {tw['timebase']!r}")
    _need(_is_num(tw["detect_s"]) and tw["detect_s"] >= 0, where,
          f"'twin.detect_s' must be a number >= 0, got {tw['detect_s']!r}")
    _need(tw["max_time_s"] is None or (_is_num(tw["max_time_s"]) and tw["max_time_s"] > 0),
          where, f"'twin.max_time_s' must be a number > 0, got {tw['max_time_s']!r}")
    _need(_is_num(tw["resolution"]) and 0 <= tw["resolution"] < 0.1, where,
          f"'twin.resolution' must be a number in [0, 0.1), got {tw['resolution']!r}")
    ctl = out["controller"]
    _need(_is_num(ctl["stats_interval_s"]) and ctl["stats_interval_s"] > 0, where,
          f"'controller.stats_interval_s' must be a number > 0, got {ctl['stats_interval_s']!r}")
    _need(isinstance(ctl["fast_failover"], bool), where,
          f"'controller.fast_failover' must be true or false, got {ctl['fast_failover']!r}")
    _need(isinstance(ctl["options"], dict), where,
          f"'controller.options' must be a mapping, got {ctl['options']!r}")
    try:
        PolicyConfig.from_options(ctl["options"])
    except (PolicyError, TypeError) as e:
        raise SpecError(f"{where}: 'controller.options': {e}") from None
    _need(isinstance(ctl["health"], dict), where,
          f"'controller.health' must be a mapping, got {ctl['health']!r}")
    try:
        HealthConfig.from_options(ctl["health"])
    except (HealthError, TypeError) as e:
        raise SpecError(f"{where}: 'controller.health': {e}") from None
    _need(_is_num(out["timeout_s"]) and out["timeout_s"] > 0, where,
          f"'timeout_s' must be a number > 0, got {out['timeout_s']!r}")
    em = out["emulation"]
    _need(_is_num(em["host_link_mbps"]) and 0 < em["host_link_mbps"] <= 1000, where,
          f"'emulation.host_link_mbps' must be in (0, 1000], got {em['host_link_mbps']!r}")
    _need(_is_int(em["queue_packets"]) and em["queue_packets"] >= 1, where,
          f"'emulation.queue_packets' must be an integer >= 1, got {em['queue_packets']!r}")
    _need(em["congestion_control"] in ("cubic", "reno", "bbr"), where,
          f"'emulation.congestion_control' must be cubic, reno or bbr, "
          f"got {em['congestion_control']!r}")
    _need(_is_int(em["tcp_window_bytes"]) and em["tcp_window_bytes"] >= 0, where,
          f"'emulation.tcp_window_bytes' must be an integer >= 0 (0: autotuning), "
          f"got {em['tcp_window_bytes']!r}")
    _need(_is_int(em["mtu"]) and 1280 <= em["mtu"] <= 9000, where,
          f"'emulation.mtu' must be an integer from 1280 to 9000, got {em['mtu']!r}")
    for key in ("static_arp", "emulate_delay"):
        _need(isinstance(em[key], bool), where,
              f"'emulation.{key}' must be true or false, got {em[key]!r}")
    if out["name"] is None:
        what = "jobs" if has_jobs else out["workload"]["name"]
        out["name"] = f"{out['topology']['name']}-{what}"
    _need(isinstance(out["name"], str) and out["name"].replace("-", "").replace("_", "").isalnum(),
          where, f"'name' must be letters, digits, - or _, got {out['name']!r}")
    return out


def read(path):
    """The YAML document in the spec file at ``path``, unchecked (fabric/sweep.py expands it
    into cells before :func:`check` sees them)."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as e:
        raise SpecError(f"{path}: cannot read spec: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {e}") from None


def load(path, policy=None):
    """Read and check the spec file at ``path``; ``policy``, if given, replaces its policy
    (checked like the file's own)."""
    raw = read(path)
    if policy is not None and isinstance(raw, dict):
        raw = dict(raw, policy=policy)
    return check(raw, where=str(path))
