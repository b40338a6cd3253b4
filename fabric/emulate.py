"""Build a Mininet network from the topology model, shape it, and always tear it down.

This module is the only place that turns the model (fabric/model.py) into namespaces, veth
pairs and Open vSwitch bridges. It:

- picks the OVS datapath itself: the kernel one when the openvswitch module is there, else the
  userspace (netdev) one with NIC offloads off on host interfaces (or TCP checksums break);
- maps nominal rates to emulated ones with one scale factor (:func:`rate_scale`) and refuses a
  link that cannot be shaped (over Mininet's 1 Gbit/s, or under what htb can do);
- shapes every link end with htb in one ``tc -batch`` per namespace instead of Mininet's one
  command at a time, and applies propagation delay (scaled by 1/scale) with netem where the
  kernel has it, else with a userspace forwarder (fabric/delayline.py) in a namespace cut
  into every link whose scaled delay reaches :data:`DELAY_MIN_MS`; ``Emulation.info`` says
  which (``delay_method``);
- sets TCP congestion control explicitly in every host;
- records what it created in a state file so :mod:`fabric.cleanup` can remove it after a
  crash, and removes it itself on success, error and Ctrl-C (use it as a context manager).

It does not start the controller or traffic; fabric/runner.py does.
"""

import json
import os
import re
import subprocess
import sys
import tempfile
import time

import networkx as nx

from fabric import cleanup, ocs, optical
from fabric.delayline import buffer_bytes
from fabric.model import host_rate_gbps, hosts, is_host, switches

CONTROLLER_NODE = "c0"
SWITCH_SOCKET_BUFFER_BYTES = 64 * 1024 * 1024
MAX_SHAPED_MBPS = 1000.0   # Mininet's TCLink limit, and about what one CPU can carry
MIN_SHAPED_MBPS = 0.1
CONGESTION_CONTROLS = ("cubic", "reno", "bbr")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A link whose scaled one-way delay is below this gets no forwarder: a pass through it costs
# 0.07-0.18 ms itself (a Python process waking from select) and one hop of the userspace
# switch 0.1-0.5 ms under load, so a smaller delay would be lost in what it measures.
DELAY_MIN_MS = 0.05
# The namespace (a Mininet node) that holds the middle ends of every delayed link.
DELAY_NODE = "dly0"
DELAY_START_TIMEOUT_S = 10.0
# select() takes file descriptors below 1024; the forwarder's own few come first.
MAX_DELAYED_ENDS = 1000


# How long a switch waits for the controller to answer its echo before disconnecting.
SWITCH_INACTIVITY_PROBE_MS = 60_000


# Open vSwitch's other_config key bounding how stale its OpenFlow flow counters get.
REVALIDATOR_KEY = "max-revalidator"


class EmulationError(RuntimeError):
    """The emulation cannot be built as asked (unshapeable link, missing feature...)."""


def check_ovs():
    """Raise EmulationError, saying so, unless Open vSwitch answers (Mininet would print its
    own error and exit the process)."""
    try:
        r = subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True,
                           text=True)
    except FileNotFoundError:
        raise EmulationError("Open vSwitch is not installed (no ovs-vsctl); make setup "
                             "installs it") from None
    if r.returncode != 0:
        why = (r.stderr or r.stdout).strip().splitlines()
        raise EmulationError(f"Open vSwitch is not running (ovs-vsctl show: "
                             f"{why[0] if why else 'exit ' + str(r.returncode)}); make setup "
                             "starts it")


def rate_scale(g, host_link_mbps):
    """Scale factor (emulated Mbit/s per nominal Mbit/s) that puts the fastest NIC at
    ``host_link_mbps``; raises EmulationError if any link then falls outside what htb shapes."""
    if not host_link_mbps > 0:
        raise EmulationError(f"host_link_mbps must be > 0, got {host_link_mbps}")
    fastest = max(host_rate_gbps(g, h) for h in hosts(g)) * 1000.0
    scale = host_link_mbps / fastest
    for u, v, d in g.edges(data=True):
        mbps = d["capacity_gbps"] * 1000.0 * scale
        if not MIN_SHAPED_MBPS <= mbps <= MAX_SHAPED_MBPS:
            raise EmulationError(
                f"link {u}-{v}: {d['capacity_gbps']} Gbit/s maps to {mbps:.3f} Mbit/s at scale "
                f"{scale:g}, outside the shapeable {MIN_SHAPED_MBPS}-{MAX_SHAPED_MBPS} Mbit/s; "
                "choose another host_link_mbps")
    return scale


def kernel_has(module_dir_name):
    """Is a kernel module or built-in feature present (checked in /sys, not by loading)?"""
    return os.path.isdir(f"/sys/module/{module_dir_name}")


def has_netem():
    if kernel_has("sch_netem"):
        return True
    probe = subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
                           capture_output=True)
    if probe.returncode == 0:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], capture_output=True)
        return True
    return False


