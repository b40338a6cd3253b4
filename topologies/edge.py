"""Edge sites joined to a regional data center over optical WAN links, as a topology model.

Each edge site is a gateway switch with a few hosts (e.g. inference clients or edge
accelerators); every gateway has one fiber link of its own length to the data-center switch,
which also serves the data-center hosts. Builds the fabric graph only (see fabric/model.py);
it must not import Mininet at module level and needs no root. Also a Mininet custom file:
``mn --custom topologies/edge.py --topo edge,3,2,4,50`` (sites, hosts per site, dc hosts,
one length in km for every site).

Naming: data-center switch ``d1`` (dpid 1), gateways ``g1..``; hosts ``h1..`` data-center
hosts first, then site by site. Ports: ``d1`` has its hosts on ports 1..dc_hosts and gateway
``g<i>`` on dc_hosts + i; a gateway has its hosts on 1..hosts_per_site and the WAN link on
hosts_per_site + 1.
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
    count, nonnegative, positive, transceiver as transceiver_class)

DC = "d1"


def edge(sites=3, hosts_per_site=2, dc_hosts=4, site_km=(20, 50, 80), wan_gbps=100.0,
         host_gbps=100.0, dc_gbps=400.0, wan_transceiver=None):
    """Build edge sites around one regional data center.

    Parameters
    ----------
    sites, hosts_per_site, dc_hosts : int
        Counts, each >= 1.
    site_km : float or sequence of float
        Fiber length in km from each site's gateway to the data center: one number for all
        sites, or one per site (the default fits ``sites=3``).
    wan_gbps : float
        Capacity of each gateway-to-data-center link in Gbit/s.
    host_gbps : float
        Capacity of each edge-site host link in Gbit/s.
    dc_gbps : float
        Capacity of each data-center host link in Gbit/s.
    wan_transceiver : str or sequence of str, optional
        Transceiver class (fabric/optics.py) of each WAN link: one name for all sites, or one
        per site (None for a site leaves it to the default). By default each WAN link gets
        the shortest-reach optical class that covers its length (ER for 20 km, ZR for 80 km);
        host links always get the default.

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"edge"``. Layers: gateway 0, dc 1. Hosts and switches
        carry ``site``: 0 for the data center, 1..sites for the edge sites. WAN links are
        optical, with ``length_km`` and ``delay_us`` (5 us/km) set; ``g.graph["params"]``
        records ``site_km`` and ``wan_transceiver`` as lists with one entry per site.

    Raises
    ------
    TopologyError
        If a parameter is out of range, ``site_km`` or ``wan_transceiver`` does not have one
        entry per site, or a site is farther than its WAN transceiver class reaches.

    Examples
    --------
    >>> g = edge(sites=2, site_km=[20, 100])
    >>> g.edges["g1", "d1"]["delay_us"], g.edges["g2", "d1"]["delay_us"]
    (100.0, 500.0)
    """
    sites = count("sites", sites)
    hosts_per_site = count("hosts_per_site", hosts_per_site)
    dc_hosts = count("dc_hosts", dc_hosts)
    site_km = _site_lengths(site_km, sites)
    wan_gbps = positive("wan_gbps", wan_gbps)
    host_gbps = positive("host_gbps", host_gbps)
    dc_gbps = positive("dc_gbps", dc_gbps)
    wan_transceiver = _site_classes(wan_transceiver, sites)
    g = model.new_fabric("edge", sites=sites, hosts_per_site=hosts_per_site, dc_hosts=dc_hosts,
                         site_km=site_km, wan_gbps=wan_gbps, host_gbps=host_gbps,
                         dc_gbps=dc_gbps, wan_transceiver=wan_transceiver)

    model.add_switch(g, DC, "dc", 1, site=0)
    for n in range(1, dc_hosts + 1):
        model.add_link(g, model.add_host(g, f"h{n}", site=0), DC, dc_gbps)
    for site, (length_km, wan_class) in enumerate(zip(site_km, wan_transceiver), start=1):
        gateway = model.add_switch(g, f"g{site}", "gateway", 0, site=site)
        for n in range(1, hosts_per_site + 1):
            h = model.add_host(g, f"h{dc_hosts + (site - 1) * hosts_per_site + n}", site=site)
            model.add_link(g, h, gateway, host_gbps)
        model.add_link(g, gateway, DC, wan_gbps, "optical", length_km, wan_class)
    return model.validate(g)


def _site_lengths(site_km, sites):
    """``site_km`` (one number, or a list or tuple of them) as a list of one length per site."""
    if not isinstance(site_km, (list, tuple)):
        return [nonnegative("site_km", site_km)] * sites
    if len(site_km) != sites:
        raise model.TopologyError(
            f"site_km has {len(site_km)} lengths for {sites} sites ({list(site_km)!r}); "
            "give one length per site or a single number")
    return [nonnegative(f"site_km[{i}]", km) for i, km in enumerate(site_km)]


def _site_classes(wan_transceiver, sites):
    """``wan_transceiver`` (None, a class name, or a list or tuple of them) as a list of one
    class name or None per site."""
    if not isinstance(wan_transceiver, (list, tuple)):
        return [transceiver_class("wan_transceiver", wan_transceiver)] * sites
    if len(wan_transceiver) != sites:
        raise model.TopologyError(
            f"wan_transceiver has {len(wan_transceiver)} classes for {sites} sites "
            f"({list(wan_transceiver)!r}); give one class per site or a single one")
    return [transceiver_class(f"wan_transceiver[{i}]", c) for i, c in enumerate(wan_transceiver)]


topos = mininet_topos(edge=edge)
