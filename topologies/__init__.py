"""Topology builders: each turns a few parameters into a validated fabric graph.

The graph type and its conventions belong to fabric/model.py; this package only decides which
nodes and links a fabric has. It must not import Mininet at module level and needs no root.
Experiment specs name a topology and its parameters; :func:`build` checks both and returns
the graph. Each builder module is also a Mininet custom file (``mn --custom
topologies/fattree.py --topo fattree,4``).

Numbering tags (``pod``, ``server``, ``rail``, ``site``) start at 1 like node names; site 0 is
the data center of the edge topology.
"""

import inspect

from fabric.model import TopologyError
from topologies import edge, fattree, jupiter, leafspine, nonblocking, rail, railocs

__all__ = ["TOPOLOGIES", "build"]

TOPOLOGIES = {
    "fattree": fattree.fat_tree,
    "leafspine": leafspine.leaf_spine,
    "rail": rail.rail_optimized,
    "edge": edge.edge,
    "nonblocking": nonblocking.nonblocking,
    "jupiter": jupiter.jupiter,
    "railocs": railocs.rail_ocs,
}


def build(name, **params):
    """Build topology ``name`` of :data:`TOPOLOGIES` with keyword ``params``.

    Parameters
    ----------
    name : str
        A key of :data:`TOPOLOGIES`.
    **params
        Parameters of that builder; omitted ones take the builder's defaults.

    Returns
    -------
    networkx.Graph
        The validated fabric.

    Raises
    ------
    TopologyError
        If ``name`` is unknown, a parameter name is not one the builder accepts, or a value is
        out of range; the message names the offending name or value.

    Examples
    --------
    >>> from fabric.model import hosts
    >>> len(hosts(build("leafspine", leaves=2, hosts_per_leaf=3)))
    6
    """
    if not isinstance(name, str) or name not in TOPOLOGIES:
        raise TopologyError(
            f"unknown topology {name!r}, expected one of {', '.join(TOPOLOGIES)}")
    builder = TOPOLOGIES[name]
    accepted = inspect.signature(builder).parameters
    for param in params:
        if param not in accepted:
            raise TopologyError(
                f"topology {name!r} has no parameter {param!r}; it accepts {', '.join(accepted)}")
    return builder(**params)
