"""The integration pieces of the routing policies that need no network: how the app encodes
messages, what the runner hands the controller, the probe analysis, the benchmark's
statistics. The same pieces run for real in tests/test_policies_emulation.py."""

import json
import struct

import pytest

from bench.policies import (BASELINE, check_targets, make_spec, median_interval, summarize,
                            table_lines)
from controllers.launcher import _positionals, apply_shim
from controllers.rules import (COOKIE_FLOW, Barrier, Bucket, FlowStatsRequest, Group, GroupMod,
                               Output, PacketOut, PortStatsRequest, PORT_TABLE)
from fabric import model, spec as specs
from fabric.runner import controller_args
from topologies import build
from traffic.probe import analyze


class FakeDatapath:
    def __init__(self):
        from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser
        self.ofproto, self.ofproto_parser = ofproto_v1_3, ofproto_v1_3_parser
        self.id = 1


def _encode(msg):
    apply_shim()
    from controllers.app import FabricController
    app = object.__new__(FabricController)  # to_openflow needs no state of a running app
    (ofmsg,) = app.to_openflow(FakeDatapath(), msg)
    if ofmsg.xid is None:   # the connection gives one as it sends
        ofmsg.set_xid(0)
    ofmsg.serialize()
    return ofmsg


def test_group_delete_carries_no_buckets_and_reserved_ports_pass_through():
    ff = Group(7, "fast_failover", (Bucket((Output(3),), watch_port=3),
                                    Bucket((Output(4),), watch_port=4)))
    add, delete = _encode(GroupMod(1, "add", ff)), _encode(GroupMod(1, "delete", ff))
    # Packed by controllers/ofencode.py: a 16-byte group mod header, then the buckets (16
    # bytes each and a 16-byte output action): length, weight, watch port, ...
    assert len(add.buf) == 16 + 2 * 32
    assert struct.unpack_from("!HHI", add.buf, 16) == (32, 0, 3)
    # Open vSwitch (as OpenFlow 1.3.5 says) refuses a delete with buckets: INVALID_GROUP.
    assert len(delete.buf) == 16
    out = _encode(PacketOut(1, (PORT_TABLE,), b"\0" * 60))
    assert out.actions[0].port == 0xFFFFFFF9 and out.in_port == 0xFFFFFFFD  # from CONTROLLER


def test_the_drivers_requests_keep_their_transaction_ids():
    # The driver pairs replies with what it asked by xid: Ryu must not assign its own.
    assert _encode(Barrier(1, 77)).xid == 77
    port = _encode(PortStatsRequest(1, 78))
    assert port.xid == 78 and port.port_no == 0xFFFFFFFF   # every port (OFPP_ANY)
    flow = _encode(FlowStatsRequest(1, 79, COOKIE_FLOW))
    assert flow.xid == 79 and flow.cookie == COOKIE_FLOW and flow.cookie_mask == 2 ** 64 - 1


def test_launcher_does_not_take_a_flag_for_an_option_value():
    assert _positionals(["--nofabric-fast-failover", "controllers.app"]) == ["controllers.app"]
    assert _positionals(["--fabric-policy", "hedera", "x.app"]) == ["x.app"]


def test_spec_names_reference_controllers_and_checks_the_controller_section():
    base = {"topology": "fattree", "workload": "moe_alltoall"}
    assert specs.check({**base, "policy": "stp"})["policy"] == "stp"
    checked = specs.check({**base, "controller": {"stats_interval_s": 0.5}})
    assert checked["controller"] == {"stats_interval_s": 0.5, "fast_failover": True,
                                     "options": {}, "health": {}}
    for controller, message in (({"stats_interval_s": 0}, "stats_interval_s"),
                                ({"fast_failover": "yes"}, "fast_failover"),
                                ({"options": {"hot_util": 2}}, "hot_util"),
                                ({"options": {"bogus": 1}}, "unknown option 'bogus'"),
                                ({"health": {"restore_s": -1}}, "health.*restore_s"),
                                ({"health": {"bogus": 1}}, "unknown health option 'bogus'"),
                                ({"health": [1]}, "'controller.health' must be a mapping"),
                                ({"period": 1}, "unknown controller keys")):
        with pytest.raises(specs.SpecError, match=message):
            specs.check({**base, "controller": controller})


