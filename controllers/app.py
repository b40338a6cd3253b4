"""The Ryu application: a thin adapter between OpenFlow 1.3 events and the routing core.

Each handler parses one event (LLDP, ARP, the 5-tuple of a new flow, port and statistics
replies), makes one call of :class:`controllers.driver.FabricDriver` with ``now`` passed in,
and sends the messages it gets back, serialized here to OpenFlow (:meth:`to_openflow`; flow
and group mods are packed by controllers/ofencode.py, the rest by Ryu's parser). The
driver keeps barriers, held ARP answers, statistics rounds and timers, the routing core
(controllers/core.py) decides paths; this module decides neither. One green thread calls
:meth:`FabricDriver.tick` and sleeps until its next deadline (at most ``TICK_S``, so changes
an event leaves pending go out promptly); the REST API (controllers/rest.py) is served on
Ryu's WSGI server (127.0.0.1 by default, see controllers/launcher.py).

Messages leave through one ordered outbox: Ryu's send queue per switch holds 16 messages, so
sending yields to other handlers, and two batches of the core must never interleave on a
switch (a rule could arrive after the deletion of the group it points to).

Start it with ``python -m controllers.launcher`` (never plain ryu-manager on Python 3.11).
Options: see controllers/options.py (``--fabric-policy``, ``--fabric-stats-interval``,
``--fabric-fast-failover``, ``--fabric-topology`` + ``--fabric-scale`` for link capacities
and the hosts to expect, ``--fabric-policy-options``, ``--fabric-lldp-interval``,
``--fabric-lldp-secret``, ``--fabric-rest-token`` or ``--fabric-rest-token-file``,
``--fabric-metrics-port`` and ``--fabric-metrics-host`` for Prometheus, controllers/prom.py).

A switch that connects is not wiped: its flows and groups are read back (flow and
group-desc multipart requests, converted here by :func:`held_rule` and :func:`held_group`)
and the driver reconciles it; each rule or group change's xid is handed to the driver as it
is sent, so an OpenFlow error names the change it refused.

Discovery is authenticated: each probe carries the core's HMAC of its switch, port and
time, and the core learns a link only from a fresh probe of its own arriving at a switch
port (``RoutingCore.probe_in``). Packet-ins are parsed layer by layer (:func:`parse_frame`),
never through Ryu's whole packet stack.
"""

import collections
import functools
import json
import logging
import secrets
import struct
import time

from ryu import cfg
from ryu.app.wsgi import WSGIApplication
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                    set_ev_cls)
from ryu.lib import hub
from ryu.lib.packet import arp as arp_pkt
from ryu.lib.packet import ethernet, ipv4, lldp, packet
from ryu.ofproto import ofproto_v1_3
from ryu.ofproto.ofproto_parser import MsgBase

from controllers import ofencode, ofguard, prom, rules, view
from controllers import options  # noqa: F401 - the --fabric-* options
from controllers.core import PolicyError, RoutingCore, expected_fabric, link_capacities
from controllers.driver import TICK_S, FabricDriver
from controllers.health import PortCounters
from controllers.rest import REST_INSTANCE, FabricRest

CONF = cfg.CONF

LOG = logging.getLogger("fabric.controller")
ALL_ONES = 0xFFFFFFFFFFFFFFFF
DEFAULT_CAPACITY_BPS = 1e9


def guarded(handler):
    """One bad event must not kill the controller: log it and carry on."""
    @functools.wraps(handler)
    def wrapper(self, ev):
        try:
            handler(self, ev)
        except Exception:  # noqa: BLE001 - the event loop must survive any handler bug
            LOG.exception("handler %s failed", handler.__name__)
    return wrapper


def _chassis(dpid):
    return ("dpid:%016x" % dpid).encode()


