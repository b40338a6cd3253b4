"""Workload registry: the generators an experiment spec can name, checked like topologies.

Each entry takes the fabric's host list first and keyword parameters after; :func:`build`
rejects unknown workloads and parameters with a message naming them. Generators live in their
own modules (traffic/moe.py, ...); this module only maps names to them.
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


def build(name, hosts, seed, **params):
    """Schedule of workload ``name`` over ``hosts`` with ``seed`` and keyword ``params``."""
    if name not in WORKLOADS:
        raise WorkloadError(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}")
    fn = WORKLOADS[name]
    accepted = [p for p in inspect.signature(fn).parameters if p not in ("hosts", "seed")]
    for key in params:
        if key not in accepted:
            raise WorkloadError(f"workload {name!r}: unknown parameter {key!r}; "
                                f"accepted: {', '.join(accepted)}")
    try:
        return fn(list(hosts), seed=seed, **params)
    except (TypeError, ValueError) as e:
        raise WorkloadError(f"workload {name!r}: {e}") from None
