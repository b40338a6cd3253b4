"""Experiment specs: one YAML file names the topology, policy, workload, seed and repeats.

:func:`load` reads and checks a spec once and returns a plain dict with every default filled
in; any problem raises :class:`SpecError` naming the file, the key path and the value. The
rules are the pydantic models of fabric/config.py (the spec's JSON Schema comes from them
too); this module reads the file and words the error. Nothing here
builds a network; fabric/runner.py does that from the checked spec.

Example::

    name: demo
    seed: 1
    repeats: 1
    baseline: false              # also run a one-switch non-blocking fabric, same hosts/rates
    circuits: uniform            # OCS topologies: engineered for the run's demand before it,
                                 # reconfigure to that plan as the run starts, or phased:
                                 # one plan per phase (job), moved as each phase ends
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
time it has run ends with the flows ending now, 0 = exact; ``epoch``: solve the rates again
only once this fraction of the flows in flight have started or ended, 0 = at every event).
"""

import yaml

from fabric import config
from fabric.config import (BACKENDS, CIRCUIT_PLANS, COUNTED_PLACEMENTS,  # noqa: F401
                           CONGESTION_CONTROLS, MAX_JOB_NAME, POLICY_NAMES, SECTIONS,
                           TIMEBASES)


def _defaults(model):
    return {name: field.get_default(call_default_factory=True)
            for name, field in model.model_fields.items()}


# Every default a checked spec fills in (fields without one are None), and the keys a spec
# and a job may have: read from the models (fabric/config.py), for the reference
# generator (scripts/gen_spec_doc.py) and for callers that look defaults up.
DEFAULTS = {name: default for name, default in _defaults(config.Spec).items()
            if name not in ("topology", "workload", "jobs")}
DEFAULTS.update({section: _defaults(model) for section, model in SECTIONS.items()})
TOP_KEYS = set(config.Spec.model_fields)
JOB_KEYS = tuple(config.Job.model_fields)


class SpecError(ValueError):
    """A spec file that cannot be run; the message names the file, key and value."""


def check(spec, where="spec"):
    """Validate a spec mapping; return a new dict with defaults filled in.

    Parameters
    ----------
    spec : dict
        The spec as read from YAML (or an already checked spec: checking is idempotent).
    where : str
        What to name in an error: the file, and a sweep's cell.

    Returns
    -------
    dict
        :class:`fabric.config.Spec`'s ``model_dump()``: every key present, ``placement:
        {hosts: [...]}`` as ``placement: explicit, hosts: [...]``, the default ``name``.

    Raises
    ------
    SpecError
        ``"<where>: <key path and value>"``, one line, for the first problem.
    """
    if not isinstance(spec, dict):
        raise SpecError(f"{where}: a spec must be a YAML mapping")
    try:
        return config.Spec.model_validate(spec).model_dump()
    except config.ValidationError as e:
        raise SpecError(f"{where}: {config.explain(e, config.Spec, spec)}") from None


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
