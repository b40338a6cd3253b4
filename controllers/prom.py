"""Prometheus metrics of the controller, served on their own port (``--fabric-metrics-port``).

:class:`FabricMetrics` owns one registry. Almost everything in it is read at scrape time by
:class:`FabricCollector` from what the controller already counts: the routing core's
counters and status (controllers/core.py), the driver's statistics rounds
(controllers/driver.py) and the app's OpenFlow counters (controllers/app.py). The few things
nobody else counts are kept here, fed by the app's handlers: packet-ins, flow messages,
connections and disconnections per switch, and two latency histograms (packet-in service
time, time to close a statistics round).

Names and labels follow Prometheus' conventions and Faucet's exporter: OpenFlow counters are
``of_*_total`` per ``dpid`` (a hex string, as Faucet's ``dp_id``), everything of the fabric
``fabric_*`` in base units (seconds, bits per second, ratios). The dashboard that reads them
is docs/grafana/aifabric.json. This module is not part of the pure routing core: it reads a
clock and serves HTTP; it decides nothing and changes nothing it reads.
"""

import collections
import functools
import time

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Packet-in service time runs from tens of microseconds (an LLDP probe) to a few hundred
# milliseconds (a flow whose placement rebuilds a large fabric's rules).
PACKET_IN_BUCKETS_S = (5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2,
                       0.1, 0.25, 0.5, 1.0)
# Closing a statistics round runs the policy's adapt and a flush: milliseconds on a k=4
# fat-tree, up to seconds on a large one.
STATS_ROUND_BUCKETS_S = (1e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5,
                         1.0, 2.5, 5.0)
# OpenFlow message classes that change a switch's tables (Faucet's "flow messages").
FLOW_MESSAGES = ("OFPFlowMod", "OFPGroupMod", "PackedFlowMod", "PackedGroupMod")
# Core counters exported as counters: (core counter, metric name without _total, help).
CORE_COUNTERS = (
    ("flows_learned", "fabric_flows_learned", "Flows learned from their first packet"),
    ("flows_expired", "fabric_flows_expired", "Learned flows forgotten after idling"),
    ("flow_placements", "fabric_flow_placements",
     "Policy decisions pinning an unpinned flow to a path"),
    ("flow_moves", "fabric_flow_moves", "Policy decisions moving a pinned flow to another path"),
    ("flows_rerouted", "fabric_flows_rerouted",
     "Pinned flows whose path broke and that the policy repaired"),
    ("intents_submitted", "fabric_intents_submitted", "Collective intents announced"),
    ("flow_mods", "fabric_flow_mods", "Flow modifications the core rendered"),
    ("group_mods", "fabric_group_mods", "Group modifications the core rendered"),
    ("route_builds", "fabric_route_builds", "Full route recomputations"),
    ("route_updates", "fabric_route_updates", "Incremental route updates"),
    ("links_learned", "fabric_links_learned", "Switch links learned by LLDP"),
    ("hosts_learned", "fabric_hosts_learned", "Hosts learned by ARP"),
    ("policy_changes", "fabric_policy_changes", "Changes of the active policy"),
)


class MetricsError(RuntimeError):
    """The metrics endpoint cannot be served as configured (one line for the user)."""


def dpid_label(dpid):
    """The label value of a switch: hex as Faucet's ``dp_id`` (``"unknown"`` for a connection
    that never said which switch it is)."""
    return "unknown" if dpid is None else "0x%x" % dpid


