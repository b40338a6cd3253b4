"""Several jobs on one fabric: where each runs, and one schedule that runs them all at once.

A spec may list *jobs* instead of one workload (fabric/spec.py checks their syntax): each has
a ``name``, a ``workload`` (as the spec's ``workload``) and a placement. This module turns them,
on a fabric, into the run's schedule; the runner and the metrics take that schedule as they
take any other (fabric/runner.py adds each job's own figures with :func:`split`).

Placement
---------
Jobs are placed in list order, each on hosts no earlier job took; within a job, hosts are its
ranks (the order its workload gets them) in the fabric's host order, or in the listed order
for explicit hosts.

- ``packed``: the first ``hosts`` free hosts in the fabric's host order, so a job fills a
  leaf (edge switch, pod) before the next one;
- ``spread``: free hosts taken round-robin over the fabric's groups (the switch each host
  hangs off, ``fabric.model.host_switch``, groups in order of their first host): the first
  free host of every group, then the second..., so a job spans as many switches as it can;
- ``random``: ``hosts`` free hosts drawn with ``numpy.random.default_rng([seed, index])``
  (``seed`` the run's, ``index`` the job's position in the list);
- explicit: the hosts listed (``placement: {hosts: [h1, h5, ...]}``).

Schedule
--------
Job ``index`` gets its workload's schedule on its hosts with seed ``seed + index``. Every flow
id and dependency becomes ``<job>/<id>`` and every flow gets the tag ``job: <name>``; the
schedules are merged into one whose flows all start on the same clock, so the jobs run
concurrently from time 0 (each by its own dependencies and start times), except a job with
``after: <earlier job>``: its first flows (those that wait for no flow of it) wait for every
flow of that job, so it runs once that job has ended, and it may take that job's hosts (and
those of the jobs that one ran after). The merged
schedule's ``meta`` has ``seed``, ``hosts`` (every job's, in job order) and ``jobs``: per job
its ``name``, ``workload``, ``params``, ``placement``, ``hosts``, ``seed`` and ``meta`` (its own
schedule's meta: ``collective``, ``size_bytes``...). With one job, the merged meta also carries
that job's ``collective`` and ``size_bytes``; with several, ``collective`` is ``"mixed"``, so
the fabric-wide figures have no bus bandwidth (each job has its own).
"""

from dataclasses import replace

import numpy as np

from fabric import model
from traffic import workloads
from traffic.schedule import Schedule

PLACEMENTS = ("packed", "spread", "random", "explicit")
TAG = "job"


class JobError(ValueError):
    """Jobs that cannot be placed on the fabric or built; the message names the job and key."""


def _where(index, job):
    return f"job {job['name']!r} (jobs[{index}])"


def _free_hosts(g, job, index, seed, free, taken):
    """The hosts job ``index`` runs on, given the ``free`` ones (in host order)."""
    mode, want = job["placement"], job["hosts"]
    if mode == "explicit":
        known = set(model.hosts(g))
        for h in want:
            if h not in known:
                raise JobError(f"{_where(index, job)}: 'placement.hosts': {h!r} is not a host "
                               f"of {g.graph['name']}")
            if h in taken:
                raise JobError(f"{_where(index, job)}: 'placement.hosts': {h!r} is already "
                               f"taken by job {taken[h]!r}")
        return list(want)
    if want > len(free):
        raise JobError(f"{_where(index, job)}: 'hosts': {want} asked for ({mode}), but only "
                       f"{len(free)} of the {len(model.hosts(g))} hosts of {g.graph['name']} "
                       f"are free")
    if mode == "packed":
        return free[:want]
    order = {h: i for i, h in enumerate(free)}
    if mode == "random":
        drawn = np.random.default_rng([seed, index]).choice(len(free), want,
                                                                    replace=False)
        return sorted((free[i] for i in drawn), key=order.get)
    groups = {}
    for h in free:
        groups.setdefault(model.host_switch(g, h)[0], []).append(h)
    rounds = max(len(members) for members in groups.values())
    dealt = [members[r] for r in range(rounds) for members in groups.values()
             if r < len(members)]
    return sorted(dealt[:want], key=order.get)


def place(g, jobs, seed):
    """Where every job runs on fabric ``g``.

    Parameters
    ----------
    g : networkx.Graph
        The fabric (fabric/model.py).
    jobs : list of dict
        Checked jobs (fabric/spec.py): ``name``, ``placement`` (one of :data:`PLACEMENTS`)
        and ``hosts`` (a count, or the host list for ``explicit``).
    seed : int
        The run's seed (``random`` placements).

    Returns
    -------
    dict
        Job name -> its hosts, in rank order (see the module docstring).

    Raises
    ------
    JobError
        For an unknown host, a host two jobs take, or more hosts asked for than are free,
        naming the job, the key and the value.
    """
    taken, placed, before = {}, {}, {}
    for index, job in enumerate(jobs):
        # The jobs this one runs after (its ``after``, theirs...) have ended when it starts.
        ended, prev = set(), job.get("after")
        while prev is not None:
            ended.add(prev)
            prev = before[prev]
        before[job["name"]] = job.get("after")
        free = [h for h in model.hosts(g) if taken.get(h) in ended or h not in taken]
        hs = _free_hosts(g, job, index, seed, free,
                         {h: j for h, j in taken.items() if j not in ended})
        taken.update(dict.fromkeys(hs, job["name"]))
        placed[job["name"]] = hs
    return placed


