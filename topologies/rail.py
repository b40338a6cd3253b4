"""Rail-optimized GPU cluster fabric (as in NVIDIA DGX SuperPOD) as a topology model.

Each GPU has its own NIC; GPU i of every server plugs into rail switch i, so collectives
between same-rank GPUs of different servers cross one switch, and a spine layer joins the
rails. Builds the fabric graph only (see fabric/model.py); it must not import Mininet at module
level and needs no root. Also a Mininet custom file: ``mn --custom topologies/rail.py --topo
rail,4,4`` (servers, GPUs per server).

Naming: rail switches ``r1..``, spines ``s1..`` (dpids in that order), hosts (one per GPU)
``h1..`` server by server. Ports: rail switch port s leads to server s; rail switch ``r<i>``
has spine ``s<j>`` on port servers + j; spine port i leads to rail ``r<i>``.
"""

import os
import sys

# `mn --custom` execs this file with no __file__ and without the repo root on sys.path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from fabric import model  # noqa: E402
from topologies._custom import mininet_topos  # noqa: E402
from topologies._params import count, positive, transceiver as transceiver_class  # noqa: E402


def rail_optimized(servers=4, gpus_per_server=4, nic_gbps=400.0, spines=None, spine_gbps=None,
                   transceiver=None):
    """Build a rail-optimized fabric with one host per GPU.

    Parameters
    ----------
    servers, gpus_per_server : int
        Counts, each >= 1. There is one rail switch per GPU index.
    nic_gbps : float
        Capacity of each GPU's NIC link in Gbit/s.
    spines : int, optional
        Spine switch count; default ``max(gpus_per_server // 2, 1)``.
    spine_gbps : float, optional
        Capacity of each rail-spine link in Gbit/s; default non-blocking,
        ``servers * nic_gbps / spines``.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py); by default the shortest-reach
        optical class (links have no length here).

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"rail"``. Layers: rail 0, spine 1. Hosts carry ``server``
        (1..servers), ``rail`` (1..gpus_per_server, the GPU's local rank + 1) and ``leaf``
        (their rail switch); rail switches carry ``rail`` and ``leaf`` (their own name).
        ``g.graph["params"]`` records the resulting ``spines`` and ``spine_gbps``.

    Raises
    ------
    TopologyError
        If a parameter is out of range.

    Examples
    --------
    >>> g = rail_optimized(servers=2, gpus_per_server=4)
    >>> g.nodes["h6"]["server"], g.nodes["h6"]["rail"], g.nodes["h6"]["leaf"]
    (2, 2, 'r2')
    """
    servers = count("servers", servers)
    gpus_per_server = count("gpus_per_server", gpus_per_server)
    nic_gbps = positive("nic_gbps", nic_gbps)
    spines = max(gpus_per_server // 2, 1) if spines is None else count("spines", spines)
    spine_gbps = (servers * nic_gbps / spines if spine_gbps is None
                  else positive("spine_gbps", spine_gbps))
    transceiver = transceiver_class("transceiver", transceiver)
    g = model.new_fabric("rail", servers=servers, gpus_per_server=gpus_per_server,
                         nic_gbps=nic_gbps, spines=spines, spine_gbps=spine_gbps,
                         transceiver=transceiver)

    rails = range(1, gpus_per_server + 1)
    for rail in rails:
        model.add_switch(g, f"r{rail}", "rail", 0, rail=rail, leaf=f"r{rail}")
    spine_names = [model.add_switch(g, f"s{j}", "spine", 1) for j in range(1, spines + 1)]
    for server in range(1, servers + 1):
        for rail in rails:
            h = f"h{(server - 1) * gpus_per_server + rail}"
            model.add_host(g, h, server=server, rail=rail, leaf=f"r{rail}")
            model.add_link(g, h, f"r{rail}", nic_gbps, transceiver=transceiver)
    for rail in rails:
        for spine in spine_names:
            model.add_link(g, f"r{rail}", spine, spine_gbps, transceiver=transceiver)
    return model.validate(g)


topos = mininet_topos(rail=rail_optimized)
