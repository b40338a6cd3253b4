"""k-ary fat-tree (Al-Fares, Loukissas and Vahdat, SIGCOMM 2008) as a topology model.

Builds the fabric graph only (see fabric/model.py); it must not import Mininet at module level
and needs no root. Also a Mininet custom file: ``mn --custom topologies/fattree.py --topo
fattree,4``.

Naming: edge switches ``e1..``, aggregation ``a1..``, core ``c1..`` (dpids in that order), hosts
``h1..`` pod by pod, edge switch by edge switch. Ports: an edge or aggregation switch has its
downlinks on ports 1..k/2 and its uplinks on k/2+1..k; core switch port p leads to pod p.
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
    choice, is_integer, nonnegative, positive, transceiver as transceiver_class)


def fat_tree(k=4, link_gbps=400.0, medium="optical", length_km=0.0, transceiver=None):
    """Build a k-ary fat-tree.

    There are ``(k/2)**2`` core switches and ``k`` pods, each with ``k/2`` aggregation and
    ``k/2`` edge switches; every edge switch serves ``k/2`` hosts. That makes ``5k**2/4``
    switches of ``k`` ports each and ``k**3/4`` hosts. Aggregation switch ``i`` of every pod
    (0-based) connects to core switches ``i*k/2 .. (i+1)*k/2 - 1``, so hosts in different pods
    are joined by ``(k/2)**2`` equal-cost paths, and hosts under different edge switches of one
    pod by ``k/2``.

    Parameters
    ----------
    k : int
        Switch radix, even and >= 2.
    link_gbps : float
        Capacity of every link in Gbit/s.
    medium : {"optical", "copper"}
        Medium of every link.
    length_km : float
        Fiber length of every link in km.
    transceiver : str, optional
        Transceiver class of every link (fabric/optics.py); by default the shortest-reach
        class of ``medium`` that covers ``length_km``.

    Returns
    -------
    networkx.Graph
        A validated fabric named ``"fattree"``. Layers: edge 0, aggregation 1, core 2. Hosts
        and pod switches carry ``pod`` (1..k); hosts carry ``leaf`` (their edge switch) and
        edge switches ``leaf`` (their own name).

    Raises
    ------
    TopologyError
        If ``k`` is not an even integer >= 2, another parameter is out of range, or
        ``length_km`` is beyond the reach of ``transceiver``.

    Examples
    --------
    >>> from fabric.model import hosts, switches
    >>> g = fat_tree(4)
    >>> len(switches(g)), len(hosts(g))
    (20, 16)
    >>> g.nodes["h1"]["pod"], g.nodes["h1"]["leaf"]
    (1, 'e1')
    """
    if not (is_integer(k) and k >= 2 and k % 2 == 0):
        raise model.TopologyError(f"fat-tree k must be an even integer >= 2, got {k!r}")
    k = int(k)
    link_gbps = positive("link_gbps", link_gbps)
    medium = choice("medium", medium, model.MEDIA)
    length_km = nonnegative("length_km", length_km)
    transceiver = transceiver_class("transceiver", transceiver)
    g = model.new_fabric("fattree", k=k, link_gbps=link_gbps, medium=medium, length_km=length_km,
                         transceiver=transceiver)
    half = k // 2
    pods = range(1, k + 1)

    def pod_switch(prefix, pod, i):
        return f"{prefix}{(pod - 1) * half + i + 1}"

    def link(u, v):
        model.add_link(g, u, v, link_gbps, medium, length_km, transceiver)

    for pod in pods:
        for i in range(half):
            e = pod_switch("e", pod, i)
            model.add_switch(g, e, "edge", 0, pod=pod, leaf=e)
    for pod in pods:
        for i in range(half):
            model.add_switch(g, pod_switch("a", pod, i), "aggregation", 1, pod=pod)
    cores = [model.add_switch(g, f"c{j + 1}", "core", 2) for j in range(half * half)]

    for pod in pods:
        for i in range(half):
            e = pod_switch("e", pod, i)
            for n in range(half):
                h = f"h{((pod - 1) * half + i) * half + n + 1}"
                link(model.add_host(g, h, pod=pod, leaf=e), e)
        for i in range(half):
            for j in range(half):
                link(pod_switch("e", pod, i), pod_switch("a", pod, j))
    for j, core in enumerate(cores):
        for pod in pods:
            link(pod_switch("a", pod, j // half), core)
    return model.validate(g)


topos = mininet_topos(fattree=fat_tree)
