"""The topology model: one networkx graph that every part of the tool reads.

A fabric is an ``nx.Graph`` whose nodes are hosts and switches and whose edges are links in
real (nominal) units. It is pure data: building one needs no root, no Mininet and no
controller. The Mininet builder (fabric/emulate.py), the routing core (controllers/core.py)
and the metrics (traffic/metrics.py) all take it as their source of truth.

Conventions
-----------
Graph attributes: ``name`` (topology name, e.g. ``"fattree"``) and ``params`` (the
parameters it was built with).

Host nodes: ``role="host"``, ``ip`` (dotted quad, all hosts share 10.0.0.0/8), ``mac`` (a
locator MAC naming the host's switch and port once it is linked, see controllers/locator.py;
before that, one made from its index), ``index`` (1-based), plus topology-specific tags
(``pod``, ``leaf``, ``site``, ``server``, ``rail``).

Switch nodes: ``role`` in :data:`SWITCH_ROLES`, ``dpid`` (int, unique, never 0), ``layer``
(0 = closest to hosts) plus topology-specific tags.

Optical circuit switches (``role`` :data:`OCS`) appear only in the physical graph of a fabric
with circuits (fabric/optical.py); they are not switches here and have no dpid.

Edges: ``capacity_gbps`` (float > 0), ``medium`` (``"optical"`` or ``"copper"``),
``length_km`` (>= 0), ``delay_us`` (propagation, 5 us/km), ``transceiver`` (the name of its
transceiver class, which reaches at least ``length_km``, see fabric/optics.py) and ``ports`` (a
dict mapping each end's node name to its port number on that node; host ports are 0, i.e.
``h1-eth0``).

Names are short (``h1``, ``e1``, ``a1``, ``c1``...) because Mininet derives interface names
(``<node>-eth<port>``) from them and Linux limits those to 15 characters.
"""

import networkx as nx

from controllers.locator import locator_mac
from fabric import optics

HOST = "host"
SWITCH_ROLES = ("edge", "leaf", "aggregation", "core", "spine", "rail", "gateway", "dc")
OCS = "ocs"  # an optical circuit switch: not a packet switch (fabric/optical.py)
MEDIA = ("optical", "copper")
PROPAGATION_US_PER_KM = 5.0
MAX_NAME_LEN = 10


class TopologyError(ValueError):
    """A topology was asked for with parameters that cannot describe a fabric."""


def new_fabric(name, **params):
    """Return an empty fabric graph named ``name`` that remembers its build parameters."""
    g = nx.Graph()
    g.graph["name"] = name
    g.graph["params"] = dict(params)
    return g