class FabricCollector:
    """Reads the controller's counters and status when Prometheus scrapes.

    Parameters
    ----------
    metrics : FabricMetrics
        Its ``app`` has ``core`` (a :class:`~controllers.core.RoutingCore`), ``driver`` (a
        :class:`~controllers.driver.FabricDriver`), ``counters`` (the app's own, e.g.
        ``openflow_errors``) and ``errors_by_switch`` (OpenFlow errors by decimal dpid or
        ``"?"``); its own per-switch counters are added.
    """

    def __init__(self, metrics):
        self.metrics = metrics

    def collect(self):
        app, m = self.metrics.app, self.metrics
        status = app.driver.status()
        counters = status["counters"]
        yield from self._openflow(m, app)

        for name, value, help_ in (
                ("fabric_switches", status["switches"], "Switches connected and known"),
                ("fabric_links", status["links"], "Bidirectional switch links known"),
                ("fabric_hosts", status["hosts"], "Hosts known"),
                ("fabric_rules", status["rules"], "Flow rules the switches should hold"),
                ("fabric_groups", status["groups"], "Groups the switches should hold"),
                ("fabric_unconfirmed_switches", status["unconfirmed_switches"],
                 "Switches whose last changes no barrier has confirmed yet"),
                ("fabric_learned_flows", counters["flows"], "Flows learned and not expired"),
                ("fabric_pinned_flows", counters["pinned_flows"],
                 "Learned flows pinned to a path"),
                ("fabric_elephant_flows", counters["elephants"],
                 "Learned flows detected as elephants")):
            yield GaugeMetricFamily(name, help_, value=value)
        policy = GaugeMetricFamily("fabric_policy_info", "The active routing policy",
                                   labels=["policy"])
        policy.add_metric([status["policy"]], 1)
        yield policy

        for key, name, help_ in CORE_COUNTERS:
            yield CounterMetricFamily(name, help_, value=counters.get(key, 0))
        driver = app.driver.counters
        yield CounterMetricFamily("fabric_stats_rounds", "Statistics rounds closed",
                                  value=driver["stats_rounds"])
        yield CounterMetricFamily("fabric_stats_rounds_late",
                                  "Statistics rounds closed unanswered when the next was due",
                                  value=driver["stats_rounds_late"])
        intents = GaugeMetricFamily("fabric_intents", "Collective intents announced, by state",
                                    labels=["state"])
        states = collections.Counter(i["state"] for i in app.core.intents())
        for state in ("installing", "installed"):
            intents.add_metric([state], states[state])
        yield intents
        yield from self._links(app.core.link_loads())

    @staticmethod
    def _openflow(m, app):
        families = (
            ("of_packet_ins", "OpenFlow packet-ins received", m.packet_ins),
            ("of_flowmsgs_sent", "OpenFlow flow and group modifications sent", m.flowmsgs_sent),
            ("of_dp_connections", "Switch connections (features and ports learned)",
             m.connections),
            ("of_dp_disconnections", "Switch disconnections", m.disconnections))
        for name, help_, by_dpid in families:
            family = CounterMetricFamily(name, help_, labels=["dpid"])
            for dpid, n in sorted(by_dpid.items()):
                family.add_metric([dpid_label(dpid)], n)
            yield family
        errors = CounterMetricFamily("of_errors", "OpenFlow error messages received",
                                     labels=["dpid"])
        for dpid, n in sorted(app.errors_by_switch.items()):
            errors.add_metric([dpid_label(None if dpid == "?" else int(dpid))], n)
        yield errors
        yield GaugeMetricFamily("of_dp_connected", "Switches connected now",
                                value=len(app.datapaths))

    @staticmethod
    def _links(loads):
        families = {
            "rate_bps": GaugeMetricFamily(
                "fabric_link_rate_bits_per_second",
                "Smoothed measured rate of a directed switch link", labels=["src", "dst"]),
            "utilization": GaugeMetricFamily(
                "fabric_link_utilization_ratio",
                "Measured rate over capacity of a directed switch link", labels=["src", "dst"]),
            "capacity_bps": GaugeMetricFamily(
                "fabric_link_capacity_bits_per_second",
                "Capacity of a directed switch link", labels=["src", "dst"]),
            "pinned_flows": GaugeMetricFamily(
                "fabric_link_pinned_flows", "Learned flows pinned across a directed switch link",
                labels=["src", "dst"]),
        }
        for link in loads:
            labels = [dpid_label(link["src"]), dpid_label(link["dst"])]
            for key, family in families.items():
                family.add_metric(labels, link[key])
        yield from families.values()