def test_controller_args_hand_over_the_model_and_the_spec(tmp_path):
    g = build("leafspine", leaves=2, spines=2, hosts_per_leaf=2)
    spec = specs.check({"topology": "leafspine", "workload": "moe_alltoall",
                        "controller": {"fast_failover": False,
                                       "options": {"hot_util": 0.7}}})
    args = controller_args(g, spec, 5e-5, str(tmp_path))
    path = args[args.index("--fabric-topology") + 1]
    assert sorted(model.load_json(path).edges) == sorted(g.edges)
    assert args[args.index("--fabric-scale") + 1] == "5e-05"
    assert "--nofabric-fast-failover" in args
    assert json.loads(args[args.index("--fabric-policy-options") + 1]) == {"hot_util": 0.7}


def test_probe_analysis_tells_an_outage_from_a_late_sender():
    arrivals = [(s, s / 1000) for s in range(10)] + [(s, s / 1000 + 0.004) for s in range(14, 20)]
    r = analyze(arrivals, sent=20)
    assert (r["lost"], r["longest_loss_run"], r["gap_seqs"]) == (4, 4, [9, 14])
    assert r["gap_ms"] == pytest.approx(9.0)
    late = analyze([(s, s / 1000 + (0.02 if s >= 5 else 0)) for s in range(10)], sent=10)
    assert late["lost"] == late["longest_loss_run"] == 0 and late["gap_ms"] > 20
    assert analyze([(0, 0.0), (2, 0.002)], sent=None)["lost"] is None


def test_median_interval_is_the_order_statistics_one():
    five = median_interval([3, 1, 2, 5, 4])
    assert (five["median"], five["lo"], five["hi"]) == (3, 1, 5)
    assert five["coverage"] == pytest.approx(1 - 2 / 32)
    nine = median_interval(range(1, 10))
    assert (nine["lo"], nine["hi"]) == (2, 8) and nine["coverage"] >= 0.95
    assert median_interval([0.5])["coverage"] == 0
    assert median_interval([])["median"] is None


def test_bench_ratios_pair_runs_by_seed_and_targets_read_them():
    def row(fabric, policy, workload, seed, eff):
        return {"fabric": fabric, "policy": policy, "workload": workload, "seed": seed,
                "efficiency": eff, "cpu_saturated": False}
    rows = []
    for seed, base in ((1, 1.0), (2, 0.8)):
        rows.append(row(BASELINE, BASELINE, "stride", seed, base))
        rows.append(row("fattree", "ecmp", "stride", seed, base / 4))
        rows.append(row("fattree", "collective", "stride", seed, base * 0.95))
    rows.append(row("fattree", "hedera", "stride", 1, None))  # did not complete
    table = summarize(rows)
    entry = {(e["fabric"], e["workload"], e["policy"]): e for e in table}
    coll = entry[("fattree", "stride", "collective")]
    assert coll["vs_nonblocking"]["median"] == pytest.approx(0.95)
    assert coll["vs_ecmp"]["median"] == pytest.approx(3.8)
    hedera = entry[("fattree", "stride", "hedera")]
    assert (hedera["runs"], hedera["completed"], hedera["efficiency"]["median"]) == (1, 0, None)
    met = {t["target"]: t["met"] for t in check_targets(table)}
    assert met["collective >= 0.90 of nonblocking, stride"]
    assert not met["hedera >= 1.3 x ecmp, stride"]
    lines, _ = table_lines(table)
    assert any("collective" in line and "0.95" in line for line in lines)