def host_ip(index):
    """IPv4 address of host number ``index`` (1-based) in 10.0.0.0/8, as Mininet numbers them."""
    if not 1 <= index < 2 ** 24 - 1:
        raise TopologyError(f"host index {index} does not fit in 10.0.0.0/8")
    return "10.%d.%d.%d" % ((index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)


def host_mac(index):
    """Locally administered MAC of host number ``index``, until it is linked to a switch."""
    return "02:00:%02x:%02x:%02x:%02x" % (
        (index >> 24) & 0xFF, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)


def _check_name(g, name):
    if name in g:
        raise TopologyError(f"node {name!r} is defined twice")
    if not name or len(name) > MAX_NAME_LEN or not name.isalnum():
        raise TopologyError(
            f"node name {name!r} must be 1-{MAX_NAME_LEN} letters or digits "
            "(Linux interface names are limited to 15 characters)")


def add_host(g, name, **tags):
    """Add host ``name``; it gets the next host index, its IP and MAC. Returns the name."""
    _check_name(g, name)
    index = sum(1 for _, r in g.nodes(data="role") if r == HOST) + 1
    g.add_node(name, role=HOST, index=index, ip=host_ip(index), mac=host_mac(index), **tags)
    return name


def add_switch(g, name, role, layer, **tags):
    """Add switch ``name`` with ``role`` at ``layer``; it gets the next datapath id."""
    _check_name(g, name)
    if role not in SWITCH_ROLES:
        raise TopologyError(f"switch {name!r}: unknown role {role!r}, "
                            f"expected one of {SWITCH_ROLES}")
    dpid = sum(1 for _, r in g.nodes(data="role") if r in SWITCH_ROLES) + 1
    g.add_node(name, role=role, layer=layer, dpid=dpid, **tags)
    return name


def propagation_delay_us(length_km):
    """Propagation delay in microseconds of ``length_km`` of fiber (5 us/km)."""
    return float(length_km) * PROPAGATION_US_PER_KM


def add_link(g, u, v, capacity_gbps, medium="optical", length_km=0.0, transceiver=None):
    """Link ``u`` and ``v``; each end gets the next free port number on its node.

    Parameters
    ----------
    g : networkx.Graph
        The fabric.
    u, v : str
        Nodes of ``g``.
    capacity_gbps : float
        Nominal capacity in Gbit/s, > 0.
    medium : {"optical", "copper"}
        The link's medium.
    length_km : float
        Cable length in km, >= 0; sets ``delay_us``.
    transceiver : str, optional
        Transceiver class of both ends (a name of :data:`fabric.optics.CLASSES`); by default
        the shortest-reach class of ``medium`` that covers ``length_km``.

    Raises
    ------
    TopologyError
        If an end is unknown, the link exists already, a value is out of range, or the link
        is longer than its transceiver class reaches (the message names the link, its
        length, the class and its reach).
    """
    for n in (u, v):
        if n not in g:
            raise TopologyError(f"link {u}-{v}: unknown node {n!r}")
    if u == v or g.has_edge(u, v):
        raise TopologyError(f"link {u}-{v}: self-loop or duplicate link")
    try:
        capacity_gbps = float(capacity_gbps)
        length_km = float(length_km)
    except (TypeError, ValueError):
        raise TopologyError(f"link {u}-{v}: capacity_gbps and length_km must be numbers") from None
    if not capacity_gbps > 0:
        raise TopologyError(f"link {u}-{v}: capacity_gbps must be > 0, got {capacity_gbps}")
    if not length_km >= 0:
        raise TopologyError(f"link {u}-{v}: length_km must be >= 0, got {length_km}")
    if medium not in MEDIA:
        raise TopologyError(f"link {u}-{v}: medium must be one of {MEDIA}, got {medium!r}")
    try:
        transceiver = (optics.choose(medium, length_km) if transceiver is None
                       else optics.check(transceiver, medium, length_km)).name
    except optics.ReachError as e:
        raise TopologyError(f"link {u}-{v}: {e}") from None
    ports = {}
    for n in (u, v):
        if g.nodes[n]["role"] == HOST:
            if g.degree(n) > 0:
                raise TopologyError(f"host {n!r} has more than one link (one NIC per host)")
            ports[n] = 0
        else:
            ports[n] = g.degree(n) + 1
    g.add_edge(u, v, capacity_gbps=capacity_gbps, medium=medium, length_km=length_km,
               delay_us=propagation_delay_us(length_km), transceiver=transceiver, ports=ports)
    for h, sw in ((u, v), (v, u)):
        # A host's address names where it is attached, so the controller can route to all
        # hosts of a switch with one rule (controllers/render.py).
        if g.nodes[h]["role"] == HOST and g.nodes[sw]["role"] != HOST:
            mac = locator_mac(g.nodes[sw]["dpid"], ports[sw])
            if mac is not None:
                g.nodes[h]["mac"] = mac


def hosts(g):
    """Host names in host-index order."""
    return sorted((n for n, r in g.nodes(data="role") if r == HOST),
                  key=lambda n: g.nodes[n]["index"])


def switches(g):
    """Packet switch names in dpid order (optical circuit switches are not among them)."""
    return sorted((n for n, r in g.nodes(data="role") if r in SWITCH_ROLES),
                  key=lambda n: g.nodes[n]["dpid"])


def is_host(g, n):
    return g.nodes[n]["role"] == HOST


def host_switch(g, h):
    """(switch, switch port) the host ``h`` is attached to."""
    (sw,) = g.neighbors(h)
    return sw, g.edges[h, sw]["ports"][sw]


def host_rate_gbps(g, h):
    """Nominal NIC rate of host ``h`` in Gbit/s."""
    (sw,) = g.neighbors(h)
    return g.edges[h, sw]["capacity_gbps"]


def port_to(g, u, v):
    """Port number on ``u`` of the link to ``v``."""
    return g.edges[u, v]["ports"][u]


def validate(g):
    """Check the whole fabric; raise TopologyError naming the first problem."""
    hs = hosts(g)
    if not hs:
        raise TopologyError(f"topology {g.graph.get('name')!r} has no hosts")
    for h in hs:
        if g.degree(h) != 1:
            raise TopologyError(f"host {h!r} must have exactly one link, has {g.degree(h)}")
        if is_host(g, next(iter(g.neighbors(h)))):
            raise TopologyError(f"host {h!r} is linked straight to another host")
    if not nx.is_connected(g):
        raise TopologyError(f"topology {g.graph.get('name')!r} is not connected")
    return g


def summary(g):
    """A small JSON-able description for results files."""
    return {
        "name": g.graph.get("name"),
        "params": g.graph.get("params", {}),
        "hosts": len(hosts(g)),
        "switches": len(switches(g)),
        "links": g.number_of_edges(),
    }


def dump_json(g, path):
    """Write fabric ``g`` to ``path`` as JSON (networkx node_link_data, edges under "links");
    how a run hands its model to the controller process."""
    import json
    from networkx.readwrite import json_graph
    with open(path, "w") as f:
        json.dump(json_graph.node_link_data(g, edges="links"), f)


def load_json(path):
    """Read a fabric written by :func:`dump_json`; raises TopologyError if it is not one."""
    import json
    from networkx.readwrite import json_graph
    try:
        with open(path) as f:
            return validate(json_graph.node_link_graph(json.load(f), edges="links"))
    except (OSError, ValueError, KeyError, TypeError, nx.NetworkXError) as e:
        raise TopologyError(f"{path}: not a fabric model: {e}") from None