def build_lldp(probe):
    """The frame of a probe: our chassis and port ids, and in the system description when
    it was sent and the core's HMAC of it (``sent=<float> auth=<hex>``)."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=lldp.LLDP_MAC_NEAREST_BRIDGE,
                                       src=rules.LLDP_SRC_MAC, ethertype=rules.ETH_TYPE_LLDP))
    desc = [] if probe.sent_at is None else [f"sent={probe.sent_at!r}"]
    desc += [] if probe.auth is None else [f"auth={probe.auth}"]
    pkt.add_protocol(lldp.lldp([
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
                       chassis_id=_chassis(probe.dpid)),
        lldp.PortID(subtype=lldp.PortID.SUB_PORT_COMPONENT, port_id=str(probe.port).encode()),
        lldp.TTL(ttl=120),
        *([lldp.SystemDescription(system_description=" ".join(desc).encode())] if desc else []),
        lldp.End(),
    ]))
    pkt.serialize()
    return pkt.data


def parse_lldp(lldp_frame):
    """The :class:`~controllers.rules.LldpProbe` an LLDP frame says it is (switch, port,
    when sent, HMAC; None where it says nothing), or None if it does not claim to be one of
    ours. Whether it is ours, the core decides (``RoutingCore.probe_in``)."""
    tlvs = lldp_frame.tlvs
    chassis = bytes(getattr(tlvs[0], "chassis_id", b"")) if tlvs else b""
    if not chassis.startswith(b"dpid:") or len(tlvs) < 2:
        return None
    fields = {}
    for tlv in tlvs[3:]:
        for word in bytes(getattr(tlv, "system_description", b"")).split():
            key, _, value = word.partition(b"=")
            fields[key] = value
    try:
        sent_at = float(fields[b"sent"]) if b"sent" in fields else None
        auth = fields[b"auth"].decode("ascii") if b"auth" in fields else None
        return rules.LldpProbe(int(chassis[5:], 16), int(tlvs[1].port_id), sent_at, auth)
    except (ValueError, AttributeError):
        return None


def parse_frame(data):
    """``(eth, lldp, arp, five_tuple)`` of a packet-in's frame, each None where absent.

    Only the layers the core reads are parsed, each with its own Ryu parser: Ryu's whole
    stack (``packet.Packet``) also parses TCP options and application protocols, and loops
    forever on a TCP option of length zero, which any host can send. L4 ports are read from
    the first four bytes after the IPv4 header. Raises ValueError on a frame too short for
    a header it announces.
    """
    try:
        eth, _, rest = ethernet.ethernet.parser(data)
        if eth.ethertype == rules.ETH_TYPE_LLDP:
            frame = lldp.lldp.parser(rest)[0]
            return eth, frame, None, None
        if eth.ethertype == rules.ETH_TYPE_ARP:
            return eth, None, arp_pkt.arp.parser(rest)[0], None
        if eth.ethertype != rules.ETH_TYPE_IPV4:
            return eth, None, None, None
        ip, _, rest = ipv4.ipv4.parser(rest)
    except (struct.error, AssertionError, IndexError, ValueError) as e:
        raise ValueError(f"unparseable frame: {e}") from None
    sport = dport = 0
    if ip.proto in (rules.IP_PROTO_TCP, rules.IP_PROTO_UDP) and len(rest) >= 4:
        sport, dport = struct.unpack_from("!HH", rest)
    return eth, None, None, (ip.src, ip.dst, ip.proto, sport, dport)


def build_arp(a):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=a.eth_dst or a.dst_mac, src=a.eth_src or a.src_mac,
                                       ethertype=rules.ETH_TYPE_ARP))
    pkt.add_protocol(arp_pkt.arp(opcode=a.op, src_mac=a.src_mac, src_ip=a.src_ip,
                                 dst_mac=a.dst_mac, dst_ip=a.dst_ip))
    pkt.serialize()
    return pkt.data


def load_model():
    """``(link_capacity_bps, default_capacity_bps, expected, names, model_view)`` from
    --fabric-topology and --fabric-scale (``expected``: what discovery will find, see
    :func:`controllers.core.expected_fabric`; ``names`` maps a switch's dpid to its node name
    in the model; ``model_view``: names, roles and layers for the live view,
    :func:`controllers.view.model_view`).

    Without a model every port counts as 1 Gbit/s (utilization is then only indicative) and
    hosts are known only once they send ARP or traffic.
    """
    if not CONF.fabric_topology:
        return {}, DEFAULT_CAPACITY_BPS, None, {}, view.ModelView({}, {})
    from fabric.model import load_json
    g = load_json(CONF.fabric_topology)
    caps = link_capacities(g, CONF.fabric_scale)
    names = {d["dpid"]: n for n, d in g.nodes(data=True) if d["role"] != "host"}
    return caps, max(caps.values()), expected_fabric(g), names, view.model_view(g)


def rest_token():
    """The bearer token of --fabric-rest-token or --fabric-rest-token-file (its first line),
    or None: then REST answers without one (it binds to 127.0.0.1 by default)."""
    if CONF.fabric_rest_token and CONF.fabric_rest_token_file:
        raise PolicyError("give --fabric-rest-token or --fabric-rest-token-file, not both")
    token = CONF.fabric_rest_token
    if CONF.fabric_rest_token_file:
        try:
            with open(CONF.fabric_rest_token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"--fabric-rest-token-file {CONF.fabric_rest_token_file}: "
                              f"cannot read it: {e}") from None
        if not token:
            raise PolicyError(f"--fabric-rest-token-file {CONF.fabric_rest_token_file}: "
                              "its first line is empty")
    return token or None


class Unparsed(collections.namedtuple("Unparsed", "text")):
    """An action or instruction read back from a switch that none of ours is: a rule or group
    holding one differs from every rule or group the core wants, so it is replaced."""
    __slots__ = ()


def held_action(action, ofp):
    """The plain action (controllers/rules.py) an OpenFlow action read back from a switch
    is, or :class:`Unparsed`."""
    name = type(action).__name__
    if name == "OFPActionOutput":
        if action.port == ofp.OFPP_CONTROLLER:
            return rules.ToController(action.max_len)
        return rules.Output(action.port)
    if name == "OFPActionGroup":
        return rules.ToGroup(action.group_id)
    return Unparsed(str(action))


def held_rule(stat, ofp):
    """The :class:`~controllers.rules.FlowRule` a flow-stats entry describes (match fields as
    the core writes them, sorted by name; apply-actions as plain actions)."""
    actions = []
    for inst in stat.instructions:
        if inst.type == ofp.OFPIT_APPLY_ACTIONS and hasattr(inst, "actions"):
            actions.extend(held_action(a, ofp) for a in inst.actions)
        elif inst.type == ofp.OFPIT_METER:   # kept first among the actions, as ours are
            actions.append(rules.Meter(inst.meter_id))
        else:
            actions.append(Unparsed(str(inst)))
    fields = tuple(sorted(stat.match.items()))
    return rules.FlowRule(stat.priority, fields, tuple(actions), stat.table_id, stat.cookie)


def held_meter(dpid, config):
    """The :class:`~controllers.rules.MeterMod` that would make a meter-config entry: one drop
    band, rate and burst in packets (a meter of another shape reads as rate 0: never ours)."""
    bands = config.bands
    one = len(bands) == 1 and type(bands[0]).__name__ == "OFPMeterBandDrop"
    return rules.MeterMod(dpid, config.meter_id, bands[0].rate if one else 0,
                          bands[0].burst_size if one else 0)


GROUP_TYPES = {"select": "OFPGT_SELECT", "fast_failover": "OFPGT_FF", "all": "OFPGT_ALL",
               "indirect": "OFPGT_INDIRECT"}


def held_group(desc, ofp):
    """The :class:`~controllers.rules.Group` a group-desc entry describes, its buckets as
    :meth:`FabricController.to_openflow` writes them read back (weight only in SELECT groups,
    no watch port as None)."""
    kind = next((k for k, c in GROUP_TYPES.items() if getattr(ofp, c) == desc.type),
                f"type {desc.type}")
    buckets = tuple(
        rules.Bucket(tuple(held_action(a, ofp) for a in b.actions),
                     weight=b.weight if kind == "select" else 1,
                     watch_port=None if b.watch_port == ofp.OFPP_ANY else b.watch_port)
        for b in desc.buckets)
    return rules.Group(desc.group_id, kind, buckets)


def json_options(flag, text):
    """The JSON object of option ``flag`` (empty if not given), for the core to check."""
    if not text:
        return {}
    try:
        opts = json.loads(text)
    except ValueError as e:
        raise PolicyError(f"{flag} is not JSON: {e}") from None
    if not isinstance(opts, dict):
        raise PolicyError(f"{flag} must be a JSON object")
    return opts


def policy_options():
    """The thresholds of --fabric-policy-options (a JSON object), for the core to check."""
    return json_options("--fabric-policy-options", CONF.fabric_policy_options)


# Requests the driver numbers itself: plain message type -> its OpenFlow message (the xid is
# set from the plain message).
REQUESTS = {
    rules.Barrier: lambda dp, parser, ofp, msg: parser.OFPBarrierRequest(dp),
    rules.PortStatsRequest:
        lambda dp, parser, ofp, msg: parser.OFPPortStatsRequest(dp, 0, ofp.OFPP_ANY),
    rules.FlowDumpRequest: lambda dp, parser, ofp, msg: parser.OFPFlowStatsRequest(
        dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()),
    rules.GroupDumpRequest: lambda dp, parser, ofp, msg: parser.OFPGroupDescStatsRequest(dp, 0),
    rules.MeterDumpRequest:
        lambda dp, parser, ofp, msg: parser.OFPMeterConfigStatsRequest(dp, 0, ofp.OFPM_ALL),
    rules.FlowStatsRequest: lambda dp, parser, ofp, msg: parser.OFPFlowStatsRequest(
        dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, msg.cookie, ALL_ONES,
        parser.OFPMatch()),
}

# Changes whose transaction id is remembered (controllers/driver.py ``sent``).
TRACKED = (rules.FlowMod, rules.GroupMod, rules.MeterMod)


class Outbox:
    """What is to be written to one switch connection, in order, by its own green thread.

    ``dp.send_msg`` blocks while the connection's send queue is full; each connection has
    its own writer so a switch that stops reading, or whose connection died without Ryu
    draining its queue, delays only itself. :meth:`close` ends the writer wherever it waits.
    ``sent(dpid, xid, msg)`` is told the transaction id each table or meter change went out
    with (the connection assigns it on send), so an error naming it names the change.
    """

    def __init__(self, dp, sent):
        self.dp = dp
        self.sent = sent
        self.queue = collections.deque()   # (OpenFlow message, the plain message it is)
        self._wake = hub.Event()
        self._thread = hub.spawn(self._run)

    def __bool__(self):
        return bool(self.queue)

    def put(self, ofmsgs):
        self.queue.extend(ofmsgs)
        if self.queue:
            self._wake.set()

    def _run(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            while self.queue:
                ofmsg, msg = self.queue.popleft()
                try:
                    self.dp.send_msg(ofmsg)   # gives it the connection's next xid
                except Exception:  # noqa: BLE001 - a dying switch: its writer carries on
                    LOG.exception("sending to %016x failed", self.dp.id or 0)
                    continue
                if isinstance(msg, TRACKED):
                    self.sent(self.dp.id, ofmsg.xid, msg)

    def close(self):
        self.queue.clear()
        hub.kill(self._thread)


class _Packed(MsgBase):
    """A message packed by controllers/ofencode.py: Ryu's connection gives it its xid and
    sends its bytes (``send_msg`` takes only message objects)."""

    def __init__(self, dp, packed):
        super().__init__(dp)
        self.packed = packed

    def serialize(self):
        self.buf = ofencode.with_xid(self.packed, self.xid)


class PackedFlowMod(_Packed):
    """A FLOW_MOD of the core's (add or strict delete), packed without Ryu's OFPMatch."""


class PackedGroupMod(_Packed):
    """A GROUP_MOD of the core's, packed without Ryu's serializer."""


class FabricController(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        caps, default_bps, expected, self.names, self.model_view = load_model()
        self.rest_token = rest_token()
        # Probes carry an HMAC under this key: random unless controllers must share one.
        secret = CONF.fabric_lldp_secret.encode() or secrets.token_bytes(32)
        self.core = RoutingCore(policy=CONF.fabric_policy, fast_failover=CONF.fabric_fast_failover,
                                link_capacity_bps=caps, default_capacity_bps=default_bps,
                                lldp_secret=secret, expected=expected,
                                health=json_options("--fabric-health-options",
                                                    CONF.fabric_health_options),
                                meters=json_options("--fabric-meter-options",
                                                    CONF.fabric_meter_options),
                                **policy_options())
        if not CONF.fabric_stats_interval > 0:
            raise PolicyError(f"--fabric-stats-interval must be > 0, "
                              f"got {CONF.fabric_stats_interval}")
        self.datapaths = {}
        self.driver = FabricDriver(self.core, stats_interval_s=CONF.fabric_stats_interval,
                                   lldp_interval_s=CONF.fabric_lldp_interval,
                                   new_xid=self._new_xid)
        self.counters = collections.Counter()   # the adapter's own: packet-ins, errors, ...
        # OpenFlow errors per switch that sent them (bounded: at most one entry per dpid seen
        # plus "?" for connections that never said who they are).
        self.errors_by_switch = collections.Counter()
        self.waiters = {}       # dpid -> {xid: (event, replies)}: REST stats requests
        # One outbox and one sending green thread per switch connection: Ryu's send blocks
        # while that connection's queue is full, and a connection that dies in a bad state
        # (a hostile switch) can leave it full for good; it must stall only itself.
        self._outboxes = {}     # Datapath -> Outbox
        self.metrics = prom.FabricMetrics(self)
        if CONF.fabric_metrics_port:  # bound first: a port in use stops the app before it runs
            self.threads.append(self.metrics.serve(CONF.fabric_metrics_host,
                                                   CONF.fabric_metrics_port))
        kwargs["wsgi"].register(FabricRest, {REST_INSTANCE: self})
        self.threads += [hub.spawn(self._timer)]

    # -- sending ---------------------------------------------------------------------------
    def _new_xid(self, dpid):
        # The connection's own counter, which ofctl's requests (the REST statistics) draw from
        # too: a reply is never mistaken for the answer to another request.
        dp = self.datapaths[dpid]
        dp.xid = (dp.xid + 1) & dp.ofproto.MAX_XID
        return dp.xid

    def send(self, msgs):
        """Queue the driver's messages in order, serialized for the switch each names (a
        message for a switch no longer connected is dropped)."""
        for msg in msgs:
            dp = self.datapaths.get(msg.dpid)
            if dp is None:
                continue
            box = self._outboxes.get(dp)
            if box is None:
                box = self._outboxes[dp] = Outbox(dp, self.driver.sent)
            box.put((ofmsg, msg) for ofmsg in self.to_openflow(dp, msg))

    def _close_outbox(self, dp):
        """Stop the sender of a connection that is gone, wherever it is blocked."""
        box = self._outboxes.pop(dp, None)
        if box is not None:
            box.close()

    def status(self):
        status = self.driver.status()
        status["openflow_errors"] = self.counters["openflow_errors"]
        status["openflow_errors_by_switch"] = dict(self.errors_by_switch)
        status["openflow_guard"] = ofguard.GUARD.status()
        status["packet_ins_unparsed"] = self.counters["packet_ins_unparsed"]
        status["pending"] = status["pending"] or any(self._outboxes.values())
        status["now_s"] = time.monotonic()
        # The links kept out of routes by their switches' names in the model (dpids without
        # one), as a run names them.
        status["degraded_links"] = [[self.names.get(end[0], end[0]) for end in x["link"]]
                                    for x in status["health"]["excluded"]]
        return status

    @prom.counted_flowmsgs
    def to_openflow(self, dp, msg):
        parser, ofp = dp.ofproto_parser, dp.ofproto
        if isinstance(msg, rules.FlowMod):
            return [PackedFlowMod(dp, ofencode.flow_mod(msg))]
        if isinstance(msg, rules.GroupMod):
            return [PackedGroupMod(dp, ofencode.group_mod(msg))]
        if isinstance(msg, rules.ClearSwitch):
            return [parser.OFPFlowMod(dp, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                      match=parser.OFPMatch()),
                    parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, 0, ofp.OFPG_ALL, []),
                    parser.OFPMeterMod(dp, ofp.OFPMC_DELETE, 0, ofp.OFPM_ALL, [])]
        if isinstance(msg, rules.MeterMod):
            band = parser.OFPMeterBandDrop(rate=msg.rate_pps, burst_size=msg.burst_packets)
            command = ofp.OFPMC_MODIFY if msg.command == "modify" else ofp.OFPMC_ADD
            return [parser.OFPMeterMod(dp, command, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST,
                                       msg.meter_id, [band])]
        if isinstance(msg, rules.PacketOut):
            if isinstance(msg.packet, rules.LldpProbe):
                data = build_lldp(msg.packet)
            elif isinstance(msg.packet, rules.ArpPacket):
                data = build_arp(msg.packet)
            else:
                data = msg.packet
            actions = [parser.OFPActionOutput(p) for p in msg.ports]
            # From the controller's port: resent through the table (PORT_TABLE), a packet must
            # not match the host-port rules that sent it here.
            return [parser.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER,
                                        in_port=ofp.OFPP_CONTROLLER, actions=actions,
                                        data=data)]
        make = REQUESTS.get(type(msg))
        if make is None:
            raise TypeError(f"unknown message {msg!r}")
        req = make(dp, parser, ofp, msg)
        req.set_xid(msg.xid)   # the driver's, so the reply is matched to the request
        return [req]


    # -- time ------------------------------------------------------------------------------
    def _timer(self):
        """The one green thread that runs the driver's periodic duties. It sleeps until the
        driver's next deadline but never longer than TICK_S: a packet-in may leave routes
        pending that the next tick flushes."""
        while True:
            now = time.monotonic()
            deadline = now + TICK_S
            try:
                msgs, next_deadline_s = self.driver.tick(now)
                self.send(msgs)
                deadline = min(deadline, next_deadline_s)
            except Exception:  # noqa: BLE001 - keep routing whatever one round did
                LOG.exception("timer round failed")
            hub.sleep(max(deadline - time.monotonic(), 0.0))

    # -- OpenFlow events -------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @guarded
    def switch_features(self, ev):
        dp = ev.msg.datapath
        dp.send_msg(dp.ofproto_parser.OFPPortDescStatsRequest(dp, 0))

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @guarded
    def port_desc(self, ev):
        dp = ev.msg.datapath
        ofp = dp.ofproto
        ports = [p.port_no for p in ev.msg.body
                 if p.port_no < ofp.OFPP_MAX and not p.state & ofp.OFPPS_LINK_DOWN]
        self.datapaths[dp.id] = dp
        self.metrics.connected(dp.id)
        LOG.info("switch %016x up with %d ports", dp.id, len(ports))
        self.send(self.driver.switch_enter(dp.id, ports, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    @guarded
    def switch_gone(self, ev):
        dp = ev.datapath
        self._close_outbox(dp)
        if dp.id is not None and self.datapaths.get(dp.id) is dp:
            del self.datapaths[dp.id]
            self.waiters.pop(dp.id, None)
            self.metrics.disconnected(dp.id)
            LOG.info("switch %016x down", dp.id)
            self.send(self.driver.switch_gone(dp.id, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def error(self, ev):
        msg = ev.msg
        self.counters["openflow_errors"] += 1
        dpid = msg.datapath.id
        self.errors_by_switch[str(dpid) if dpid is not None else "?"] += 1
        # Any field may be missing: an error can come before the features reply, or broken.
        LOG.error("switch %s rejected a message: type %s code %s (%s)",
                  "%016x" % msg.datapath.id if msg.datapath.id is not None else "?",
                  msg.type, msg.code, bytes(msg.data or b"")[:64].hex())
        if dpid is not None and self.datapaths.get(dpid) is msg.datapath:
            self.send(self.driver.openflow_error(dpid, msg.xid, msg.type, msg.code,
                                                 time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @guarded
    def barrier_reply(self, ev):
        self.send(self.driver.barrier_reply(ev.msg.datapath.id, ev.msg.xid, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @guarded
    def port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        p = msg.desc
        if p.port_no >= ofp.OFPP_MAX:
            return
        up = (msg.reason != ofp.OFPPR_DELETE and not p.state & ofp.OFPPS_LINK_DOWN
              and not p.config & ofp.OFPPC_PORT_DOWN)
        self.send(self.driver.port_status(msg.datapath.id, p.port_no, up, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    @prom.timed_packet_in
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        in_port = msg.match["in_port"]
        now = time.monotonic()
        self.counters["packet_ins"] += 1
        try:
            eth, frame, a, five_tuple = parse_frame(msg.data)
        except ValueError:
            self.counters["packet_ins_unparsed"] += 1
            return
        if frame is not None:
            probe = parse_lldp(frame)
            if probe is not None:   # claims to be ours: the core checks it
                self.send(self.driver.probe_in(dp.id, in_port, probe, eth.src, now))
            return
        if a is not None:
            fields = rules.ArpPacket(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip,
                                     eth_src=eth.src, eth_dst=eth.dst)
            self.send(self.driver.packet_in_arp(dp.id, in_port, fields, msg.data, now))
            return
        if five_tuple is not None:
            self.counters["flow_packet_ins"] += 1
            self.send(self.driver.packet_in_flow(dp.id, in_port, five_tuple, eth.src, eth.dst,
                                                 msg.data, now))

    @set_ev_cls([ofp_event.EventOFPPortStatsReply, ofp_event.EventOFPFlowStatsReply],
                MAIN_DISPATCHER)
    @guarded
    @prom.timed_round
    def stats_reply(self, ev):
        msg = ev.msg
        dp = msg.datapath
        more = bool(msg.flags & dp.ofproto.OFPMPF_REPLY_MORE)
        waiter = self.waiters.get(dp.id, {}).get(msg.xid)
        if waiter is not None:  # a REST request, answered as ofctl_rest does
            waiter[1].append(msg)
            if not more:
                del self.waiters[dp.id][msg.xid]
                waiter[0].set()
            return
        if self.driver.reading(dp.id, msg.xid):   # the switch's rules, read back
            flows = [held_rule(s, dp.ofproto) for s in msg.body]
            self.send(self.driver.state_reply(dp.id, msg.xid, time.monotonic(), flows=flows,
                                              more=more))
            return
        if isinstance(msg, dp.ofproto_parser.OFPPortStatsReply):
            rows = [(s.port_no, PortCounters(s.tx_bytes, s.rx_bytes, s.tx_packets, s.rx_packets,
                                             s.tx_dropped, s.rx_dropped, s.tx_errors,
                                             s.rx_errors))
                    for s in msg.body if s.port_no < dp.ofproto.OFPP_MAX]
        else:
            rows = [(s.match, s.byte_count) for s in msg.body]
        self.send(self.driver.stats_reply(dp.id, msg.xid, rows, time.monotonic(), more=more))

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    @guarded
    def group_desc(self, ev):
        msg = ev.msg
        dp = msg.datapath
        more = bool(msg.flags & dp.ofproto.OFPMPF_REPLY_MORE)
        groups = [held_group(d, dp.ofproto) for d in msg.body]
        self.send(self.driver.state_reply(dp.id, msg.xid, time.monotonic(), groups=groups,
                                          more=more))

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @guarded
    def meter_config(self, ev):
        msg = ev.msg
        dp = msg.datapath
        more = bool(msg.flags & dp.ofproto.OFPMPF_REPLY_MORE)
        self.send(self.driver.state_reply(dp.id, msg.xid, time.monotonic(),
                                          meters=[held_meter(dp.id, c) for c in msg.body],
                                          more=more))

    # -- what the REST API asks ------------------------------------------------------------
    def apply(self, call, *args):
        """Run a core call that changes state, then send what it and a flush return."""
        self.send(self.driver.apply(call, *args, now=time.monotonic()))

    def stats(self, dpid, getter, *args):
        """Ask a switch for statistics the ofctl_rest way (waits up to ofctl's timeout)."""
        return getter(self.datapaths[dpid], self.waiters, *args)