def ovs_datapath():
    """'kernel' when the openvswitch module is loaded or loadable, else 'user'."""
    if kernel_has("openvswitch"):
        return "kernel"
    if subprocess.run(["modprobe", "-q", "openvswitch"], capture_output=True).returncode == 0:
        return "kernel"
    return "user"


def _intf(node, port):
    return f"{node}-eth{port}"


def link_mbps(d, scale):
    return d["capacity_gbps"] * 1000.0 * scale


def htb_class(intf, mbps, mtu, verb="add"):
    """The tc line that adds (or, ``verb="change"``, re-rates) the htb class shaping
    ``intf`` to ``mbps``."""
    rate = f"{mbps:.6f}mbit"
    frame = mtu + 14
    return (f"class {verb} dev {intf} parent 1: classid 1:1 htb rate {rate} ceil {rate} "
            f"burst {2 * frame} cburst {2 * frame} quantum {frame}")


def tc_commands(intf, mbps, queue_packets, mtu, delay_ms=None):
    """tc -batch lines shaping ``intf`` to ``mbps`` with a tail-drop queue of
    ``queue_packets`` (and netem delay below it when asked)."""
    lines = [
        f"qdisc add dev {intf} root handle 1: htb default 1",
        htb_class(intf, mbps, mtu),
    ]
    if delay_ms:
        lines.append(f"qdisc add dev {intf} parent 1:1 handle 10: netem delay {delay_ms:.6f}ms "
                     f"limit {queue_packets}")
    else:
        lines.append(f"qdisc add dev {intf} parent 1:1 handle 10: pfifo limit {queue_packets}")
    return lines


def _raise_sysctl(key, value):
    path = "/proc/sys/" + key.replace(".", "/")
    with open(path) as f:
        if int(f.read().split()[0]) >= value:
            return
    with open(path, "w") as f:
        f.write(str(value))


def _switch_send_buffers():
    """Send-buffer sizes of ovs-vswitchd's AF_PACKET sockets."""
    out = subprocess.run(["ss", "-0", "-a", "-m", "-p"], capture_output=True, text=True).stdout
    return [int(m) for m in re.findall(r'"ovs-vswitchd".*?tb(\d+)', out)]


def ensure_switch_buffers():
    """Make sure the userspace switch's packet sockets have large buffers.

    The userspace datapath reads every port through an AF_PACKET socket and writes every
    packet through ONE shared AF_PACKET socket, created with the kernel's default buffer
    sizes. With the default 208 KiB send buffer only a dozen jumbo frames can wait in all the
    ports' qdiscs together before sends fail, and those drops are counted nowhere but as TCP
    loss: the real queue would be that buffer, not ``queue_packets``. So the defaults are
    raised (they only size sockets that do not set their own) and, if ovs-vswitchd already
    holds a small send socket while no bridge exists, it is restarted to take them.
    """
    for key in ("net.core.wmem_default", "net.core.rmem_default"):
        _raise_sysctl(key, SWITCH_SOCKET_BUFFER_BYTES)
    small = [b for b in _switch_send_buffers() if b < SWITCH_SOCKET_BUFFER_BYTES]
    if not small:
        return
    bridges = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True,
                             text=True).stdout.split()
    if bridges:
        raise EmulationError(
            "ovs-vswitchd holds packet sockets with small buffers and bridges exist "
            f"({', '.join(bridges[:4])}); stop other runs (make clean) so it can be restarted")
    r = subprocess.run(["/usr/share/openvswitch/scripts/ovs-ctl", "restart",
                        "--system-id=random"], capture_output=True, text=True)
    if r.returncode != 0:
        raise EmulationError(f"restarting Open vSwitch failed: {r.stdout[-300:]}{r.stderr[-300:]}")


def interface_stats(names, ip_output=None):
    """``{interface: stats64}`` (``rx``/``tx`` packets, bytes, dropped...) of the named
    interfaces of a namespace, from ``ip -s -j link show`` (run in the root namespace unless
    its output is given)."""
    if ip_output is None:
        ip_output = subprocess.run(["ip", "-s", "-j", "link", "show"], capture_output=True,
                                   text=True).stdout
    names = set(names)
    return {link["ifname"]: link["stats64"] for link in json.loads(ip_output or "[]")
            if link.get("ifname") in names}


def _sum_qdisc_drops(tc_output, root_only):
    """Sum the 'dropped' counts of htb root qdiscs in ``tc -s qdisc`` output (the leaf fifo
    drops are counted again in its root)."""
    total, counting = 0, False
    for line in tc_output.splitlines():
        if line.startswith("qdisc "):
            counting = (not root_only) or line.startswith("qdisc htb 1:")
        m = re.search(r"dropped (\d+)", line)
        if m and counting:
            total += int(m.group(1))
    return total