def _prefixed(schedule, name):
    tag = (TAG, name)
    return [replace(f, id=f"{name}/{f.id}", deps=tuple(f"{name}/{d}" for d in f.deps),
                    tags=tuple(t for t in f.tags if t[0] != TAG) + (tag,))
            for f in schedule.flows]


def build(g, jobs, seed, placed=None, name="jobs"):
    """The one schedule that runs every job on fabric ``g``: concurrently, or after the job
    its ``after`` names.

    Parameters
    ----------
    g : networkx.Graph
        The fabric the schedules are built for.
    jobs : list of dict
        Checked jobs (fabric/spec.py): ``name``, ``workload`` (``name``, ``params``),
        ``placement`` and ``hosts``.
    seed : int
        The run's seed: job ``index`` is built with ``seed + index``.
    placed : dict, optional
        Job name -> hosts, as :func:`place` returns (a baseline fabric reuses its main
        fabric's placement, so the jobs keep their hosts); default ``place(g, jobs, seed)``.
    name : str
        The merged schedule's name.

    Returns
    -------
    Schedule
        Validated; ids prefixed ``<job>/``, tag ``job``, meta as the module docstring says.

    Raises
    ------
    JobError
        If a job cannot be placed or its workload rejects its parameters or hosts.
    """
    if placed is None:
        placed = place(g, jobs, seed)
    flows, meta_jobs, by_job, needed = [], [], {}, {}
    for index, job in enumerate(jobs):
        wl = job["workload"]
        try:
            sched = workloads.build_on(wl["name"], g, placed[job["name"]], seed + index,
                                       **wl["params"])
        except workloads.WorkloadError as e:
            raise JobError(f"{_where(index, job)}: 'workload': {e}") from None
        own = _prefixed(sched, job["name"])
        if job.get("after") is not None:
            # Every flow of the earlier job is received once its last flows (those no flow
            # of it waits for) are: the job's first flows wait for those.
            sinks = [f.id for f in by_job[job["after"]]]
            sinks = [fid for fid in sinks if fid not in needed[job["after"]]]
            own = [replace(f, deps=tuple(sinks)) if not f.deps else f for f in own]
        by_job[job["name"]] = own
        needed[job["name"]] = {d for f in own for d in f.deps}
        flows += own
        meta_jobs.append({"name": job["name"], "workload": wl["name"], "params": wl["params"],
                          "placement": job["placement"], "hosts": placed[job["name"]],
                          "seed": seed + index, "meta": sched.meta})
    meta = {"seed": seed, "hosts": [h for j in meta_jobs for h in j["hosts"]],
            "jobs": meta_jobs}
    if len(meta_jobs) == 1:
        meta.update({k: meta_jobs[0]["meta"][k] for k in ("collective", "size_bytes")
                     if k in meta_jobs[0]["meta"]})
    else:
        meta["collective"] = "mixed"
    return Schedule(flows, name=name, meta=meta).validate(model.hosts(g))


def split(schedule):
    """Each job's own schedule out of a merged one (the same flows, ids prefixed, with the
    job's own ``meta``; without the waits for an earlier job, ``after``), in job order; empty
    for a schedule without jobs."""
    jobs = schedule.meta.get("jobs")
    if not jobs:
        return {}
    members = {j["name"]: [] for j in jobs}
    for f in schedule.flows:
        job = f.tag(TAG)
        if any(not d.startswith(f"{job}/") for d in f.deps):
            f = replace(f, deps=tuple(d for d in f.deps if d.startswith(f"{job}/")))
        members[job].append(f)
    return {j["name"]: Schedule(members[j["name"]], name=j["name"], meta=j["meta"])
            for j in jobs}


def intent_requests(schedule, intent_id, five_tuples):
    """The bodies of the intents of :func:`intents`: ``[(id, flows)]`` with every flow as
    the controller takes it (``src``, ``dst``, ``bytes``, its 5-tuple from ``five_tuples``,
    ``{flow id: [src ip, dst ip, proto, sport, dport]}``, and its phase: its depth in the
    dependency DAG, so the flows that run together are balanced together)."""
    phase = schedule.depths()
    return [(iid, [{"src": five_tuples[f.id][0], "dst": five_tuples[f.id][1],
                    "bytes": f.bytes, "flow": list(five_tuples[f.id]), "phase": phase[f.id]}
                   for f in part])
            for iid, part in intents(schedule, intent_id)]


def intents(schedule, intent_id):
    """The collective intents a run under ``collective`` announces: ``[(id, flows)]``, one
    with every flow and id ``intent_id`` for a schedule without jobs, else one per job with
    id ``<intent_id>.<job>``."""
    parts = split(schedule)
    if not parts:
        return [(intent_id, list(schedule.flows))]
    return [(f"{intent_id}.{name}", list(part.flows)) for name, part in parts.items()]
