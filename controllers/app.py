"""The Ryu application: a thin adapter between OpenFlow 1.3 events and the routing core.

Each handler turns one event into one call of :class:`controllers.core.RoutingCore` with
``now`` passed in, and sends the messages it gets back; this module decides nothing about
paths. It parses and builds packets (LLDP, ARP) and OpenFlow messages, runs one timer loop
(flush route changes, send LLDP probes, expire links) and serves a small REST API on Ryu's
WSGI server (127.0.0.1 by default, see controllers/launcher.py).

Start it with ``python -m controllers.launcher`` (never plain ryu-manager on Python 3.11).
Options (ryu config file ``[DEFAULT]`` section or command line):
``--fabric-policy`` (ecmp, shortest), ``--fabric-lldp-interval`` seconds.
"""

import functools
import json
import logging
import time

from ryu import cfg
from ryu.app.wsgi import ControllerBase, Response, WSGIApplication, route
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER,
                                    set_ev_cls)
from ryu.lib import hub
from ryu.lib.packet import arp as arp_pkt
from ryu.lib.packet import ethernet, lldp, packet
from ryu.ofproto import ofproto_v1_3

from controllers import options  # noqa: F401 - the --fabric-* options
from controllers import rules
from controllers.core import RoutingCore

CONF = cfg.CONF

LOG = logging.getLogger("fabric.controller")
TICK_S = 0.05
REST_INSTANCE = "fabric_app"


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
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=lldp.LLDP_MAC_NEAREST_BRIDGE,
                                       src="02:ff:00:00:00:01", ethertype=rules.ETH_TYPE_LLDP))
    pkt.add_protocol(lldp.lldp([
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED, chassis_id=_chassis(probe.dpid)),
        lldp.PortID(subtype=lldp.PortID.SUB_PORT_COMPONENT, port_id=str(probe.port).encode()),
        lldp.TTL(ttl=120),
        lldp.End(),
    ]))
    pkt.serialize()
    return pkt.data


def parse_lldp(lldp_frame):
    """(dpid, port) a probe was sent from, or None if it is not one of ours."""
    tlvs = lldp_frame.tlvs
    chassis = tlvs[0].chassis_id if tlvs else b""
    if not chassis.startswith(b"dpid:"):
        return None
    return int(chassis[5:], 16), int(tlvs[1].port_id)


def build_arp(a):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=a.eth_dst or a.dst_mac, src=a.eth_src or a.src_mac,
                                       ethertype=rules.ETH_TYPE_ARP))
    pkt.add_protocol(arp_pkt.arp(opcode=a.op, src_mac=a.src_mac, src_ip=a.src_ip,
                                 dst_mac=a.dst_mac, dst_ip=a.dst_ip))
    pkt.serialize()
    return pkt.data


