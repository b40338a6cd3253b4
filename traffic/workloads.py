"""Workload registry: the generators an experiment spec can name, checked like topologies.

Each entry takes the fabric's host list first and keyword parameters after (and the fabric
itself as ``g`` when it places traffic by topology); :func:`build` runs one over every host of
a fabric, :func:`build_on` over a subset of them (a job's hosts, traffic/jobs.py); both reject
unknown workloads and parameters with a message naming them. Generators live in their own
modules (traffic/moe.py, ...); this module only maps names to them.
"""

import inspect

from traffic import chakra, collectives, inference, moe, trace, training

WORKLOADS = {
    "moe_alltoall": moe.moe_alltoall,
    "permutation": moe.permutation,
    "allreduce_ring": collectives.ring_allreduce,
    "allreduce_tree": collectives.tree_allreduce,
    "allreduce_hd": collectives.hd_allreduce,
    "allgather": collectives.ring_allgather,
    "reducescatter": collectives.ring_reducescatter,
    "alltoall": collectives.alltoall,
    "hierarchical": collectives.hierarchical,
    "alltoall_pxn": collectives.hierarchical_alltoall,
    "moe_layer": training.moe_layers,
    "training_iteration": training.training_iteration,
    "inference": inference.inference,
    "trace_replay": trace.trace_replay,
    "chakra": chakra.chakra_trace,
}


class WorkloadError(ValueError):
    """A workload was asked for with a name or parameters it does not have."""


def build(name, g, seed, **params):
    """Schedule of workload ``name`` over the hosts of fabric ``g`` with ``seed`` and keyword
    ``params``; generators that take the fabric get it as ``g``."""
    from fabric.model import hosts
    return build_on(name, g, hosts(g), seed, **params)


def build_on(name, g, hosts, seed, /, **params):
    """Schedule of workload ``name`` over ``hosts`` (some hosts of fabric ``g``, in rank
    order) with ``seed`` and keyword ``params``; generators that take the fabric get it as
    ``g`` (they read its tags for ``hosts`` only). ``hosts`` is a parameter no spec can set:
    one named ``hosts`` in ``params`` is rejected as unknown."""
    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}")
    fn = WORKLOADS[name]
    signature = inspect.signature(fn).parameters
    accepted = [p for p in signature if p not in ("hosts", "seed", "g")]
    for key in params:
        if key not in accepted:
            raise WorkloadError(f"workload {name!r}: unknown parameter {key!r}; "
                                f"accepted: {', '.join(accepted)}")
    if "g" in signature:
        params["g"] = g
    try:
        return fn(list(hosts), seed=seed, **params)
    except (TypeError, ValueError) as e:
        raise WorkloadError(f"workload {name!r}: {e}") from None
