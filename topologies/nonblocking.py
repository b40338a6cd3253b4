"""One big non-blocking switch: the baseline every experiment measures alongside its fabric.

:func:`nonblocking_like` keeps a fabric's host names, order (hence IPs and MACs) and NIC links,
so the difference between the two runs is what the fabric costs. Builds the fabric graph only
(see fabric/model.py); it must not import Mininet at module level and needs no root. Also a
Mininet custom file: ``mn --custom topologies/nonblocking.py --topo nonblocking,16``.

Naming: the switch is ``x1``; its port i leads to host number i.
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

SWITCH = "x1"


def nonblocking(hosts=16, host_gbps=400.0, transceiver=None):
    """Build ``hosts`` hosts on one switch.

    Parameters
    ----------
    hosts : int
        Host count, >= 1.
    host_gbps : float
        Host link (NIC) capacity in Gbit/s.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py); by default the shortest-reach
        optical class (links have no length here).

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"nonblocking"``: switch ``x1`` (role ``"edge"``, layer 0)
        and hosts ``h1..`` carrying ``leaf="x1"``.

    Raises
    ------
    TopologyError
        If a parameter is out of range.

    Examples
    --------
    >>> g = nonblocking(4, host_gbps=100)
    >>> sorted(g["x1"]), g.edges["h4", "x1"]["ports"]["x1"]
    (['h1', 'h2', 'h3', 'h4'], 4)
    """
    hosts = count("hosts", hosts)
    host_gbps = positive("host_gbps", host_gbps)
    transceiver = transceiver_class("transceiver", transceiver)
    g = model.new_fabric("nonblocking", hosts=hosts, host_gbps=host_gbps, transceiver=transceiver)
    return _attach(g, ((f"h{i}", {"capacity_gbps": host_gbps, "transceiver": transceiver})
                       for i in range(1, hosts + 1)))


def nonblocking_like(g):
    """Return the non-blocking baseline of fabric ``g``.

    Parameters
    ----------
    g : networkx.Graph
        A fabric from any builder.

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"nonblocking"`` with params ``{"like": <name of g>}``:
        switch ``x1`` and the hosts of ``g`` added in the same order (so with the same
        indices, IPs and MACs), each linked to ``x1`` with the capacity, medium, length and
        transceiver class of its link in ``g``.

    Examples
    --------
    >>> from topologies.fattree import fat_tree
    >>> base = nonblocking_like(fat_tree(4, link_gbps=100))
    >>> base.graph["params"], base.nodes["h16"]["ip"], base.edges["h16", "x1"]["capacity_gbps"]
    ({'like': 'fattree'}, '10.0.0.16', 100.0)
    """
    nics = []
    for h in model.hosts(g):
        link = g.edges[h, model.host_switch(g, h)[0]]
        keys = ("capacity_gbps", "medium", "length_km", "transceiver")
        nics.append((h, {key: link[key] for key in keys}))
    base = _attach(model.new_fabric("nonblocking", like=g.graph["name"]), nics)
    for h, _ in nics:
        # The hosts keep the addresses they have in g (their locator MACs name g's switches:
        # x1 routes them by their own MACs, see controllers/render.py).
        base.nodes[h]["mac"] = g.nodes[h]["mac"]
    return base


def _attach(g, nics):
    """Add switch ``x1`` to ``g`` and link each ``(host, link attributes)`` of ``nics`` to it."""
    model.add_switch(g, SWITCH, "edge", 0, leaf=SWITCH)
    for h, link in nics:
        model.add_link(g, model.add_host(g, h, leaf=SWITCH), SWITCH, **link)
    return model.validate(g)


topos = mininet_topos(nonblocking=nonblocking)