def scaled_delay_ms(d, scale):
    """One-way propagation delay of link data ``d`` in the emulation (ms): nominal / scale."""
    return d["delay_us"] / 1000.0 / scale


def delayed_links(g, scale):
    """The links a forwarder delays: those whose scaled one-way delay reaches
    :data:`DELAY_MIN_MS`, as ``(u, v)`` in a fixed order (by ``u``'s port, then names)."""
    edges = sorted(g.edges(data=True), key=lambda e: (e[2]["ports"][e[0]], e[0], e[1]))
    return [(u, v) for u, v, d in edges if scaled_delay_ms(d, scale) >= DELAY_MIN_MS]


def delay_ends(i):
    """Ports of :data:`DELAY_NODE` that the ``i``-th delayed link's halves end on."""
    return 2 * i, 2 * i + 1


def mininet_topo(g, scale=None, host_link_mbps=10.0, delayed=(), **switch_opts):
    """A mininet.topo.Topo for ``mn --custom``: same names, ports, MACs, IPs and dpids; link
    ``bw`` in emulated Mbit/s (used when mn runs with ``--link tc``); ``switch_opts`` go to
    every switch (e.g. ``datapath="user"``). A fabric with optical circuit switches is built
    as cabled (fabric/optical.py's physical graph): its OCSes are patch-panel bridges
    (fabric/ocs.py) whose circuits :class:`Emulation` installs. Each link of ``delayed``
    (pairs ``(u, v)`` of the graph built) is cut in two halves that meet in
    :data:`DELAY_NODE` (``u``'s port to its port ``2i``, its port ``2i + 1`` to ``v``'s
    port), so the switches keep their port numbers and names."""
    from mininet.topo import Topo
    scale = rate_scale(g, host_link_mbps) if scale is None else scale
    if optical.is_optical(g):
        g = optical.physical(g)
    topo = Topo()
    for h in hosts(g):
        topo.addHost(h, ip=g.nodes[h]["ip"] + "/8", mac=g.nodes[h]["mac"])
    for s in switches(g):
        topo.addSwitch(s, dpid="%016x" % g.nodes[s]["dpid"], protocols="OpenFlow13",
                       **switch_opts)
    panel = ocs.patch_panel_class() if optical.ocs_nodes(g) else None
    for o in optical.ocs_nodes(g):
        topo.addSwitch(o, cls=panel, dpid=ocs.ocs_dpid(g.nodes[o]["index"]),
                       protocols="OpenFlow13", **switch_opts)
    cut = {frozenset(e): i for i, e in enumerate(delayed)}
    if cut:
        # No address: the kernel in this namespace must neither answer nor send anything.
        topo.addHost(DELAY_NODE, ip=None)
    for u, v, d in sorted(g.edges(data=True), key=lambda e: (e[2]["ports"][e[0]], e[0], e[1])):
        bw = link_mbps(d, scale)
        if frozenset((u, v)) in cut:
            a, b = delay_ends(cut[frozenset((u, v))])
            topo.addLink(u, DELAY_NODE, port1=d["ports"][u], port2=a, bw=bw)
            topo.addLink(DELAY_NODE, v, port1=b, port2=d["ports"][v], bw=bw)
        else:
            topo.addLink(u, v, port1=d["ports"][u], port2=d["ports"][v], bw=bw)
    return topo


def longest_delayed_path(g, scale):
    """The host pair whose least-delay path has the largest scaled round trip, as a dict:
    ``hosts``, ``rtt_ms`` (2 x the one-way delay summed over the path), ``rate_mbps`` (its
    slowest link, emulated), ``bdp_bytes`` (rate x round trip) and ``link`` (its longest
    link, ``"u-v"``); None when no link has a delay."""
    if not any(d["delay_us"] for _, _, d in g.edges(data=True)):
        return None
    hs, best = hosts(g), None
    for h in hs:
        dist, paths = nx.single_source_dijkstra(g, h, weight="delay_us")
        far = max((o for o in hs if o != h and o in dist), key=lambda o: (dist[o], o),
                  default=None)
        if far is not None and (best is None or dist[far] > best[0]):
            best = (dist[far], paths[far])
    if best is None or not best[0]:
        return None
    one_way_us, path = best
    hops = list(zip(path, path[1:]))
    rate = min(link_mbps(g.edges[e], scale) for e in hops)
    rtt_ms = 2 * one_way_us / 1000.0 / scale
    u, v = max(hops, key=lambda e: g.edges[e]["delay_us"])
    return {"hosts": [path[0], path[-1]], "rtt_ms": rtt_ms, "rate_mbps": rate,
            "bdp_bytes": int(rate * 1e6 / 8 * rtt_ms / 1000.0), "link": f"{u}-{v}"}