class FabricController(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.core = RoutingCore(policy=CONF.fabric_policy)
        self.datapaths = {}
        self.unconfirmed = {}   # dpid -> xid of the barrier that confirms its last changes
        self.errors = 0         # OpenFlow errors switches sent back
        self.lldp_interval = CONF.fabric_lldp_interval
        kwargs["wsgi"].register(FabricRest, {REST_INSTANCE: self})
        self.threads.append(hub.spawn(self._timer))

    # -- sending ---------------------------------------------------------------------------
    def send(self, msgs):
        """Send core messages; each switch that got a rule change also gets a barrier, so
        ``status`` can say when changes are in force, not only sent."""
        changed = set()
        for msg in msgs:
            dp = self.datapaths.get(msg.dpid)
            if dp is None:
                continue
            for ofmsg in self.to_openflow(dp, msg):
                dp.send_msg(ofmsg)
            if not isinstance(msg, rules.PacketOut):
                changed.add(msg.dpid)
        for dpid in changed:
            dp = self.datapaths[dpid]
            barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
            dp.set_xid(barrier)
            self.unconfirmed[dpid] = barrier.xid
            dp.send_msg(barrier)

    def status(self):
        status = self.core.status()
        status["unconfirmed_switches"] = len(self.unconfirmed)
        status["openflow_errors"] = self.errors
        status["pending"] = status["pending"] or bool(self.unconfirmed)
        return status

    @staticmethod
    def _actions(dp, actions):
        parser, ofp = dp.ofproto_parser, dp.ofproto
        out = []
        for a in actions:
            if isinstance(a, rules.Output):
                out.append(parser.OFPActionOutput(a.port))
            elif isinstance(a, rules.ToGroup):
                out.append(parser.OFPActionGroup(a.group_id))
            elif isinstance(a, rules.ToController):
                out.append(parser.OFPActionOutput(ofp.OFPP_CONTROLLER, a.max_len))
            else:
                raise TypeError(f"unknown action {a!r}")
        return out

    def to_openflow(self, dp, msg):
        parser, ofp = dp.ofproto_parser, dp.ofproto
        if isinstance(msg, rules.FlowMod):
            r = msg.rule
            if msg.command == "add":
                inst = [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                     self._actions(dp, r.actions))]
                return [parser.OFPFlowMod(dp, cookie=r.cookie, table_id=r.table_id,
                                          command=ofp.OFPFC_ADD, priority=r.priority,
                                          match=parser.OFPMatch(**r.match_dict()),
                                          instructions=inst)]
            return [parser.OFPFlowMod(dp, cookie=r.cookie, cookie_mask=0xFFFFFFFFFFFFFFFF,
                                      table_id=r.table_id, command=ofp.OFPFC_DELETE_STRICT,
                                      priority=r.priority, out_port=ofp.OFPP_ANY,
                                      out_group=ofp.OFPG_ANY,
                                      match=parser.OFPMatch(**r.match_dict()))]
        if isinstance(msg, rules.GroupMod):
            g = msg.group
            gtype = {"select": ofp.OFPGT_SELECT, "fast_failover": ofp.OFPGT_FF,
                     "all": ofp.OFPGT_ALL, "indirect": ofp.OFPGT_INDIRECT}[g.type]
            command = {"add": ofp.OFPGC_ADD, "modify": ofp.OFPGC_MODIFY,
                       "delete": ofp.OFPGC_DELETE}[msg.command]
            buckets = [parser.OFPBucket(weight=b.weight if g.type == "select" else 0,
                                        watch_port=ofp.OFPP_ANY if b.watch_port is None
                                        else b.watch_port,
                                        watch_group=ofp.OFPG_ANY,
                                        actions=self._actions(dp, b.actions))
                       for b in g.buckets]
            return [parser.OFPGroupMod(dp, command, gtype, g.group_id, buckets)]
        if isinstance(msg, rules.ClearSwitch):
            return [parser.OFPFlowMod(dp, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                                      out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                                      match=parser.OFPMatch()),
                    parser.OFPGroupMod(dp, ofp.OFPGC_DELETE, 0, ofp.OFPG_ALL, [])]
        if isinstance(msg, rules.PacketOut):
            if isinstance(msg.packet, rules.LldpProbe):
                data = build_lldp(msg.packet)
            elif isinstance(msg.packet, rules.ArpPacket):
                data = build_arp(msg.packet)
            else:
                data = msg.packet
            actions = [parser.OFPActionOutput(p) for p in msg.ports]
            return [parser.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER,
                                        in_port=ofp.OFPP_CONTROLLER, actions=actions,
                                        data=data)]
        raise TypeError(f"unknown message {msg!r}")

    # -- timer -----------------------------------------------------------------------------
    def _timer(self):
        next_lldp = 0.0
        while True:
            try:
                now = time.monotonic()
                if now >= next_lldp:
                    next_lldp = now + self.lldp_interval
                    self.send(self.core.expire_links(now))
                    self.send(self.core.lldp_probes(now))
                self.send(self.core.flush(now))
            except Exception:  # noqa: BLE001 - keep routing whatever one round did
                LOG.exception("timer round failed")
            hub.sleep(TICK_S)

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
        LOG.info("switch %016x up with %d ports", dp.id, len(ports))
        self.send(self.core.switch_enter(dp.id, ports, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPStateChange, DEAD_DISPATCHER)
    @guarded
    def switch_gone(self, ev):
        dp = ev.datapath
        if dp.id is not None and self.datapaths.get(dp.id) is dp:
            del self.datapaths[dp.id]
            self.unconfirmed.pop(dp.id, None)
            LOG.info("switch %016x down", dp.id)
            self.send(self.core.switch_leave(dp.id, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def error(self, ev):
        msg = ev.msg
        self.errors += 1
        LOG.error("switch %016x rejected a message: type %d code %d (%s)", msg.datapath.id,
                  msg.type, msg.code, bytes(msg.data[:64]).hex())

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @guarded
    def barrier_reply(self, ev):
        dpid = ev.msg.datapath.id
        if self.unconfirmed.get(dpid) == ev.msg.xid:
            del self.unconfirmed[dpid]

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
        self.send(self.core.port_status(msg.datapath.id, p.port_no, up, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        in_port = msg.match["in_port"]
        pkt = packet.Packet(msg.data)
        now = time.monotonic()
        probe = pkt.get_protocol(lldp.lldp)
        if probe is not None:
            src = parse_lldp(probe)
            if src is not None:
                self.send(self.core.link_seen(src[0], src[1], dp.id, in_port, now))
            return
        a = pkt.get_protocol(arp_pkt.arp)
        if a is not None:
            eth = pkt.get_protocol(ethernet.ethernet)
            fields = rules.ArpPacket(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip,
                                     eth_src=eth.src, eth_dst=eth.dst)
            answer = self.core.packet_in_arp(dp.id, in_port, fields, msg.data, now)
            # Routes to a host just learned go out before the ARP answer, so the first packet
            # the asker sends finds them installed.
            self.send(self.core.flush(now))
            self.send(answer)


def _json(obj, status=200):
    return Response(status=status, content_type="application/json",
                    body=json.dumps(obj, sort_keys=True).encode())


class FabricRest(ControllerBase):
    """REST view of the controller; read-only for now."""

    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.app = data[REST_INSTANCE]

    @route("fabric", "/fabric/status", methods=["GET"])
    def status(self, req, **_):
        return _json(self.app.status())

    @route("fabric", "/fabric/hosts", methods=["GET"])
    def hosts(self, req, **_):
        return _json([h._asdict() for h in sorted(self.app.core.hosts.values())])

    @route("fabric", "/fabric/topology", methods=["GET"])
    def topology(self, req, **_):
        g = self.app.core.switch_graph()
        return _json({"switches": sorted(g.nodes),
                      "links": sorted([u, d["ports"][u], v, d["ports"][v]]
                                      for u, v, d in g.edges(data=True))})

    @route("fabric", "/stats/switches", methods=["GET"])
    def switches(self, req, **_):
        return _json(sorted(self.app.datapaths))
