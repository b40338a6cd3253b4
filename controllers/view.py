"""What the live fabric view (``GET /fabric/view``, controllers/static/) draws, as data.

The page asks ``GET /fabric/view/layout`` for the rows to draw (hosts at the bottom, then
each switch layer up to the core or spine), the order of the nodes in each row and the colour
scale of link utilization (:data:`LEGEND`); it colours links with that scale only, so the
scale lives here once and a test can check the page against it. The layer of a switch is the
model's (``--fabric-topology``: each switch node's ``layer`` and ``role``) when the controller
was given one, else its distance in switch hops from the nearest switch a host is attached to.

Pure: plain values in, plain JSON-able values out. It must not read the routing core's
internals or decide anything about routing.
"""

import bisect
import collections
import re

# Utilization scale of the page, 0..100 % in ten bins: (lower bound, colour); a bin holds
# lower bound <= utilization < next bound, the last one everything from 0.9 up (a measured
# rate can exceed the capacity a little). Colours: ColorBrewer RdYlGn, ten classes, reversed
# (idle green to saturated red; it reads on the page's dark background).
LEGEND = tuple((i / 10, colour) for i, colour in enumerate((
    "#006837", "#1a9850", "#66bd63", "#a6d96a", "#d9ef8b",
    "#fee08b", "#fdae61", "#f46d43", "#d73027", "#a50026")))
_LOWS = [low for low, _ in LEGEND]

# Row names when layers come from distances (no model): the lowest, middle and top rows.
GENERIC_ROWS = ("edge / leaf", "aggregation", "core / spine")

ModelView = collections.namedtuple("ModelView", "switches hosts")
ModelView.__doc__ = """What the view takes from a topology model: ``switches`` maps a dpid to
``(name, role, layer)``, ``hosts`` an IPv4 address to a host name."""


def colour_for(utilization):
    """The colour :data:`LEGEND` gives a link of this utilization (a fraction of capacity).

    Parameters
    ----------
    utilization : float
        Measured rate over capacity; below 0 counts as 0, above 1 as the top bin.

    Returns
    -------
    str
        ``#rrggbb``.

    Examples
    --------
    >>> colour_for(0.0), colour_for(0.95), colour_for(1.7)
    ('#006837', '#a50026', '#a50026')
    """
    return LEGEND[max(bisect.bisect_right(_LOWS, utilization) - 1, 0)][1]


def legend():
    """:data:`LEGEND` as the page reads it: ``[{"lo", "hi", "colour"}]``, ``hi`` of the last
    bin None (open)."""
    highs = _LOWS[1:] + [None]
    return [{"lo": low, "hi": high, "colour": colour}
            for (low, colour), high in zip(LEGEND, highs)]


def model_view(g):
    """The :class:`ModelView` of a topology model (a networkx graph, fabric/model.py)."""
    switches, hosts = {}, {}
    for name, d in g.nodes(data=True):
        if d["role"] == "host":
            hosts[d["ip"]] = name
        else:
            switches[d["dpid"]] = (name, d["role"], d["layer"])
    return ModelView(switches, hosts)


def switch_layers(switches, links, host_switches, model_layers=None):
    """The layer of each switch: 0 next to hosts, growing towards the core.

    Parameters
    ----------
    switches : iterable of int
        Every switch (dpid).
    links : iterable of (int, int)
        Switch links (either or both directions).
    host_switches : iterable of int
        Switches a host is attached to.
    model_layers : dict of int to int, optional
        A layer per dpid from the topology model; it wins over distance where given.

    Returns
    -------
    dict of int to int
        Layer of each switch: the model's, else the hop count from the nearest switch of
        ``host_switches`` over ``links``; a switch that reaches none is put in layer 0.

    Examples
    --------
    >>> switch_layers([1, 2, 3], [(1, 3), (3, 2)], [1, 2])
    {1: 0, 2: 0, 3: 1}
    >>> switch_layers([1, 2, 3], [(1, 3), (3, 2)], [1], {2: 5})
    {1: 0, 2: 5, 3: 1}
    """
    model_layers = model_layers or {}
    switches = set(switches)
    adj = collections.defaultdict(set)
    for u, v in links:
        adj[u].add(v)
        adj[v].add(u)
    hops = {s: 0 for s in host_switches if s in switches}
    frontier = sorted(hops)
    while frontier:   # breadth first: the first visit is the shortest distance
        nxt = []
        for u in frontier:
            for v in sorted(adj[u]):
                if v in switches and v not in hops:
                    hops[v] = hops[u] + 1
                    nxt.append(v)
        frontier = nxt
    return {s: model_layers[s] if s in model_layers else hops.get(s, 0)
            for s in sorted(switches)}


