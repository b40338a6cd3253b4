"""The Ryu application: a thin adapter between OpenFlow 1.3 events and the routing core.

Each handler turns one event into one call of :class:`controllers.core.RoutingCore` with
``now`` passed in, and sends the messages it gets back; this module decides nothing about
paths. It parses and builds packets (LLDP, ARP, the 5-tuple of a new flow) and OpenFlow
messages, runs a timer loop (flush route changes, send LLDP probes, expire links) and a
statistics loop (port and flow statistics fed to the core, then ``adapt``), and serves the
REST API (:class:`FabricRest`) on Ryu's WSGI server (127.0.0.1 by default, see
controllers/launcher.py).

Messages leave through one ordered outbox: Ryu's send queue per switch holds 16 messages, so
sending yields to other handlers, and two batches of the core must never interleave on a
switch (a rule could arrive after the deletion of the group it points to). Every batch that
changes a switch ends with a barrier on it; ``status`` says ``pending`` until every barrier
is answered, and times installation (``install``) for the benchmark.

Start it with ``python -m controllers.launcher`` (never plain ryu-manager on Python 3.11).
Options: see controllers/options.py (``--fabric-policy``, ``--fabric-stats-interval``,
``--fabric-fast-failover``, ``--fabric-topology`` + ``--fabric-scale`` for link capacities,
``--fabric-policy-options``, ``--fabric-lldp-interval``).
"""

import collections
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
from ryu.lib import hub, ofctl_v1_3
from ryu.lib.packet import arp as arp_pkt
from ryu.lib.packet import ethernet, ipv4, lldp, packet, tcp, udp
from ryu.ofproto import ofproto_v1_3

from controllers import options  # noqa: F401 - the --fabric-* options
from controllers import rules
from controllers.core import POLICIES, IntentError, PolicyError, RoutingCore, link_capacities

CONF = cfg.CONF