def test_bench_specs_scale_the_workload_and_check():
    spec = make_spec("leafspine", "hedera", "stride", 0.5)
    assert spec["workload"]["params"]["bytes_per_flow"] == 2_000_000
    assert spec["topology"]["params"]["oversubscription"] == 2.0
    assert make_spec(BASELINE, "ecmp", "moe_uniform", 1.0)["topology"]["name"] == "nonblocking"


def test_lldp_probes_carry_when_they_were_sent_and_parse_back():
    apply_shim()
    from ryu.lib.packet import lldp, packet
    from controllers.app import build_lldp, parse_lldp
    from controllers.rules import LldpProbe
    for probe in (LldpProbe(0x1F, 7, 12.25, "ab" * 16), LldpProbe(0x1F, 7, 12.25),
                  LldpProbe(3, 1)):
        frame = packet.Packet(build_lldp(probe)).get_protocol(lldp.lldp)
        assert parse_lldp(frame) == probe


def _read_back(msg):
    """What a switch reports for a rule or group the app sent: the encoded FlowMod or
    GroupMod parsed back from its bytes into the flow-stats or group-desc entry a switch
    would answer a dump with."""
    from ryu.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser
    ofmsg = _encode(msg)
    if isinstance(msg, GroupMod):
        buckets, offset = [], ofp.OFP_GROUP_MOD_SIZE
        while offset < len(ofmsg.buf):
            bucket = parser.OFPBucket.parser(ofmsg.buf, offset)
            buckets.append(bucket)
            offset += bucket.len
        _command, gtype, group_id = struct.unpack_from("!HBxI", ofmsg.buf, 8)
        return parser.OFPGroupDescStats(gtype, group_id, buckets)
    back = parser.OFPFlowMod.parser(FakeDatapath(), ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD,
                                    len(ofmsg.buf), 0, bytes(ofmsg.buf))
    return parser.OFPFlowStats(back.table_id, 0, 0, back.priority, 0, 0, back.flags,
                               back.cookie, 0, 0, back.match, back.instructions)


def test_rules_and_groups_read_back_from_a_switch_equal_what_the_core_sent():
    # Reconciliation compares what a switch reports with what the core wants: every rule and
    # group of a fabric (base rules to the controller and dropping, host routes, detours,
    # SELECT, FAST_FAILOVER and bounce groups) must read back equal, or a restart rewrites it.
    from ryu.ofproto import ofproto_v1_3 as ofp
    from controllers.app import held_group, held_rule
    from controllers.core import RoutingCore
    from controllers.rules import FlowMod
    core = RoutingCore(policy="congestion")
    core.load_fabric(build("fattree", k=4))
    sent = core.flush(0.0)
    kinds = {m.group.type for m in sent if isinstance(m, GroupMod)}
    assert kinds == {"select", "fast_failover"}
    rules = [m.rule for m in sent if isinstance(m, FlowMod)]
    assert {a for r in rules for a in r.actions if type(a).__name__ == "ToController"}
    for rule in rules:
        assert held_rule(_read_back(FlowMod(1, "add", rule)), ofp) == rule
    for m in sent:
        if isinstance(m, GroupMod):
            assert held_group(_read_back(m), ofp) == m.group


def test_a_rule_read_back_with_an_instruction_of_no_rule_of_ours_differs_from_ours():
    from ryu.ofproto import ofproto_v1_3 as ofp, ofproto_v1_3_parser as parser
    from controllers.app import Unparsed, held_rule
    from controllers.rules import FlowMod, FlowRule, match
    ours = FlowRule(100, match(eth_dst="00:00:00:00:00:01"), (Output(2),))
    stat = _read_back(FlowMod(1, "add", ours))
    stat.instructions.append(parser.OFPInstructionGotoTable(1))
    held = held_rule(stat, ofp)
    assert held.key == ours.key and held != ours
    assert isinstance(held.actions[-1], Unparsed)