def natural_key(name):
    """Sort key that orders ``e2`` before ``e10``."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def _mean(values):
    return sum(values) / len(values) if values else 0.5


def _row_label(index, count, roles):
    """A row's name: its switches' model roles, else a generic one by its height."""
    named = sorted({r for r in roles if r})
    if named and None not in roles:
        return " / ".join(named)
    generic = ("switches" if count == 1 else GENERIC_ROWS[0] if index == 0
               else GENERIC_ROWS[2] if index == count - 1 else GENERIC_ROWS[1])
    return " / ".join(named + [generic])


def layout(switches, links, hosts, model=None):
    """The rows the page draws, bottom up, each node in its place.

    Parameters
    ----------
    switches : iterable of int
        Every switch the controller knows (dpid).
    links : iterable of (int, int)
        Directed switch links.
    hosts : iterable of dict
        Known hosts, each with ``mac``, ``ip``, ``dpid`` and ``port``.
    model : ModelView, optional
        Names, roles and layers from the topology model.

    Returns
    -------
    dict
        ``rows`` (bottom first: ``{"label", "nodes"}``; a switch node is ``{"kind":
        "switch", "dpid", "name", "role"}``, a host node ``{"kind": "host", "name", "ip",
        "mac", "dpid", "port"}``), ``layered_by`` (``"model"`` when the model placed every
        switch, else ``"distance"``) and ``legend`` (:func:`legend`).

    Hosts sit under their switch (by port); layer 0 is in name order; every row above in the
    mean position of its neighbours below (then by name), which keeps a fat-tree's pods
    together and its links short.
    """
    model = model or ModelView({}, {})
    switches = sorted(set(switches))
    links = list(links)
    hosts = sorted(hosts, key=lambda h: (h["dpid"], h["port"], h["ip"]))
    layers = switch_layers(switches, links, {h["dpid"] for h in hosts},
                           {d: m[2] for d, m in model.switches.items()})
    names = {s: model.switches[s][0] if s in model.switches else f"s{s}" for s in switches}
    roles = {s: model.switches[s][1] if s in model.switches else None for s in switches}
    below = collections.defaultdict(set)
    for u, v in links:
        if u in layers and v in layers and layers[u] != layers[v]:
            low, high = sorted((u, v), key=layers.get)
            below[high].add(low)
    where = {}  # dpid -> position in its row, as a fraction of the row's width
    switch_rows = []
    levels = sorted(set(layers.values()))
    for level in levels:
        row = sorted((s for s in switches if layers[s] == level),
                     key=lambda s: (natural_key(names[s]), s))
        if level != levels[0]:   # a stable sort: ties stay in name order
            row.sort(key=lambda s: _mean([where[b] for b in below[s] if b in where]))
        for i, s in enumerate(row):
            where[s] = (i + 0.5) / len(row)
        switch_rows.append(row)
    host_row = sorted(hosts, key=lambda h: (layers.get(h["dpid"], 0),
                                            where.get(h["dpid"], 0.0), h["port"], h["ip"]))
    rows = [{"label": "hosts", "nodes": [
        {"kind": "host", "name": model.hosts.get(h["ip"], h["ip"]), "ip": h["ip"],
         "mac": h["mac"], "dpid": h["dpid"], "port": h["port"]} for h in host_row]}]
    for i, row in enumerate(switch_rows):
        rows.append({"label": _row_label(i, len(switch_rows), [roles[s] for s in row]),
                     "nodes": [{"kind": "switch", "dpid": s, "name": names[s],
                                "role": roles[s]} for s in row]})
    by_model = bool(switches) and all(s in model.switches for s in switches)
    return {"rows": rows, "layered_by": "model" if by_model else "distance",
            "legend": legend()}