LOG = logging.getLogger("fabric.controller")
TICK_S = 0.05
HOLD_MAX_S = 1.0
REST_INSTANCE = "fabric_app"
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
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=lldp.LLDP_MAC_NEAREST_BRIDGE,
                                       src="02:ff:00:00:00:01", ethertype=rules.ETH_TYPE_LLDP))
    pkt.add_protocol(lldp.lldp([
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
                       chassis_id=_chassis(probe.dpid)),
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


def parse_flow(pkt):
    """The IPv4 5-tuple of a parsed packet (ports 0 unless TCP or UDP), or None."""
    ip = pkt.get_protocol(ipv4.ipv4)
    if ip is None:
        return None
    l4 = pkt.get_protocol(tcp.tcp) or pkt.get_protocol(udp.udp)
    sport, dport = (l4.src_port, l4.dst_port) if l4 is not None else (0, 0)
    return (ip.src, ip.dst, ip.proto, sport, dport)


def load_capacities():
    """``(link_capacity_bps, default_capacity_bps)`` from --fabric-topology and --fabric-scale.

    Without a model every port counts as 1 Gbit/s: utilization is then only indicative.
    """
    if not CONF.fabric_topology:
        return {}, DEFAULT_CAPACITY_BPS
    from fabric.model import load_json
    caps = link_capacities(load_json(CONF.fabric_topology), CONF.fabric_scale)
    return caps, max(caps.values())


def policy_options():
    """The thresholds of --fabric-policy-options (a JSON object), for the core to check."""
    if not CONF.fabric_policy_options:
        return {}
    try:
        opts = json.loads(CONF.fabric_policy_options)
    except ValueError as e:
        raise PolicyError(f"--fabric-policy-options is not JSON: {e}") from None
    if not isinstance(opts, dict):
        raise PolicyError("--fabric-policy-options must be a JSON object")
    return opts


class Installs:
    """Timing of rule and group installation, confirmed by barriers (for ``status``).

    ``busy_s`` adds up the time during which some switch had unconfirmed changes, so the rate
    ``mods / busy_s`` does not count the idle gaps between discovery steps; the largest single
    batch is timed from its first message queued to its last barrier answered.
    """

    def __init__(self):
        self.mods = 0
        self.first_mod_s = None
        self.last_confirmed_s = None
        self.busy_s = 0.0
        self._busy_since = None
        self._waiting = collections.defaultdict(collections.deque)  # dpid -> (xid, batch)
        self.largest = None

    def batch(self, now, mods, barriers):
        if mods and self.first_mod_s is None:
            self.first_mod_s = now
        self.mods += mods
        if barriers:
            if self._busy_since is None:
                self._busy_since = now
            batch = [now, mods, len(barriers)]   # queued at, mods, barriers unanswered
            for dpid, xid in barriers.items():
                self._waiting[dpid].append((xid, batch))

    def confirmed(self, dpid, xid, now, idle):
        # Barrier replies come in order on a switch: this one answers every earlier barrier
        # (xids are 32-bit counters: "earlier" is modulo 2**32).
        waiting = self._waiting.get(dpid)
        while waiting and (xid - waiting[0][0]) % 2 ** 32 < 2 ** 31:
            batch = waiting.popleft()[1]
            batch[2] -= 1
            if not batch[2] and (self.largest is None or batch[1] > self.largest["mods"]):
                self.largest = {"mods": batch[1], "seconds": now - batch[0],
                                "per_s": batch[1] / max(now - batch[0], 1e-9)}
        self.last_confirmed_s = now
        if idle and self._busy_since is not None:
            self.busy_s += now - self._busy_since
            self._busy_since = None

    def forget(self, dpid):
        for _, batch in self._waiting.pop(dpid, ()):
            batch[2] -= 1

    def as_dict(self):
        return {"mods": self.mods, "first_mod_s": self.first_mod_s,
                "last_confirmed_s": self.last_confirmed_s, "busy_s": self.busy_s,
                "per_busy_s": self.mods / self.busy_s if self.busy_s else None,
                "largest_batch": self.largest}


class FabricController(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    _CONTEXTS = {"wsgi": WSGIApplication}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        caps, default_bps = load_capacities()
        self.core = RoutingCore(policy=CONF.fabric_policy, fast_failover=CONF.fabric_fast_failover,
                                link_capacity_bps=caps, default_capacity_bps=default_bps,
                                **policy_options())
        self.datapaths = {}
        self.unconfirmed = {}   # dpid -> xid of the barrier that confirms its last changes
        self.counters = collections.Counter()   # the adapter's own: packet-ins, errors, ...
        self.installs = Installs()
        self.waiters = {}       # dpid -> {xid: (event, replies)}: REST stats requests
        self._round = {}        # (dpid, xid) -> replies so far, of the statistics round
        self._outbox = collections.deque()
        self._after_flush = []  # PacketOuts that must follow the next flush
        self._held = []         # (since, PacketOuts) waiting for every switch's barrier reply
        self._wake = hub.Event()
        self.lldp_interval = CONF.fabric_lldp_interval
        self.stats_interval = CONF.fabric_stats_interval
        if not self.stats_interval > 0:
            raise PolicyError(f"--fabric-stats-interval must be > 0, got {self.stats_interval}")
        kwargs["wsgi"].register(FabricRest, {REST_INSTANCE: self})
        self.threads += [hub.spawn(self._sender), hub.spawn(self._timer),
                         hub.spawn(self._poll)]

    # -- sending ---------------------------------------------------------------------------
    def send(self, msgs):
        """Queue core messages in order; every switch whose rules or groups changed also
        gets a barrier, so ``status`` can say when the changes are in force, not only sent."""
        barriers, mods = {}, 0
        for msg in msgs:
            dp = self.datapaths.get(msg.dpid)
            if dp is None:
                continue
            for ofmsg in self.to_openflow(dp, msg):
                self._outbox.append((dp, ofmsg))
            if not isinstance(msg, rules.PacketOut):
                barriers[msg.dpid] = None
                mods += isinstance(msg, (rules.FlowMod, rules.GroupMod))
        for dpid in barriers:
            dp = self.datapaths[dpid]
            barrier = dp.ofproto_parser.OFPBarrierRequest(dp)
            dp.set_xid(barrier)
            barriers[dpid] = self.unconfirmed[dpid] = barrier.xid
            self._outbox.append((dp, barrier))
        self.installs.batch(time.monotonic(), mods, barriers)
        if self._outbox:
            self._wake.set()

    def _sender(self):
        """The one green thread that writes to switches, in the order messages were queued."""
        while True:
            self._wake.wait()
            self._wake.clear()
            while self._outbox:
                dp, ofmsg = self._outbox.popleft()
                try:
                    dp.send_msg(ofmsg)
                except Exception:  # noqa: BLE001 - a dying switch must not stop the others
                    LOG.exception("sending to %016x failed", dp.id or 0)

    def status(self):
        status = self.core.status()
        status["unconfirmed_switches"] = len(self.unconfirmed)
        status["openflow_errors"] = self.counters["openflow_errors"]
        status["pending"] = status["pending"] or bool(self.unconfirmed) or bool(self._outbox)
        status["stats_interval_s"] = self.stats_interval
        status["stats_rounds"] = self.counters["stats_rounds"]
        status["install"] = self.installs.as_dict()
        status["now_s"] = time.monotonic()
        return status

    @staticmethod
    def _actions(dp, actions):
        parser, ofp = dp.ofproto_parser, dp.ofproto
        out = []
        for a in actions:
            if isinstance(a, rules.Output):
                # Reserved ports (PORT_IN_PORT, PORT_TABLE) are OpenFlow's own numbers.
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
            return [parser.OFPFlowMod(dp, cookie=r.cookie, cookie_mask=ALL_ONES,
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
            # OpenFlow 1.3.5 (and Open vSwitch) reject a delete that carries buckets.
            buckets = [] if msg.command == "delete" else [
                parser.OFPBucket(weight=b.weight if g.type == "select" else 0,
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
            # From the controller's port: resent through the table (PORT_TABLE), a packet must
            # not match the host-port rules that sent it here.
            return [parser.OFPPacketOut(dp, buffer_id=ofp.OFP_NO_BUFFER,
                                        in_port=ofp.OFPP_CONTROLLER, actions=actions,
                                        data=data)]
        raise TypeError(f"unknown message {msg!r}")

    # -- timers ----------------------------------------------------------------------------
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
                if self._after_flush:
                    self._held.append((now, self._after_flush))
                    self._after_flush = []
                self._release_held(now)
            except Exception:  # noqa: BLE001 - keep routing whatever one round did
                LOG.exception("timer round failed")
            hub.sleep(TICK_S)

    def _poll(self):
        """Every statistics period: port statistics of every switch, and flow statistics of
        the per-flow rules when the policy learns flows; the last reply ends the round."""
        while True:
            hub.sleep(self.stats_interval)
            try:
                if self._round:
                    self.counters["stats_rounds_late"] += 1
                    self._end_round(time.monotonic())
                learning = self.core.learns_flows
                for dp in list(self.datapaths.values()):
                    parser, ofp = dp.ofproto_parser, dp.ofproto
                    reqs = [parser.OFPPortStatsRequest(dp, 0, ofp.OFPP_ANY)]
                    if learning:
                        reqs.append(parser.OFPFlowStatsRequest(
                            dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                            rules.COOKIE_FLOW, ALL_ONES, parser.OFPMatch()))
                    for req in reqs:
                        dp.set_xid(req)
                        self._round[(dp.id, req.xid)] = []
                        self._outbox.append((dp, req))
                self._wake.set()
            except Exception:  # noqa: BLE001 - keep polling whatever one round did
                LOG.exception("statistics round failed")

    def _end_round(self, now):
        self._round.clear()
        self.counters["stats_rounds"] += 1
        self.core.adapt(now)
        self.send(self.core.flush(now))

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
            self.installs.forget(dp.id)
            self.waiters.pop(dp.id, None)
            for key in [k for k in self._round if k[0] == dp.id]:
                del self._round[key]
            LOG.info("switch %016x down", dp.id)
            self.send(self.core.switch_leave(dp.id, time.monotonic()))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def error(self, ev):
        msg = ev.msg
        self.counters["openflow_errors"] += 1
        LOG.error("switch %016x rejected a message: type %d code %d (%s)", msg.datapath.id,
                  msg.type, msg.code, bytes(msg.data[:64]).hex())

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    @guarded
    def barrier_reply(self, ev):
        dpid, xid, now = ev.msg.datapath.id, ev.msg.xid, time.monotonic()
        if self.unconfirmed.get(dpid) == xid:
            del self.unconfirmed[dpid]
        self.installs.confirmed(dpid, xid, now, idle=not self.unconfirmed)
        self._release_held(now)

    def _release_held(self, now):
        """Send held ARP answers once every switch confirmed its changes: the route to a host
        just learned spans several switches, and the asker's first packet must find it on
        all of them. A switch that never answers delays them by at most HOLD_MAX_S."""
        if self._held and (not self.unconfirmed or now - self._held[0][0] > HOLD_MAX_S):
            held, self._held = self._held, []
            for _, msgs in held:
                self.send(msgs)

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
        now = time.monotonic()
        self.send(self.core.port_status(msg.datapath.id, p.port_no, up, now))
        # Reroute now rather than at the next tick: without local protection this is the gap.
        self.send(self.core.flush(now))

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    @guarded
    def packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        in_port = msg.match["in_port"]
        pkt = packet.Packet(msg.data)
        now = time.monotonic()
        self.counters["packet_ins"] += 1
        probe = pkt.get_protocol(lldp.lldp)
        if probe is not None:
            src = parse_lldp(probe)
            if src is not None:
                self.send(self.core.link_seen(src[0], src[1], dp.id, in_port, now))
            return
        eth = pkt.get_protocol(ethernet.ethernet)
        a = pkt.get_protocol(arp_pkt.arp)
        if a is not None:
            fields = rules.ArpPacket(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip,
                                     eth_src=eth.src, eth_dst=eth.dst)
            answer = self.core.packet_in_arp(dp.id, in_port, fields, msg.data, now)
            if self.core.dirty:
                # Routes to a host just learned go out before the ARP answer, so the first
                # packet the asker sends finds them installed. They go with the next tick:
                # hosts announce themselves in bursts, and one rebuild for the burst sends a
                # fraction of the rules that one per host would (each shifts the detours).
                self._after_flush.extend(answer)
            else:
                self.send(answer)
            return
        five_tuple = parse_flow(pkt)
        if five_tuple is not None:
            self.counters["flow_packet_ins"] += 1
            self.send(self.core.packet_in_flow(dp.id, in_port, five_tuple, eth.src, eth.dst,
                                               msg.data, now))

    @set_ev_cls([ofp_event.EventOFPPortStatsReply, ofp_event.EventOFPFlowStatsReply],
                MAIN_DISPATCHER)
    @guarded
    def stats_reply(self, ev):
        msg = ev.msg
        dp = msg.datapath
        more = msg.flags & dp.ofproto.OFPMPF_REPLY_MORE
        waiter = self.waiters.get(dp.id, {}).get(msg.xid)
        if waiter is not None:  # a REST request, answered as ofctl_rest does
            waiter[1].append(msg)
            if not more:
                del self.waiters[dp.id][msg.xid]
                waiter[0].set()
            return
        replies = self._round.get((dp.id, msg.xid))
        if replies is None:
            return  # from a round already closed as late
        replies.extend(msg.body)
        if more:
            return
        del self._round[(dp.id, msg.xid)]
        now = time.monotonic()
        if isinstance(msg, dp.ofproto_parser.OFPPortStatsReply):
            self.core.port_stats(dp.id, {s.port_no: s.tx_bytes for s in replies
                                         if s.port_no < dp.ofproto.OFPP_MAX}, now)
        else:
            self.core.flow_stats(dp.id, [(s.match, s.byte_count) for s in replies], now)
        if not self._round:
            self._end_round(now)

    # -- what the REST API asks ------------------------------------------------------------
    def apply(self, call, *args):
        """Run a core call that changes state, then send what it and a flush return."""
        now = time.monotonic()
        self.send(call(*args, now) or [])
        self.send(self.core.flush(now))

    def stats(self, dpid, getter, *args):
        """Ask a switch for statistics the ofctl_rest way (waits up to ofctl's timeout)."""
        return getter(self.datapaths[dpid], self.waiters, *args)


class BadRequest(ValueError):
    """A REST request that cannot be served as asked (answered with 400)."""


def _json(obj, status=200):
    return Response(status=status, content_type="application/json",
                    body=json.dumps(obj, sort_keys=True, default=str).encode())


def rest(handler):
    """Answer a handler's result as JSON; a bad request or a core refusal is a 400 with a
    message, and no request can take the controller down."""
    @functools.wraps(handler)
    def wrapper(self, req, **kwargs):
        try:
            result = handler(self, req, **kwargs)
        except (BadRequest, PolicyError, IntentError) as e:
            return _json({"error": str(e)}, status=400)
        except Exception as e:  # noqa: BLE001 - a bug in one request must not kill routing
            LOG.exception("REST %s %s failed", req.method, req.path)
            return _json({"error": f"internal error: {e}"}, status=500)
        if isinstance(result, Response):
            return result
        return _json(result)
    return wrapper


def _body(req):
    """The JSON object of a request body."""
    if not req.body:
        raise BadRequest("request body is empty; expected a JSON object")
    try:
        body = json.loads(req.body)
    except ValueError as e:
        raise BadRequest(f"request body is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(body).__name__}")
    return body


def _int(value, what):
    try:
        return int(str(value), 0)
    except ValueError:
        raise BadRequest(f"{what} must be an integer, got {value!r}") from None


class FabricRest(ControllerBase):
    """REST view and control of the controller (see the README for the routes)."""

    def __init__(self, req, link, data, **config):
        super().__init__(req, link, data, **config)
        self.app = data[REST_INSTANCE]
        self.core = self.app.core

    def _host(self, req, name):
        ref = req.GET.get(name)
        if not ref:
            raise BadRequest(f"query parameter '{name}' (a host IPv4 or MAC address) is missing")
        host = self.core.host_by_ref(ref)
        if host is None:
            raise BadRequest(f"unknown host {ref!r}")
        return host

    def _dp(self, dpid):
        dpid = _int(dpid, "dpid")
        if dpid not in self.app.datapaths:
            raise BadRequest(f"unknown switch {dpid}; connected: {sorted(self.app.datapaths)}")
        return dpid

    # -- our API ---------------------------------------------------------------------------
    @route("fabric", "/fabric/status", methods=["GET"])
    @rest
    def status(self, req, **_):
        return self.app.status()

    @route("fabric", "/fabric/counters", methods=["GET"])
    @rest
    def counters(self, req, **_):
        return {"core": self.core.status()["counters"], "controller": dict(self.app.counters)}

    @route("fabric", "/fabric/hosts", methods=["GET"])
    @rest
    def hosts(self, req, **_):
        return [h._asdict() for h in sorted(self.core.hosts.values())]

    @route("fabric", "/fabric/topology", methods=["GET"])
    @rest
    def topology(self, req, **_):
        return {"switches": sorted(self.core.ports),
                "links": self.core.link_loads(),
                "hosts": [h._asdict() for h in sorted(self.core.hosts.values())]}

    @route("fabric", "/fabric/paths", methods=["GET"])
    @rest
    def paths(self, req, **_):
        src, dst = self._host(req, "src"), self._host(req, "dst")
        flow_key = None
        if "proto" in req.GET:
            flow_key = (src.ip, dst.ip, _int(req.GET["proto"], "proto"),
                        _int(req.GET.get("sport", 0), "sport"),
                        _int(req.GET.get("dport", 0), "dport"))
        try:
            paths = self.core.paths(src.mac, dst.mac, flow_key)
        except ValueError as e:
            raise BadRequest(str(e)) from None
        return {"src": src._asdict(), "dst": dst._asdict(), "policy": self.core.policy,
                "paths": paths, "flows": self.core.learned_flows(src.mac, dst.mac)}

    @route("fabric", "/fabric/flows", methods=["GET"])
    @rest
    def flows(self, req, **_):
        return self.core.learned_flows()

    @route("fabric", "/fabric/policy", methods=["GET"])
    @rest
    def get_policy(self, req, **_):
        return {"policy": self.core.policy, "policies": list(POLICIES)}

    @route("fabric", "/fabric/policy", methods=["PUT"])
    @rest
    def put_policy(self, req, **_):
        body = _body(req)
        if set(body) != {"policy"}:
            raise BadRequest('expected {"policy": <name>}')
        self.app.apply(self.core.set_policy, body["policy"])
        return {"policy": self.core.policy, "policies": list(POLICIES)}

    @route("fabric", "/fabric/intents", methods=["GET"])
    @rest
    def intents(self, req, **_):
        return self.core.intents()

    @route("fabric", "/fabric/intents", methods=["POST"])
    @rest
    def submit(self, req, **_):
        body = _body(req)
        if "id" not in body or "flows" not in body or set(body) - {"id", "flows"}:
            raise BadRequest('expected {"id": <string or integer>, "flows": [...]}')
        self.app.apply(self.core.submit_intent, body["id"], body["flows"])
        return self.core.intent_status(body["id"])

    def _intent_id(self, intent_id):
        """The id as submitted: a path segment is a string, an id may have been an integer."""
        for status in self.core.intents():
            if str(status["intent"]) == intent_id:
                return status["intent"]
        return intent_id  # unknown: the core says why

    @route("fabric", "/fabric/intents/{intent_id}", methods=["GET"])
    @rest
    def intent(self, req, intent_id, **_):
        return self.core.intent_status(self._intent_id(intent_id))

    @route("fabric", "/fabric/intents/{intent_id}", methods=["DELETE"])
    @rest
    def withdraw(self, req, intent_id, **_):
        self.app.apply(self.core.withdraw_intent, self._intent_id(intent_id))
        return {"intent": intent_id, "state": "withdrawn"}

    # -- as Ryu's ofctl_rest ---------------------------------------------------------------
    @route("fabric", "/stats/switches", methods=["GET"])
    @rest
    def switches(self, req, **_):
        return sorted(self.app.datapaths)

    @route("fabric", "/stats/flow/{dpid}", methods=["GET", "POST"])
    @rest
    def flow_stats(self, req, dpid, **_):
        flt = _body(req) if req.body else {}
        try:
            return self.app.stats(self._dp(dpid), ofctl_v1_3.get_flow_stats, flt)
        except (KeyError, TypeError, ValueError) as e:
            raise BadRequest(f"bad flow filter {flt!r}: {e}") from None

    @route("fabric", "/stats/port/{dpid}", methods=["GET"])
    @rest
    def port_stats(self, req, dpid, **_):
        return self.app.stats(self._dp(dpid), ofctl_v1_3.get_port_stats)

    @route("fabric", "/stats/port/{dpid}/{port}", methods=["GET"])
    @rest
    def port_stats_one(self, req, dpid, port, **_):
        return self.app.stats(self._dp(dpid), ofctl_v1_3.get_port_stats,
                              _int(port, "port"))
