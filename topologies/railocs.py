"""Rail-optimized GPU fabric whose rails meet through optical circuit switches.

As topologies/rail.py, GPU i of every server plugs into rail switch i, but instead of a spine
layer each rail switch has one fiber to each of ``ocses`` optical circuit switches (OCS, one
per uplink plane): their circuits decide which rails are linked directly (fabric/optical.py),
and traffic between two rails with no circuit crosses a third rail. Builds the logical fabric
for a circuit plan (the uniform plan by default); the physical fabric travels in its
``graph["optical"]``. Pure data: no Mininet at module level, no root. Also a Mininet custom
file (``mn --custom topologies/railocs.py --topo railocs,4,4``).

Naming: rail switches ``r1..`` (dpids in that order), OCSes ``o1..``, hosts ``h1..`` server by
server. Ports: rail switch port s leads to server s, port servers + u to OCS ``o<u>``; port i
of every OCS leads to rail ``r<i>``. Each rail is a topology engineering block named after its
switch.
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


def rail_ocs(servers=4, gpus_per_server=4, nic_gbps=400.0, ocses=2, uplink_gbps=None,
             reconfiguration_ms=10.0, transceiver=None, circuits=None):
    """Build a rail-optimized fabric whose rails meet through OCSes.

    Parameters
    ----------
    servers, gpus_per_server : int
        Counts, each >= 1; ``gpus_per_server`` >= 2 (one rail per GPU index, and rails must
        have someone to meet).
    nic_gbps : float
        Capacity of each GPU's NIC link in Gbit/s.
    ocses : int
        OCS count, each with one fiber from every rail switch (a rail's uplinks), 1 <= ocses
        < gpus_per_server (two circuits never link the same two rails).
    uplink_gbps : float, optional
        Capacity of each fiber in Gbit/s; default ``servers * nic_gbps / ocses`` (a rail's
        uplinks carry all its GPUs at line rate).
    reconfiguration_ms : float
        Time a changed circuit is dark, in ms.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py).
    circuits : dict, optional
        ``{"o1": [[p, q], ...], ...}``; default the uniform plan (every rail pair as evenly as
        uplinks allow).

    Returns
    -------
    networkx.Graph
        The validated logical fabric named ``"railocs"``. Hosts carry ``server``, ``rail``,
        ``leaf`` and ``block`` (their rail switch); rail switches carry ``rail``, ``leaf``
        and ``block``.

    Raises
    ------
    TopologyError
        If a parameter is out of range or the circuits are invalid (the message names it).

    Examples
    --------
    >>> g = rail_ocs(servers=2, gpus_per_server=4, ocses=2)
    >>> sorted(g.degree(r) - 2 for r in ("r1", "r2", "r3", "r4"))
    [2, 2, 2, 2]
    """
    servers = count("servers", servers)
    gpus_per_server = count("gpus_per_server", gpus_per_server)
    if gpus_per_server < 2:
        raise model.TopologyError(f"gpus_per_server must be >= 2 (rails meet through the "
                                  f"OCS), got {gpus_per_server}")
    nic_gbps = positive("nic_gbps", nic_gbps)
    ocses = count("ocses", ocses)
    if ocses >= gpus_per_server:
        raise model.TopologyError(f"ocses must be < gpus_per_server ({gpus_per_server}): "
                                  f"a rail has only {gpus_per_server - 1} others, got {ocses}")
    uplink_gbps = (servers * nic_gbps / ocses if uplink_gbps is None
                   else positive("uplink_gbps", uplink_gbps))
    reconfiguration_ms = nonnegative("reconfiguration_ms", reconfiguration_ms)
    transceiver = transceiver_class("transceiver", transceiver)
    g = model.new_fabric("railocs", servers=servers, gpus_per_server=gpus_per_server,
                         nic_gbps=nic_gbps, ocses=ocses, uplink_gbps=uplink_gbps,
                         reconfiguration_ms=reconfiguration_ms, transceiver=transceiver)
    rails = [model.add_switch(g, f"r{i}", "rail", 0, rail=i, leaf=f"r{i}", block=f"r{i}")
             for i in range(1, gpus_per_server + 1)]
    for server in range(1, servers + 1):
        for i, r in enumerate(rails, 1):
            h = f"h{(server - 1) * gpus_per_server + i}"
            model.add_host(g, h, server=server, rail=i, leaf=r, block=r)
            model.add_link(g, h, r, nic_gbps, transceiver=transceiver)
    planes = [optical.add_ocs(g, f"o{u}", gpus_per_server, reconfiguration_ms)
              for u in range(1, ocses + 1)]
    for r in rails:
        for o in planes:
            model.add_link(g, r, o, uplink_gbps, transceiver=transceiver)
    g.graph["blocks"] = {r: [[r, o, model.port_to(g, o, r)] for o in planes] for r in rails}
    return optical.logical_graph(g, optical.uniform_circuits(g) if circuits is None
                                 else circuits)


topos = mininet_topos(railocs=rail_ocs)
