"""A spine-free fabric whose aggregation blocks meet through optical circuit switches.

As in Google's Jupiter (SIGCOMM'22), the fabric is a set of aggregation blocks, each a small
two-layer Clos of leaf switches (hosts below) and aggregation switches, and there is no spine:
every aggregation switch has one fiber to every optical circuit switch (OCS), and the OCSes'
circuits decide which blocks are linked directly and how widely (fabric/optical.py). Builds the
logical fabric for a circuit plan (the uniform plan by default); the physical fabric travels in
its ``graph["optical"]``. Pure data: no Mininet at module level, no root. Also a Mininet
custom file (``mn --custom topologies/jupiter.py --topo jupiter,4``).

Naming: leaves ``e1..`` then aggregation switches ``a1..`` (dpids in that order, block by
block), OCSes ``o1..``, hosts ``h1..`` leaf by leaf. Ports: leaf port i leads to its i-th host,
then one port per aggregation switch of its block; aggregation port i leads to the i-th leaf
of its block, then port ``leaves_per_block + k`` to OCS ``o<k>``; OCS port
``(b - 1) * aggs_per_block + j`` leads to aggregation switch j of block b. Blocks are named
``b1..`` and are the topology engineering blocks.
"""

import os
import sys

# `mn --custom` execs this file with no __file__ and without the repo root on sys.path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from fabric import model, optical  # noqa: E402
from topologies._custom import mininet_topos  # noqa: E402
from topologies._params import (count, nonnegative, positive,  # noqa: E402
                                transceiver as transceiver_class)


def jupiter(blocks=4, leaves_per_block=2, aggs_per_block=2, hosts_per_leaf=2, ocses=2,
            nic_gbps=100.0, leaf_gbps=None, uplink_gbps=None, reconfiguration_ms=10.0,
            transceiver=None, circuits=None):
    """Build a Jupiter-like fabric: aggregation blocks joined only through OCSes.

    Parameters
    ----------
    blocks : int
        Aggregation blocks, >= 2.
    leaves_per_block, aggs_per_block, hosts_per_leaf : int
        Counts, each >= 1.
    ocses : int
        OCS count, >= 1; every aggregation switch has one fiber to each, so a block has
        ``aggs_per_block * ocses`` uplinks.
    nic_gbps : float
        Capacity of each host link in Gbit/s.
    leaf_gbps : float, optional
        Capacity of each leaf-aggregation link; default non-blocking,
        ``hosts_per_leaf * nic_gbps / aggs_per_block``.
    uplink_gbps : float, optional
        Capacity of each aggregation-OCS fiber; default a block's host rate over its uplinks,
        ``leaves_per_block * hosts_per_leaf * nic_gbps / (aggs_per_block * ocses)``.
    reconfiguration_ms : float
        Time a changed circuit is dark, in ms.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py).
    circuits : dict, optional
        ``{"o1": [[p, q], ...], ...}``; default the uniform plan (every block pair as evenly
        as uplinks allow).

    Returns
    -------
    networkx.Graph
        The validated logical fabric named ``"jupiter"``. Layers: leaf 0, aggregation 1.
        Hosts carry ``block`` and ``leaf``; switches carry ``block``.

    Raises
    ------
    TopologyError
        If a parameter is out of range or the circuits are invalid (the message names it).

    Examples
    --------
    >>> g = jupiter(blocks=3)
    >>> sorted({g.degree(a) - 2 for a in ("a1", "a2", "a3", "a4", "a5", "a6")})
    [2]
    """
    blocks = count("blocks", blocks)
    if blocks < 2:
        raise model.TopologyError(f"blocks must be >= 2 (blocks meet through the OCSes), "
                                  f"got {blocks}")
    leaves_per_block = count("leaves_per_block", leaves_per_block)
    aggs_per_block = count("aggs_per_block", aggs_per_block)
    hosts_per_leaf = count("hosts_per_leaf", hosts_per_leaf)
    ocses = count("ocses", ocses)
    nic_gbps = positive("nic_gbps", nic_gbps)
    leaf_gbps = (hosts_per_leaf * nic_gbps / aggs_per_block if leaf_gbps is None
                 else positive("leaf_gbps", leaf_gbps))
    uplink_gbps = (leaves_per_block * hosts_per_leaf * nic_gbps / (aggs_per_block * ocses)
                   if uplink_gbps is None else positive("uplink_gbps", uplink_gbps))
    reconfiguration_ms = nonnegative("reconfiguration_ms", reconfiguration_ms)
    transceiver = transceiver_class("transceiver", transceiver)
    g = model.new_fabric("jupiter", blocks=blocks, leaves_per_block=leaves_per_block,
                         aggs_per_block=aggs_per_block, hosts_per_leaf=hosts_per_leaf,
                         ocses=ocses, nic_gbps=nic_gbps, leaf_gbps=leaf_gbps,
                         uplink_gbps=uplink_gbps, reconfiguration_ms=reconfiguration_ms,
                         transceiver=transceiver)
    names = [f"b{b}" for b in range(1, blocks + 1)]
    leaves = {b: [model.add_switch(g, f"e{i * leaves_per_block + j}", "leaf", 0, block=b)
                  for j in range(1, leaves_per_block + 1)] for i, b in enumerate(names)}
    aggs = {b: [model.add_switch(g, f"a{i * aggs_per_block + j}", "aggregation", 1, block=b)
                for j in range(1, aggs_per_block + 1)] for i, b in enumerate(names)}
    for b in names:
        for leaf in leaves[b]:
            for _ in range(hosts_per_leaf):
                h = model.add_host(g, f"h{len(model.hosts(g)) + 1}", block=b, leaf=leaf)
                model.add_link(g, h, leaf, nic_gbps, transceiver=transceiver)
        for leaf in leaves[b]:
            for agg in aggs[b]:
                model.add_link(g, leaf, agg, leaf_gbps, transceiver=transceiver)
    planes = [optical.add_ocs(g, f"o{k}", blocks * aggs_per_block, reconfiguration_ms)
              for k in range(1, ocses + 1)]
    for b in names:
        for agg in aggs[b]:
            for o in planes:
                model.add_link(g, agg, o, uplink_gbps, transceiver=transceiver)
    # Uplink rounds OCS by OCS, so consecutive rounds on one OCS use different aggregation
    # switches of a block.
    g.graph["blocks"] = {b: [[agg, o, model.port_to(g, o, agg)] for o in planes
                             for agg in aggs[b]] for b in names}
    return optical.logical_graph(g, optical.uniform_circuits(g) if circuits is None
                                 else circuits)


topos = mininet_topos(jupiter=jupiter)