class FabricMetrics:
    """The controller's metrics: a registry, the app's per-switch OpenFlow counters and the
    latency histograms, and (with :meth:`serve`) an HTTP endpoint for Prometheus.

    Parameters
    ----------
    app : object
        The Ryu app (controllers.app.FabricController), or anything with its ``core``,
        ``driver``, ``counters``, ``errors_by_switch`` and ``datapaths``.

    Examples
    --------
    >>> import collections, types
    >>> from controllers.core import RoutingCore
    >>> from controllers.driver import FabricDriver
    >>> core = RoutingCore()
    >>> app = types.SimpleNamespace(core=core, driver=FabricDriver(core, 1.0, 2.0),
    ...     counters=collections.Counter(), errors_by_switch={}, datapaths={})
    >>> b"fabric_policy_info{policy=\\"ecmp\\"} 1.0" in FabricMetrics(app).exposition()
    True
    """

    def __init__(self, app):
        self.app = app
        self.packet_ins = collections.Counter()      # dpid -> packet-ins
        self.flowmsgs_sent = collections.Counter()   # dpid -> flow and group mods
        self.connections = collections.Counter()     # dpid -> connections
        self.disconnections = collections.Counter()  # dpid -> disconnections
        self.registry = CollectorRegistry(auto_describe=True)
        self.packet_in_seconds = Histogram(
            "fabric_packet_in_service_seconds",
            "Time the controller took to handle one packet-in (parse, core, queue replies)",
            buckets=PACKET_IN_BUCKETS_S, registry=self.registry)
        self.stats_round_seconds = Histogram(
            "fabric_stats_round_seconds",
            "Time to close a statistics round: its last reply handled, adapt and flush",
            buckets=STATS_ROUND_BUCKETS_S, registry=self.registry)
        self.registry.register(FabricCollector(self))
        self.server = None

    def packet_in(self, dpid, seconds):
        """A packet-in from switch ``dpid`` was served in ``seconds``."""
        self.packet_ins[dpid] += 1
        self.packet_in_seconds.observe(seconds)

    def sent(self, dpid, ofmsgs):
        """OpenFlow messages ``ofmsgs`` were queued for switch ``dpid``."""
        n = sum(1 for msg in ofmsgs if type(msg).__name__ in FLOW_MESSAGES)
        if n:
            self.flowmsgs_sent[dpid] += n

    def connected(self, dpid):
        """Switch ``dpid`` connected (its features and ports are known)."""
        self.connections[dpid] += 1

    def disconnected(self, dpid):
        """Switch ``dpid`` disconnected."""
        self.disconnections[dpid] += 1

    def exposition(self):
        """The metrics in Prometheus' text format (bytes), as ``/metrics`` answers."""
        return generate_latest(self.registry)

    def serve(self, host, port):
        """Answer Prometheus' scrapes on ``http://host:port/metrics`` from a green thread.

        Returns
        -------
        greenthread
            The server's thread, for the app to keep with its own.

        Raises
        ------
        MetricsError
            If the address cannot be bound (in use, not local, no permission).
        """
        from prometheus_client import make_wsgi_app
        from ryu.lib import hub
        try:
            self.server = hub.WSGIServer((host, port), make_wsgi_app(self.registry))
        except OSError as e:
            raise MetricsError(f"--fabric-metrics-port {port} on --fabric-metrics-host "
                               f"{host!r}: cannot listen: {e.strerror or e}") from None
        return hub.spawn(self.server.serve_forever)


def timed_packet_in(handler):
    """Count a packet-in handler's events per switch and time each (``app.metrics``)."""
    @functools.wraps(handler)
    def wrapper(app, ev):
        start = time.perf_counter()
        try:
            return handler(app, ev)
        finally:
            app.metrics.packet_in(ev.msg.datapath.id, time.perf_counter() - start)
    return wrapper


def timed_round(handler):
    """Time a statistics-reply handler when the reply it handled closed the driver's round
    (its ``stats_rounds`` counter moved): the last reply's service, adapt and flush."""
    @functools.wraps(handler)
    def wrapper(app, ev):
        rounds = app.driver.counters["stats_rounds"]
        start = time.perf_counter()
        result = handler(app, ev)
        if app.driver.counters["stats_rounds"] != rounds:
            app.metrics.stats_round_seconds.observe(time.perf_counter() - start)
        return result
    return wrapper


def counted_flowmsgs(to_openflow):
    """Count the flow and group modifications a serializer returns, per switch (when the app
    has its metrics: the serializer is also used alone, to encode a message)."""
    @functools.wraps(to_openflow)
    def wrapper(app, dp, msg):
        ofmsgs = to_openflow(app, dp, msg)
        metrics = getattr(app, "metrics", None)
        if metrics is not None:
            metrics.sent(dp.id, ofmsgs)
        return ofmsgs
    return wrapper
