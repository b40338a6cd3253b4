"""Two-tier leaf-spine (folded Clos) fabric as a topology model.

Builds the fabric graph only (see fabric/model.py); it must not import Mininet at module level
and needs no root. Also a Mininet custom file: ``mn --custom topologies/leafspine.py --topo
leafspine,4,2,4`` (leaves, spines, hosts per leaf).

Naming: leaves ``l1..``, spines ``s1..`` (dpids in that order), hosts ``h1..`` leaf by leaf.
Ports: a leaf has its hosts on ports 1..hosts_per_leaf and spine ``s<j>`` on
hosts_per_leaf + j; spine port i leads to leaf ``l<i>``.
"""

import os
import sys

# `mn --custom` execs this file with no __file__ and without the repo root on sys.path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from fabric import model  # noqa: E402
from topologies._custom import mininet_topos  # noqa: E402
from topologies._params import (  # noqa: E402
    choice, count, nonnegative, positive, transceiver as transceiver_class)


def leaf_spine(leaves=4, spines=2, hosts_per_leaf=4, host_gbps=400.0, uplink_gbps=None,
               oversubscription=None, medium="optical", length_km=0.0, transceiver=None):
    """Build a leaf-spine fabric: every leaf linked once to every spine.

    The uplink rate is given either directly (``uplink_gbps``) or through the oversubscription
    ratio of a leaf, ``hosts_per_leaf * host_gbps / (spines * uplink_gbps)``; with neither
    the fabric is non-blocking (1:1).

    Parameters
    ----------
    leaves, spines, hosts_per_leaf : int
        Switch and host counts, each >= 1.
    host_gbps : float
        Host link (NIC) capacity in Gbit/s.
    uplink_gbps : float, optional
        Leaf-spine link capacity in Gbit/s. Not together with ``oversubscription``.
    oversubscription : float, optional
        Downlink to uplink capacity ratio of a leaf (2.0 means 2:1).
    medium : {"optical", "copper"}
        Medium of every link.
    length_km : float
        Fiber length of every link in km.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py); by default each link gets the
        shortest-reach class of its medium that covers its length.

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"leafspine"``. Layers: leaf 0, spine 1. Hosts carry
        ``leaf`` (their leaf), leaves ``leaf`` (their own name). ``g.graph["params"]`` records
        the resulting ``uplink_gbps`` and the achieved ``oversubscription``.

    Raises
    ------
    TopologyError
        If a parameter is out of range, both ``uplink_gbps`` and ``oversubscription`` are
        given, or ``length_km`` is beyond the reach of ``transceiver``.

    Examples
    --------
    >>> g = leaf_spine(4, 2, 4, host_gbps=100, oversubscription=2)
    >>> g.edges["l1", "s1"]["capacity_gbps"], g.graph["params"]["oversubscription"]
    (100.0, 2.0)
    """
    leaves = count("leaves", leaves)
    spines = count("spines", spines)
    hosts_per_leaf = count("hosts_per_leaf", hosts_per_leaf)
    host_gbps = positive("host_gbps", host_gbps)
    medium = choice("medium", medium, model.MEDIA)
    length_km = nonnegative("length_km", length_km)
    transceiver = transceiver_class("transceiver", transceiver)
    if uplink_gbps is not None and oversubscription is not None:
        raise model.TopologyError(
            f"give uplink_gbps or oversubscription, not both (got uplink_gbps={uplink_gbps!r}, "
            f"oversubscription={oversubscription!r})")
    downlink_gbps = hosts_per_leaf * host_gbps
    if uplink_gbps is None:
        ratio = 1.0 if oversubscription is None else positive("oversubscription", oversubscription)
        uplink_gbps = downlink_gbps / (spines * ratio)
    else:
        uplink_gbps = positive("uplink_gbps", uplink_gbps)
        ratio = downlink_gbps / (spines * uplink_gbps)
    g = model.new_fabric(
        "leafspine", leaves=leaves, spines=spines, hosts_per_leaf=hosts_per_leaf,
        host_gbps=host_gbps, uplink_gbps=uplink_gbps, oversubscription=ratio, medium=medium,
        length_km=length_km, transceiver=transceiver)

    leaf_names = [f"l{i}" for i in range(1, leaves + 1)]
    for leaf in leaf_names:
        model.add_switch(g, leaf, "leaf", 0, leaf=leaf)
    spine_names = [model.add_switch(g, f"s{j}", "spine", 1) for j in range(1, spines + 1)]
    for i, leaf in enumerate(leaf_names):
        for n in range(1, hosts_per_leaf + 1):
            h = model.add_host(g, f"h{i * hosts_per_leaf + n}", leaf=leaf)
            model.add_link(g, h, leaf, host_gbps, medium, length_km, transceiver)
    for leaf in leaf_names:
        for spine in spine_names:
            model.add_link(g, leaf, spine, uplink_gbps, medium, length_km, transceiver)
    return model.validate(g)


topos = mininet_topos(leafspine=leaf_spine)
