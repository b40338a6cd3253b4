"""Optical circuit switches in the emulation: Open vSwitch bridges used as patch panels.

An OCS forwards light from a port to the port it is circuited to, whatever the light carries;
it neither learns nor routes. Emulated, it is a userspace OVS bridge in fail-mode secure that
is never connected to the controller (so the routing policies cannot touch it) and holds one
static flow per circuit direction, ``in_port=p actions=output:q``: with no other flow, a
frame entering a port without a circuit is dropped. :class:`OcsManager` installs the circuits
and reconfigures them: the changed circuits' flows go, the OCS stays dark for the (scaled)
reconfiguration time, the new flows come. Deciding which circuits (controllers/topoeng.py) and
telling the routing core (its drain and commit) belong elsewhere.

This module runs ``ovs-ofctl`` and sleeps; it imports Mininet only inside
:func:`patch_panel_class`.
"""

import re
import subprocess
import time

OFCTL = ("ovs-ofctl", "-O", "OpenFlow13")
# The only flows on an OCS bridge; its table-miss (fail-mode secure, no controller) drops.
CIRCUIT_PRIORITY = 100
# OCS bridges' datapath ids: far from the packet switches' (1, 2, ...), never seen by the
# controller anyway.
OCS_DPID_BASE = 0xC5 << 40
_FLOW = re.compile(r"in_port=\"?(\d+)\"?.*actions=output:\"?(\d+)\"?")


class OcsError(RuntimeError):
    """An OCS bridge refused a circuit change."""


def circuit_flows(p, q):
    """The two flows of circuit ``(p, q)``, as ovs-ofctl flow strings."""
    return [f"priority={CIRCUIT_PRIORITY},in_port={a},actions=output:{b}"
            for a, b in ((p, q), (q, p))]


def ocs_dpid(index):
    """Datapath id (16 hex digits) of OCS number ``index`` (1-based)."""
    return "%016x" % (OCS_DPID_BASE + index)


def patch_panel_class():
    """A Mininet switch class for OCS bridges: fail-mode secure, started with no controller."""
    from mininet.node import OVSSwitch

    class PatchPanel(OVSSwitch):
        def __init__(self, name, **params):
            params["failMode"] = "secure"
            super().__init__(name, **params)

        def start(self, controllers):
            super().start(controllers=[])

    return PatchPanel


def _ofctl(*args, stdin=None):
    r = subprocess.run(OFCTL + args, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise OcsError(f"{' '.join(OFCTL + args)}: {r.stderr.strip()[:300]}")
    return r.stdout


class OcsManager:
    """The circuits of the emulation's OCS bridges.

    Parameters
    ----------
    circuits : dict
        ``{ocs bridge name: ((p, q), ...)}`` (fabric/optical.py's checked circuits).
    """

    def __init__(self, circuits):
        self.circuits = {o: tuple(tuple(c) for c in pairs) for o, pairs in circuits.items()}
        self.counters = {"reconfigurations": 0, "circuits_removed": 0, "circuits_added": 0}

    def install(self):
        """Clear every OCS bridge and install its circuits."""
        for o, pairs in self.circuits.items():
            _ofctl("del-flows", o)
            self._add(o, pairs)

    @staticmethod
    def _add(o, pairs):
        if pairs:
            _ofctl("add-flows", o, "-",
                   stdin="".join(f + "\n" for p, q in pairs for f in circuit_flows(p, q)))

    def reconfigure(self, circuits, dark_s):
        """Move to ``circuits``: remove the flows of circuits that go, stay dark for
        ``dark_s`` seconds (the scaled reconfiguration time), add the new ones. Circuits that
        stay are not touched. Returns ``(removed, added)`` as sets of ``(ocs, p, q)``."""
        old = {(o, p, q) for o, pairs in self.circuits.items() for p, q in pairs}
        new = {(o, p, q) for o, pairs in circuits.items() for p, q in pairs}
        removed, added = old - new, new - old
        for o, p, q in sorted(removed):
            for a in (p, q):
                _ofctl("--strict", "del-flows", o, f"priority={CIRCUIT_PRIORITY},in_port={a}")
        if removed or added:
            time.sleep(dark_s)
        for o in sorted({c[0] for c in added}):
            self._add(o, [(p, q) for oo, p, q in sorted(added) if oo == o])
        self.circuits = {o: tuple(sorted(c for c in pairs)) for o, pairs in circuits.items()}
        self.counters["reconfigurations"] += 1
        self.counters["circuits_removed"] += len(removed)
        self.counters["circuits_added"] += len(added)
        return removed, added

    @staticmethod
    def flows(o):
        """``{(in_port, out_port)}`` the bridge ``o`` holds (from ``dump-flows``)."""
        out = set()
        for line in _ofctl("dump-flows", o).splitlines():
            m = _FLOW.search(line)
            if m:
                out.add((int(m.group(1)), int(m.group(2))))
        return out


def make_before_break(ctl, em, lg, circuits, dark_s, timeout_s=30.0):
    """Reconfigure the emulation's OCSes from logical fabric ``lg`` to ``circuits`` without
    losing a flow: the controller drains the circuits that change (routes move to the rest
    while they still carry), the OCS bridges move (dark for ``dark_s``), the controller
    commits the change as one transaction and routes onto the new circuits.

    Parameters
    ----------
    ctl : fabric.controller.Controller
    em : fabric.emulate.Emulation
        Running, built from ``lg``.
    lg : networkx.Graph
        The logical fabric the emulation runs now.
    circuits : dict
        The new circuits, ``{ocs: [(p, q), ...]}``.
    dark_s : float
        Wall-clock seconds the changed circuits stay dark (the scaled reconfiguration time).

    Returns
    -------
    (networkx.Graph, dict)
        The new logical fabric, and seconds taken per step (``drain_s``, ``reconfigure_s``,
        ``commit_s``) with the circuits removed and added.
    """
    from fabric import optical
    new, plan = optical.reconfigure(lg, circuits)
    dpid = {n: v for n, v in lg.nodes(data="dpid") if v is not None}

    def links(cs):
        return [[[dpid[s], p] for s, p in optical.circuit_link(lg, c)] for c in cs]

    t0 = time.monotonic()
    ctl.request("POST", "/fabric/links/drain", {"links": links(plan.removed)})
    ctl.wait_status(lambda s: not s["pending"], timeout_s, "routes off the drained circuits")
    t1 = time.monotonic()
    em.ocs.reconfigure(optical.circuits_of(new), dark_s)
    t2 = time.monotonic()
    ctl.request("POST", "/fabric/links/commit",
                {"removed": links(plan.removed), "added": links(plan.added)})
    ctl.wait_status(lambda s: not s["pending"], timeout_s, "routes onto the new circuits")
    t3 = time.monotonic()
    return new, {"drain_s": round(t1 - t0, 3), "reconfigure_s": round(t2 - t1, 3),
                 "commit_s": round(t3 - t2, 3), "removed": len(plan.removed),
                 "added": len(plan.added)}