def window_warning(g, scale, window_bytes, autotune_max_bytes=None):
    """One line saying that ``window_bytes`` (the agents' receive buffer; 0: autotuning up
    to ``autotune_max_bytes``, read from the kernel when None) cannot cover the scaled
    bandwidth-delay product of the longest delayed path, or None when it can."""
    path = longest_delayed_path(g, scale)
    if path is None:
        return None
    window = window_bytes
    if not window:
        if autotune_max_bytes is None:
            with open("/proc/sys/net/ipv4/tcp_rmem") as f:
                autotune_max_bytes = int(f.read().split()[2])
        window = autotune_max_bytes
    if window >= path["bdp_bytes"]:
        return None
    return (f"warning: tcp_window_bytes {window} B cannot cover the bandwidth-delay product "
            f"{path['bdp_bytes']} B of link {path['link']} (path {path['hosts'][0]}-"
            f"{path['hosts'][1]}: {path['rate_mbps']:.4g} Mbit/s x {path['rtt_ms']:.4g} ms "
            f"round trip, emulated): flows on it are window-limited")


class Emulation:
    """A running Mininet network built from fabric ``g``; use ``with Emulation(...) as em``.

    Parameters
    ----------
    g : nx.Graph
        The topology model.
    controller_port : int
        TCP port of the OpenFlow controller on 127.0.0.1.
    scale : float
        Emulated Mbit/s per nominal Mbit/s (see :func:`rate_scale`).
    congestion_control : str
        TCP congestion control set in every host.
    queue_packets : int
        Tail-drop queue length of every shaped interface.
    mtu : int
        MTU of every link. Jumbo frames (as AI fabrics run) cut the packet rate the
        userspace switch must carry, its one busy thread being the emulator's bottleneck.
    emulate_delay : bool
        Apply propagation delay (scaled by 1/scale): with netem where the kernel has it,
        else with a forwarder (fabric/delayline.py) on every link whose scaled delay
        reaches :data:`DELAY_MIN_MS`.
    static_arp : bool
        Give every host permanent neighbour entries for all fabric hosts (as clusters are
        provisioned); the controller still answers any ARP that is sent. Off, every address
        is resolved through the controller.
    flow_counter_refresh_ms : int or None
        Longest age of the flow counters the switches report. The datapath (kernel or
        userspace) counts a rule's packets; ovs-vswitchd copies those counts to its OpenFlow
        rules only when its revalidator threads go over the datapath's flows, at most
        ``max-revalidator`` ms apart (500 by default), so a flow statistics reply can
        describe the traffic of half a second ago: at statistics every 0.25 s ``hedera``
        saw an elephant 0.45 s after its first byte and placed it when a one-second transfer
        was half over (k=4 stride, median of 5 seeds: 0.51 of non-blocking, 0.60 with 100
        ms). It is set in Open vSwitch's ``other_config`` for the run and put back at
        teardown (and by clean-up after a crash); None leaves it alone.
    """

    def __init__(self, g, controller_port, scale, congestion_control="cubic",
                 queue_packets=1000, mtu=9000, emulate_delay=True, static_arp=True,
                 flow_counter_refresh_ms=100, log=print):
        if congestion_control not in CONGESTION_CONTROLS:
            raise EmulationError(f"congestion_control must be one of {CONGESTION_CONTROLS}, "
                                 f"got {congestion_control!r}")
        self.g = g
        # What is cabled: the fabric itself, or for OCS fabrics the physical graph (switches,
        # OCS bridges, fibers), whose circuits become flows on the OCS bridges.
        self.wired = optical.physical(g) if optical.is_optical(g) else g
        self.bridges = switches(g) + optical.ocs_nodes(self.wired)
        self.ocs = (ocs.OcsManager(optical.circuits_of(g)) if optical.is_optical(g)
                    else None)
        self.controller_port = controller_port
        self.scale = scale
        self.cc = congestion_control
        self.queue_packets = int(queue_packets)
        self.static_arp = static_arp
        self.mtu = int(mtu)
        self.refresh_ms = None if flow_counter_refresh_ms is None else int(
            flow_counter_refresh_ms)
        self._ovs_before = None   # the "key=value" item recorded while ours is set
        self.log = log
        self.net = None
        self.datapath = ovs_datapath()
        delayed = delayed_links(self.wired, scale)  # the links cabled, fibers to OCSes too
        any_delay = any(d["delay_us"] for _, _, d in g.edges(data=True))
        method = ("none" if not (emulate_delay and any_delay)
                  else "netem" if has_netem() else "forwarder" if delayed else "none")
        self._netem = method == "netem"
        self.delayed = delayed if method == "forwarder" else []
        self.info = {
            "datapath": self.datapath,
            "scale": scale,
            "congestion_control": self.cc,
            "queue_packets": self.queue_packets,
            "static_arp": static_arp,
            "mtu": self.mtu,
            "flow_counter_refresh_ms": self.refresh_ms,
            # True when every delay worth emulating is: none below DELAY_MIN_MS is missed.
            "delay_emulated": method != "none" or not delayed,
            "delay_method": method,
            "delay_min_ms": DELAY_MIN_MS,
            "delay_links": len(delayed) if method == "forwarder" else (
                sum(1 for _, _, d in g.edges(data=True) if d["delay_us"]) if self._netem
                else 0),
            "delay_note": self._delay_note(method, any_delay, emulate_delay, delayed),
            "timings_s": {},
        }
        self._forwarder = None
        self._stats_path = os.path.join(cleanup.STATE_DIR, f"delayline-{os.getpid()}.json")
        self._lock = cleanup.MachineLock()

    @staticmethod
    def _delay_note(method, any_delay, emulate_delay, delayed):
        if not any_delay:
            return "no link has propagation delay"
        if not emulate_delay:
            return "propagation delay not emulated (emulate_delay: false)"
        if method == "netem":
            return "propagation delay applied with netem, scaled by 1/scale"
        if method == "forwarder":
            return (f"kernel has no netem: propagation delay (scaled by 1/scale) applied by a "
                    f"userspace forwarder on the {len(delayed)} links whose scaled one-way "
                    f"delay is >= {DELAY_MIN_MS} ms; shorter ones are left out")
        return (f"kernel has no netem and no link's scaled one-way delay reaches "
                f"{DELAY_MIN_MS} ms: propagation delay left out")

    def _nodes(self):
        """Names of the Mininet nodes with a shell: hosts, the controller, the delay node."""
        return hosts(self.g) + [CONTROLLER_NODE] + ([DELAY_NODE] if self.delayed else [])

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        from mininet.log import setLogLevel
        from mininet.net import Mininet
        from mininet.node import OVSSwitch, RemoteController
        setLogLevel("error")
        t0 = time.monotonic()
        check_ovs()
        try:
            self._lock.acquire()
        except cleanup.Busy as e:
            raise EmulationError(str(e)) from None
        # Under the lock no live run owns these names: clear what a killed run left (its
        # recorded bridges, shells and processes), and then anything still carrying our node
        # names that no record lists (a run killed before it wrote one, or whose state was
        # lost): a stale veth of one of our names fails the build with "File exists".
        for line in cleanup.cleanup():
            self.log(f"cleaned up after an earlier run: {line}")
        cleanup.kill_host_shells(self._nodes() + self.bridges + [DELAY_NODE])
        cleanup.remove_bridges(self.bridges)
        cleanup.record(bridges=self.bridges, hosts=self._nodes())
        self._set_refresh()
        # Let ovs-vswitchd finish any reconfiguration still pending (a crashed run's clean-up)
        # before bridges of the same names are created again.
        subprocess.run(["ovs-vsctl", "--timeout=120", "sync"], capture_output=True)
        topo = mininet_topo(self.g, self.scale, delayed=self.delayed, datapath=self.datapath,
                            batch=True)
        self.net = Mininet(
            topo=topo, switch=OVSSwitch, controller=None, build=False, autoSetMacs=False,
            autoStaticArp=False, inNamespace=False)
        # fabric/controller.py has checked that it listens; Mininet's own check (telnet into
        # the OpenFlow port, run by the constructor itself) fails now and then with a
        # UnicodeDecodeError on the binary hello.
        class CheckedRemote(RemoteController):
            def checkListening(self):
                pass

        self.net.addController(CheckedRemote(CONTROLLER_NODE, ip="127.0.0.1",
                                             port=self.controller_port))
        self.net.build()
        t1 = time.monotonic()
        self._configure_hosts()
        t2 = time.monotonic()
        ensure_switch_buffers()
        self.net.start()
        # Only now: Open vSwitch deletes any qdisc on an interface when it adds it as a port.
        self._shape_switches()
        if self.ocs is not None:
            self.ocs.install()
        t3 = time.monotonic()
        if self.delayed:
            self._start_forwarder()
        self.info["timings_s"] = {"build": round(t1 - t0, 3), "configure": round(t2 - t1, 3),
                                  "switches_start": round(t3 - t2, 3),
                                  "delay_start": round(time.monotonic() - t3, 3)}
        return self

    def stop(self):
        """Tear down quickly: every bridge in one ovs-vsctl call, then the host shells (their
        namespaces take both ends of every veth with them); Mininet's own stop deletes links
        one command at a time (20 s for a k=8 fat-tree)."""
        if self._forwarder is not None:
            fwd, self._forwarder = self._forwarder, None
            cleanup.kill_pids([fwd.pid], grace_s=2.0)
            fwd.wait()
            cleanup.forget(pids=[fwd.pid])
        if self.net is not None:
            t0 = time.monotonic()
            net, self.net = self.net, None
            try:
                for node in net.hosts + net.switches + net.controllers:
                    node.terminate()
                cleanup.kill_host_shells(self._nodes() + self.bridges)
                cleanup.remove_bridges(self.bridges)
            finally:
                self.info["timings_s"]["teardown"] = round(time.monotonic() - t0, 3)
        if self._ovs_before is not None:
            cleanup.restore_ovs_config([self._ovs_before])
            cleanup.forget(ovs_config=[self._ovs_before])
            self._ovs_before = None
        cleanup.forget(bridges=self.bridges, hosts=self._nodes())
        for path in (self._stats_path, self._stats_path + ".err"):
            if os.path.exists(path):
                os.remove(path)
        self._lock.release()

    def _set_refresh(self):
        """Open vSwitch's ``max-revalidator`` to ``flow_counter_refresh_ms`` for the run, the
        value before it recorded first (see ``flow_counter_refresh_ms``)."""
        if self.refresh_ms is None:
            return
        before = f"{REVALIDATOR_KEY}={cleanup.ovs_config(REVALIDATOR_KEY) or ''}"
        cleanup.record(ovs_config=[before])
        self._ovs_before = before
        error = cleanup.set_ovs_config(REVALIDATOR_KEY, str(self.refresh_ms))
        if error:   # a run would otherwise record a freshness its counters do not have
            raise EmulationError(f"setting Open vSwitch's other_config:{REVALIDATOR_KEY} to "
                                 f"{self.refresh_ms} failed: {error[:300]}")

    # -- delay without netem -----------------------------------------------------------------
    def _start_forwarder(self):
        """Configure the delay node's ends and start one forwarder for every delayed link
        (one process: it measured about 25 us of CPU per frame, 1 Gbit/s of jumbo frames
        in half a core, far above what the userspace switch carries). It dies with the
        thread that starts it (PR_SET_PDEATHSIG): start the emulation from a thread that
        outlives it."""
        if 2 * len(self.delayed) > MAX_DELAYED_ENDS:
            raise EmulationError(
                f"{len(self.delayed)} links have a scaled delay >= {DELAY_MIN_MS} ms; the "
                f"forwarder serves at most {MAX_DELAYED_ENDS // 2} (select's file descriptor "
                "limit): raise host_link_mbps or set emulate_delay: false")
        node = self.net.get(DELAY_NODE)
        script, args = ["set -e", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1"], []
        for i, (u, v) in enumerate(self.delayed):
            d = self.g.edges[u, v]
            delay_s = scaled_delay_ms(d, self.scale) / 1000.0
            ends = [_intf(DELAY_NODE, p) for p in delay_ends(i)]
            for intf in ends:
                script += [f"ethtool -K {intf} tx off rx off tso off gso off gro off "
                           ">/dev/null 2>&1 || true",
                           f"ip link set {intf} mtu {self.mtu} promisc on up"]
            args += ["--link", f"{ends[0]},{ends[1]},{delay_s!r},"
                     f"{buffer_bytes(link_mbps(d, self.scale), delay_s, self.mtu)}"]
        # A file, not one command line: the node's shell reads lines of at most 4 KiB.
        path = os.path.join(cleanup.STATE_DIR, f"delay-{os.getpid()}.sh")
        with open(path, "w") as f:
            f.write("\n".join(script) + "\n")
        out = node.cmd(f"sh {path}; echo rc=$?; rm -f {path}")
        if "rc=0" not in out:
            raise EmulationError(f"configuring {DELAY_NODE}'s interfaces failed: {out.strip()}")
        err_path = self._stats_path + ".err"
        with open(err_path, "wb") as err:
            self._forwarder = node.popen(
                [sys.executable, "-m", "fabric.delayline", *args, "--stats", self._stats_path,
                 "--parent", str(os.getpid())],
                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err)
        cleanup.record(pids=[self._forwarder.pid])
        deadline = time.monotonic() + DELAY_START_TIMEOUT_S
        while not os.path.exists(self._stats_path):
            if self._forwarder.poll() is not None or time.monotonic() > deadline:
                with open(err_path) as f:
                    why = f.read().strip()[-300:] or f"exit status {self._forwarder.poll()}"
                raise EmulationError(f"the delay forwarder did not start: {why}")
            time.sleep(0.05)
        os.remove(err_path)

    def forwarder_stats(self):
        """The delay forwarder's counters so far (``frames_forwarded``, ``frames_dropped``
        when its buffers overflowed, ``send_errors``, ``peak_buffer_bytes``; written every
        0.5 s), or {} when no forwarder runs. Raises EmulationError if it has died (its
        links would be dark)."""
        if self._forwarder is None:
            return {}
        if self._forwarder.poll() is not None:
            raise EmulationError(f"the delay forwarder exited with status "
                                 f"{self._forwarder.returncode}: its {len(self.delayed)} "
                                 "links carried nothing since")
        try:
            with open(self._stats_path) as f:
                return json.loads(f.read())
        except (OSError, ValueError):
            return {}

    # -- configuration ---------------------------------------------------------------------
    def _delay_ms(self, d):
        return d["delay_us"] / 1000.0 / self.scale if self._netem and d["delay_us"] else None

    def _configure_hosts(self):
        """One shell round trip per host: offloads, sysctls, neighbours, shaping of its NIC."""
        for h in hosts(self.g):
            node = self.net.get(h)
            (sw,) = self.g.neighbors(h)
            d = self.g.edges[h, sw]
            intf = _intf(h, 0)
            tc = tc_commands(intf, link_mbps(d, self.scale), self.queue_packets, self.mtu,
                             self._delay_ms(d))
            script = "; ".join([
                f"ethtool -K {intf} tx off rx off tso off gso off gro off >/dev/null 2>&1",
                f"ip link set {intf} mtu {self.mtu}",
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                # May be refused in a sandbox: the agent also sets it on every socket.
                f"sysctl -qw net.ipv4.tcp_congestion_control={self.cc} 2>/dev/null",
                "sysctl -qw net.ipv4.tcp_no_metrics_save=1",
                f"printf '%s\\n' {' '.join(repr(x) for x in tc)} | tc -batch -",
                "echo rc=$?",
            ])
            if self.static_arp:
                script += "; " + self._neighbours_cmd(h, intf)
            out = node.cmd(script)
            if "rc=0" not in out or (self.static_arp and "neigh=0" not in out):
                raise EmulationError(f"host {h}: shaping {intf} failed: {out.strip()}")
            self.info["host_default_congestion_control"] = node.cmd(
                "sysctl -n net.ipv4.tcp_congestion_control").strip()

    def _neighbours_cmd(self, h, intf):
        path = os.path.join(cleanup.STATE_DIR, f"neigh-{os.getpid()}-{h}")
        with open(path, "w") as f:
            for other in hosts(self.g):
                if other != h:
                    n = self.g.nodes[other]
                    f.write(f"neigh replace {n['ip']} lladdr {n['mac']} dev {intf} nud permanent\n")
        return f"ip -batch {path}; echo neigh=$?; rm -f {path}"

    def _switch_intfs(self):
        """(interface, link data) for every switch-side link end."""
        for u, v, d in self.wired.edges(data=True):
            for node in (u, v):
                if not is_host(self.wired, node):
                    yield _intf(node, d["ports"][node]), d

    def _shape_switches(self):
        """Shape every switch-side interface in one tc -batch in the root namespace."""
        lines, links, ovs = [], [], ["ovs-vsctl", "--timeout=60"]
        for intf, d in self._switch_intfs():
            links.append(f"link set {intf} mtu {self.mtu}")
            ovs += ["--", "set", "interface", intf, f"mtu_request={self.mtu}"]
            lines += tc_commands(intf, link_mbps(d, self.scale), self.queue_packets, self.mtu,
                                 self._delay_ms(d))
        for tool, batch in (("ip", links), ("tc", lines)):
            with tempfile.NamedTemporaryFile("w", suffix=f".{tool}", dir=cleanup.STATE_DIR) as f:
                f.write("\n".join(batch) + "\n")
                f.flush()
                r = subprocess.run([tool, "-force", "-batch", f.name], capture_output=True,
                                   text=True)
            if r.returncode != 0:
                raise EmulationError(f"configuring switch interfaces with {tool} failed: "
                                     f"{r.stderr.strip()[:500]}")
        # A switch disconnects from a controller that has not answered its echo within the
        # inactivity probe (5 s by default), and on reconnecting it is wiped and rebuilt.
        # Under a large emulation the controller shares two cores with a hundred agents and
        # answers late, not never: a dead controller closes its connection anyway.
        uuids = subprocess.run(["ovs-vsctl", "--timeout=30", "--bare", "--columns=_uuid",
                                "list", "controller"], capture_output=True, text=True).stdout
        for uuid in uuids.split():
            ovs += ["--", "set", "controller", uuid,
                    f"inactivity_probe={SWITCH_INACTIVITY_PROBE_MS}"]
        # The userspace datapath sizes its receive buffers from the port MTU it was asked for.
        r = subprocess.run(ovs, capture_output=True, text=True)
        if r.returncode != 0:
            raise EmulationError(f"setting port MTUs failed: {r.stderr.strip()[:500]}")

    def check_shaping(self):
        """Raise EmulationError unless every switch-side interface still has its htb root
        (Open vSwitch removes qdiscs of ports it (re)configures)."""
        out = subprocess.run(["tc", "qdisc", "show"], capture_output=True, text=True).stdout
        shaped = {line.split()[4] for line in out.splitlines()
                  if line.startswith("qdisc htb 1: dev ")}
        missing = [i for i, _ in self._switch_intfs() if i not in shaped]
        if missing:
            raise EmulationError(f"{len(missing)} switch interfaces lost their shaping, "
                                 f"e.g. {missing[:4]}")

    def drop_counters(self):
        """Packets dropped so far, summed per place: switch-side qdiscs, switch-side
        interfaces (tx/rx), host-side qdiscs and interfaces, Open vSwitch ports, the delay
        forwarder's full buffers (as of its last report, at most 0.5 s old)."""
        totals = {"switch_qdisc": 0, "switch_intf_tx": 0, "switch_intf_rx": 0,
                  "host_qdisc": 0, "host_intf_rx": 0, "ovs_port": 0,
                  "delay_buffer": self.forwarder_stats().get("frames_dropped", 0)}
        out = subprocess.run(["tc", "-s", "qdisc", "show"], capture_output=True,
                             text=True).stdout
        totals["switch_qdisc"] = _sum_qdisc_drops(out, root_only=True)
        for stats in interface_stats(i for i, _ in self._switch_intfs()).values():
            totals["switch_intf_tx"] += stats["tx"]["dropped"]
            totals["switch_intf_rx"] += stats["rx"]["dropped"]
        for h in hosts(self.g):
            node = self.net.get(h)
            totals["host_qdisc"] += _sum_qdisc_drops(node.cmd("tc -s qdisc show"), True)
            intf = _intf(h, 0)
            out = node.cmd(f"ip -s -j link show {intf}")
            for stats in interface_stats([intf], out).values():
                totals["host_intf_rx"] += stats["rx"]["dropped"]
        for sw in switches(self.g):
            out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-ports", sw],
                                 capture_output=True, text=True).stdout
            totals["ovs_port"] += sum(int(m) for m in re.findall(r"drop=(\d+)", out))
        return totals

    # -- helpers for runs ------------------------------------------------------------------
    def host(self, name):
        return self.net.get(name)

    # -- faults (fabric/chaos.py) ------------------------------------------------------------
    def link_intfs(self, u, v):
        """The switch-side interfaces of link ``u``-``v`` (both ends when both are switches)."""
        d = self.g.edges[u, v]
        return [_intf(n, d["ports"][n]) for n in (u, v) if not is_host(self.g, n)]

    def set_link(self, u, v, up):
        """Cut (``up=False``) or restore link ``u``-``v``: its switch-side ends go down or
        up, so each switch sees its port's carrier go, as on a fiber cut."""
        for intf in self.link_intfs(u, v):
            run_tool(["ip", "link", "set", "dev", intf, "up" if up else "down"])

    def set_switch(self, sw, up, targets=None):
        """Take switch ``sw`` down (every port dark, its controller connections dropped;
        returns their targets) or back up (ports up, reconnected to ``targets``), as a switch
        that crashes and reboots with its flow tables kept."""
        if not up:
            targets = run_tool(["ovs-vsctl", "--timeout=10", "get-controller", sw]).split()
            run_tool(["ovs-vsctl", "--timeout=10", "del-controller", sw])
        for nbr in self.g.neighbors(sw):
            if not is_host(self.g, nbr):
                self.set_link(sw, nbr, up)
        if up:
            run_tool(["ovs-vsctl", "--timeout=10", "set-controller", sw, *targets])
            # The controller records are new: give them the run's inactivity probe again.
            uuids = run_tool(["ovs-vsctl", "--timeout=10", "--bare", "--columns=controller",
                          "list", "bridge", sw]).split()
            for uuid in uuids:
                run_tool(["ovs-vsctl", "--timeout=10", "set", "controller", uuid,
                      f"inactivity_probe={SWITCH_INACTIVITY_PROBE_MS}"])
        return targets

    def gray_link(self, u, v, on):
        """A gray failure this emulator's counters show (``on``), or healed: ``v``'s end of
        link ``u``-``v`` takes standard frames only (MTU 1,500), so every jumbo data frame
        from ``u`` is dropped there and counted, while the link stays up and small frames
        (LLDP, ACKs) pass. (A rate cut with :meth:`shape_link` drops nothing a counter
        shows: Open vSwitch's userspace datapath does not count htb's drops; the controller
        finds it from its probes waiting behind the queue, see controllers/health.py.)"""
        d = self.g.edges[u, v]
        run_tool(["ovs-vsctl", "--timeout=10", "set", "interface", _intf(v, d["ports"][v]),
              f"mtu_request={1500 if on else self.mtu}"])

    def shape_link(self, u, v, fraction):
        """Re-rate link ``u``-``v`` to ``fraction`` of its shaped rate on its switch-side
        ends (1.0 restores it): a gray failure, up but degraded."""
        d = self.g.edges[u, v]
        for intf in self.link_intfs(u, v):
            run_tool(["tc"] + htb_class(intf, link_mbps(d, self.scale) * fraction, self.mtu,
                                    verb="change").split())


def run_tool(cmd):
    """Run a command-line tool (``ip``, ``tc``, ``ovs-vsctl``, ``ovs-ofctl``...); its output,
    or EmulationError naming the command and its error."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise EmulationError(f"{' '.join(cmd)} failed: {r.stderr.strip()[:300]}")
    return r.stdout
