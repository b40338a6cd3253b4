"""Tests of the shared forwarding-table interpreter and its model of Open vSwitch's SELECT hash.

Hand-made tables check lookup and group semantics; the hash is checked against published
known-answer vectors of the algorithms Open vSwitch builds on, for determinism, symmetry and
its spread over weighted buckets; a k=4 fat-tree checks that the core's path query gives what
``RoutingCore.paths`` gives, and that the fake datapath follows one hashed path per 5-tuple,
ECMP collisions included. Pure: no Ryu, no Mininet.
"""

import itertools
import random

import pytest

from controllers.core import RoutingCore
from controllers.rules import (
    PORT_IN_PORT, Bucket, ClearSwitch, FlowMod, FlowRule, Group, GroupMod, Output, ToController,
    ToGroup, match)
from controllers.tables import (
    CONTROLLER, Branch, FlowTable, installed_paths, ovs_dp_hash, ovs_symmetric_l4_hash,
    select_bucket, select_slots, walk)
# Internal steps, imported only to check them against the algorithms' published vectors.
from controllers.tables import _jhash_words, _mhash_add, _mhash_finish
from fabric.model import hosts
from fakedp import FakeFabric, FakeSwitch
from topologies import build

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=40000, dport=5001, **fields):
    return dict({"eth_src": MAC1, "eth_dst": MAC2, "eth_type": 0x0800, "ipv4_src": src,
                 "ipv4_dst": dst, "ip_proto": 6, "tcp_src": sport, "tcp_dst": dport}, **fields)


def random_tcp(rng):
    return tcp(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
               f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
               rng.randrange(1024, 65536), rng.randrange(1, 65536))


def select(*weights):
    return Group(1, "select", tuple(Bucket((Output(i + 1),), weight=w)
                                    for i, w in enumerate(weights)))


def shares(group, n=10_000, seed=1):
    rng = random.Random(seed)
    counts = [0] * len(group.buckets)
    for _ in range(n):
        counts[group.buckets.index(select_bucket(group, random_tcp(rng)))] += 1
    return [c / n for c in counts]


# -- lookup ---------------------------------------------------------------------------------
def test_highest_priority_exact_match_wins():
    t = FlowTable([FlowRule(0, (), (Output(9),)),
                   FlowRule(100, match(eth_dst=MAC2), (Output(1),)),
                   FlowRule(200, match(eth_dst=MAC2, ip_proto=6, tcp_dst=5001), (Output(2),)),
                   FlowRule(300, match(eth_dst=MAC2, tcp_dst=80), (Output(3),))])
    assert t.outputs(tcp(), in_port=7) == (2,)
    assert t.outputs(tcp(dport=5002), in_port=7) == (1,)
    assert t.outputs(tcp(dport=80), in_port=7) == (3,)
    assert t.outputs(tcp(eth_dst=MAC1), in_port=7) == (9,)  # exact, not prefix or wildcard
    no_tcp = {k: v for k, v in tcp().items() if k != "tcp_dst"}
    assert t.outputs(no_tcp, in_port=7) == (1,)  # a field the packet lacks never matches


def test_delete_and_replace_keep_the_index_right():
    low, high = FlowRule(1, match(ip_proto=6), (Output(1),)), FlowRule(5, match(tcp_dst=5001),
                                                                      (Output(2),))
    t = FlowTable([low, high])
    assert t.lookup(tcp()) is high
    t.delete_flow(high)
    assert t.lookup(tcp()) is low and len(t.flows) == 1
    t.delete_flow(high)  # absent is fine
    t.add_flow(FlowRule(1, match(ip_proto=6), (Output(4),)))
    assert t.outputs(tcp(), in_port=9) == (4,) and len(t.flows) == 1
    t.clear()
    assert t.lookup(tcp()) is None and not t.flows and not t.groups


def test_overlapping_rules_of_one_priority_resolve_deterministically():
    a = FlowRule(10, match(ip_proto=6), (Output(1),))
    b = FlowRule(10, match(ip_proto=6, tcp_dst=5001), (Output(2),))
    c = FlowRule(10, match(eth_type=0x0800), (Output(3),))
    for rules in itertools.permutations([a, b, c]):
        t = FlowTable(rules)
        assert t.lookup(tcp()) is b  # more fields first
        t.delete_flow(b)
        assert t.lookup(tcp()) is c  # then field names in order


def test_a_masked_field_matches_every_value_under_its_mask_and_exact_rules_still_win():
    prefix = ("0a:00:00:05:00:00", "ff:ff:ff:ff:00:00")
    via_prefix = FlowRule(100, match(eth_dst=prefix), (Output(1),))
    exact = FlowRule(150, match(eth_dst="0a:00:00:05:00:09"), (Output(2),))
    subnet = FlowRule(120, match(eth_type=0x0800, ipv4_dst=("10.1.0.0", "255.255.0.0")),
                      (Output(3),))
    t = FlowTable([FlowRule(0, (), ()), via_prefix, exact, subnet])
    assert t.outputs(tcp(eth_dst="0a:00:00:05:00:03"), in_port=7) == (1,)
    assert t.outputs(tcp(eth_dst="0A:00:00:05:FF:FF"), in_port=7) == (1,)  # either case
    assert t.outputs(tcp(eth_dst="0a:00:00:05:00:09"), in_port=7) == (2,)  # higher priority
    assert t.outputs(tcp(eth_dst="0a:00:00:06:00:03"), in_port=7) == ()    # outside the mask
    assert t.outputs(tcp(eth_dst="0b:00:00:05:00:03"), in_port=7) == ()
    assert t.outputs(tcp(eth_dst=MAC1, dst="10.1.200.3"), in_port=7) == (3,)
    assert t.outputs(tcp(eth_dst="0a:00:00:05:00:03", dst="10.1.200.3"), in_port=7) == (3,)
    t.delete_flow(subnet)
    assert t.outputs(tcp(eth_dst="0a:00:00:05:00:03", dst="10.1.200.3"), in_port=7) == (1,)
    assert t.lookup({"eth_type": 0x0806}).priority == 0  # no eth_dst: the masked rule is out


def test_the_fake_switch_refuses_a_masked_value_with_bits_outside_its_mask():
    sw = FakeSwitch(1)
    sw.apply(FlowMod(1, "add", FlowRule(
        100, match(eth_dst=("0a:00:00:05:00:00", "ff:ff:ff:ff:00:00")), (Output(1),))))
    with pytest.raises(AssertionError, match="outside mask"):
        sw.apply(FlowMod(1, "add", FlowRule(
            100, match(eth_dst=("0a:00:00:05:00:01", "ff:ff:ff:ff:00:00")), (Output(1),))))


def test_only_table_0_is_looked_up():
    t = FlowTable([FlowRule(10, (), (Output(1),), table_id=1)])
    assert t.lookup(tcp()) is None


# -- actions --------------------------------------------------------------------------------
def test_plain_output_to_the_in_port_is_dropped_and_port_in_port_is_not():
    t = FlowTable([FlowRule(0, (), (Output(1), Output(2)))])
    assert t.outputs(tcp(), in_port=1) == (2,)
    t.add_flow(FlowRule(0, (), (Output(PORT_IN_PORT),)))
    assert t.outputs(tcp(), in_port=1) == (1,)


def test_controller_output_and_missing_group():
    t = FlowTable([FlowRule(0, (), (ToController(), ToGroup(42), Output(3)))])
    assert t.outputs(tcp(), in_port=1) == (CONTROLLER, 3)


def test_fast_failover_takes_its_first_live_bucket():
    ff = Group(5, "fast_failover", (Bucket((Output(1),), watch_port=1),
                                   Bucket((Output(2),), watch_port=2),
                                   Bucket((Output(3),), watch_port=3)))
    t = FlowTable([FlowRule(0, (), (ToGroup(5),))], [ff])
    assert t.outputs(tcp(), in_port=9) == (1,)
    assert t.outputs(tcp(), in_port=9, live=lambda p: p != 1) == (2,)
    assert t.outputs(tcp(), in_port=9, live=lambda p: p == 3) == (3,)
    assert t.outputs(tcp(), in_port=9, live=lambda p: False) == ()


def test_select_gives_every_live_bucket_or_the_hashed_one():
    ff = Group(2, "fast_failover", (Bucket((Output(3),), watch_port=3),
                                   Bucket((Output(4),), watch_port=4)))
    sel = Group(1, "select", (Bucket((Output(1),)), Bucket((Output(2),), weight=0),
                              Bucket((ToGroup(2),), weight=2)))
    t = FlowTable([FlowRule(0, (), (ToGroup(1),))], [ff, sel])
    assert t.outputs(tcp(), in_port=9) == (1, 3)  # weight 0 is never used
    assert t.outputs(tcp(), in_port=9, live=lambda p: p != 3) == (1, 4)
    seen = set()
    for sport in range(40000, 40200):
        (port,) = t.outputs(tcp(sport=sport), in_port=9, hashed=True)
        seen.add(port)
        assert port == {sel.buckets[0]: 1, sel.buckets[2]: 3}[select_bucket(sel, tcp(sport=sport))]
    assert seen == {1, 3}


def test_all_groups_take_every_bucket_and_group_cycles_are_an_error():
    t = FlowTable([FlowRule(0, (), (ToGroup(1),))],
                  [Group(1, "all", (Bucket((Output(1),)), Bucket((Output(2),))))])
    assert t.outputs(tcp(), in_port=9, hashed=True) == (1, 2)
    t.set_group(Group(1, "indirect", (Bucket((ToGroup(1),)),)))
    with pytest.raises(ValueError, match="chain"):
        t.outputs(tcp(), in_port=9)


# -- the SELECT hash ------------------------------------------------------------------------
def test_hash_steps_match_the_published_vectors():
    # MurmurHash3 x86_32 of b"test" (seeds 0 and 0x9747b28c) and lookup3's hashlittle of
    # "Four score and seven years ago" (initvals 0 and 1), from their authors' references.
    word = int.from_bytes(b"test", "little")
    assert _mhash_finish(_mhash_add(0, word) ^ 4) == 0xBA6BD213
    assert _mhash_finish(_mhash_add(0x9747B28C, word) ^ 4) == 0x704B81DC
    text = b"Four score and seven years ago\0\0"
    words = [int.from_bytes(text[i:i + 4], "little") for i in range(0, 32, 4)]
    assert _jhash_words(words, 30, 0) == 0x17770551
    assert _jhash_words(words, 30, 1) == 0xCD628161


def test_dp_hash_is_deterministic_symmetric_and_reads_only_l3_l4():
    a = tcp()
    assert ovs_dp_hash(a) == ovs_dp_hash(dict(a))
    back = tcp("10.0.0.2", "10.0.0.1", 5001, 40000, eth_src=MAC2, eth_dst=MAC1)
    assert ovs_dp_hash(a) == ovs_dp_hash(back)
    assert ovs_symmetric_l4_hash(a) == ovs_symmetric_l4_hash(back)
    assert ovs_dp_hash(a) == ovs_dp_hash(dict(a, eth_src="02:00:00:00:00:99", in_port=3))
    assert ovs_symmetric_l4_hash(a) != ovs_symmetric_l4_hash(dict(a, eth_src="02:00:00:00:00:99"))
    assert len({ovs_dp_hash(tcp(sport=p)) for p in range(40000, 40100)}) == 100
    # Open vSwitch leaves UDP ports out: every UDP flow of a host pair hashes alike.
    udp = dict(tcp(), ip_proto=17, udp_src=49152, udp_dst=4791)
    del udp["tcp_src"], udp["tcp_dst"]
    assert len({ovs_dp_hash(dict(udp, udp_src=p)) for p in range(49152, 49252)}) == 1
    assert all(0 <= ovs_dp_hash(random_tcp(random.Random(s))) < 2 ** 32 for s in range(50))


def test_dp_hash_table_follows_webster_in_bucket_order():
    assert select_slots((1, 1)) == (0, 1) * 8
    assert select_slots((1, 1, 1)) == (0, 1, 2) * 5 + (0,)
    slots = select_slots((1, 3))
    assert len(slots) == 16 and slots.count(0) == 4
    assert len(select_slots((1, 100))) == 128
    assert select_slots((1, 100, 100, 100)) is None  # 512 values: the fallback
    assert select_slots((0, 0)) is None
    assert select_slots((0, 1)) == (1,) * 16


def test_hashed_buckets_spread_by_weight():
    for weights in ((1, 1), (1, 3), (1, 1, 1, 1), (5, 2, 3)):
        for share, w in zip(shares(select(*weights)), weights):
            assert share == pytest.approx(w / sum(weights), abs=0.02), weights


def test_fallback_when_weights_are_too_unequal_is_highest_random_weight():
    # 1:300 needs 512 hash values: Open vSwitch scores buckets instead, and the light bucket
    # wins only when its 16-bit score beats 300 times the other's (about 1 in 600).
    light, heavy = shares(select(1, 300))
    assert light < 0.005 and heavy > 0.995
    parts = shares(select(1, 100, 100, 100))
    assert parts[0] < 0.01
    assert all(p == pytest.approx(1 / 3, abs=0.02) for p in parts[1:])


def test_a_dead_bucket_moves_only_its_own_flows():
    group = Group(1, "select", tuple(Bucket((Output(p),), watch_port=p) for p in (1, 2, 3, 4)))
    rng = random.Random(3)
    pkts = [random_tcp(rng) for _ in range(4000)]
    before = [select_bucket(group, p) for p in pkts]
    after = [select_bucket(group, p, live=lambda port: port != 2) for p in pkts]
    dead = group.buckets[1]
    assert dead not in after
    assert all(new is old for old, new in zip(before, after) if old is not dead)
    moved = [new for old, new in zip(before, after) if old is dead]
    assert {group.buckets.index(a) for a in moved} == {2}  # the next slot's bucket
    assert select_bucket(group, pkts[0], live=lambda port: False) is None


# -- walking a fabric -----------------------------------------------------------------------
def test_walk_reports_every_way_a_branch_ends():
    tables = {1: FlowTable([FlowRule(1, match(in_port=9),
                                     (Output(2), Output(3), Output(4), ToController())),
                            FlowRule(1, match(in_port=2), (Output(PORT_IN_PORT),))]),
              2: FlowTable([FlowRule(0, (), (Output(PORT_IN_PORT),))])}
    peers = {(1, 2): (2, 1), (2, 1): (1, 2), (1, 3): (3, 1), (3, 1): (1, 3)}
    branches = walk(tables, peers, tcp(), 1, 9, live=lambda d, p: (d, p) != (1, 4))
    # Depth first in action order: ping-pong between 1 and 2 until a switch sees the same
    # packet on the same port again, switch 3 has no table, port 4 is down.
    assert branches == [Branch((1, 2, 1, 2), "loop"), Branch((1, 3), "drop"),
                        Branch((1,), "down", 4), Branch((1,), CONTROLLER)]
    tables[2] = FlowTable([FlowRule(0, (), (Output(5),))])
    assert walk(tables, peers, tcp(), 1, 9, hashed=True)[0] == Branch((1, 2), "exit", 5)
    assert walk(tables, peers, tcp(), 1, 9, max_switches=1)[0] == Branch((1, 2), "loop")
    assert walk(tables, peers, tcp(), 1, 7) == [Branch((1,), "drop")]


# -- the fake datapath ----------------------------------------------------------------------
def test_the_fake_switch_rejects_what_a_switch_would():
    sw = FakeSwitch(1)
    ff = Group(1, "fast_failover", (Bucket((Output(1),), watch_port=1),))
    with pytest.raises(AssertionError, match="missing group"):
        sw.apply(FlowMod(1, "add", FlowRule(0, (), (ToGroup(1),))))
    with pytest.raises(AssertionError, match="modify of missing"):
        sw.apply(GroupMod(1, "modify", ff))
    with pytest.raises(AssertionError, match="without watch port"):
        sw.apply(GroupMod(1, "add", Group(1, "fast_failover", (Bucket((Output(1),)),))))
    sw.apply(GroupMod(1, "add", ff))
    with pytest.raises(AssertionError, match="added twice"):
        sw.apply(GroupMod(1, "add", ff))
    with pytest.raises(AssertionError, match="chains to"):
        sw.apply(GroupMod(1, "add", Group(2, "select", (Bucket((ToGroup(3),)),))))
    sw.apply(FlowMod(1, "add", FlowRule(0, (), (ToGroup(1),))))
    with pytest.raises(AssertionError, match="in use"):
        sw.apply(GroupMod(1, "delete", ff))
    assert sw.forward(dict(tcp(), in_port=2)) == {1}
    sw.down_ports.add(1)
    assert sw.forward(dict(tcp(), in_port=2)) == set()
    sw.apply(ClearSwitch(1))
    assert not sw.flows and not sw.groups and sw.lookup(tcp()) is None


def fattree(policy="ecmp", **options):
    g = build("fattree", k=4)
    core = RoutingCore(policy=policy, **options)
    fab = FakeFabric(g)
    fab.apply(core.load_fabric(g))
    fab.apply(core.flush(0.0))
    return g, core, fab


def five(g, src, dst, sport, dport=5001):
    return (g.nodes[src]["ip"], g.nodes[dst]["ip"], 6, sport, dport)


def fields(key):
    return {"ip_proto": key[2], "tcp_src": key[3], "tcp_dst": key[4]}


def same_as_core(g, core, keys=()):
    for a, b in itertools.permutations(hosts(g), 2):
        src, dst = core.hosts[g.nodes[a]["mac"]], core.hosts[g.nodes[b]["mac"]]
        for key in (None,) + tuple(keys):
            got = installed_paths(core.installed, core.links, core.ports, src, dst, key)
            assert got == core.paths(src.mac, dst.mac, key), (a, b, key)
            assert got, (a, b, key)


@pytest.mark.parametrize("policy", ["ecmp", "shortest"])
def test_installed_paths_is_what_the_core_answers(policy):
    g, core, fab = fattree(policy)
    same_as_core(g, core, keys=[(0, 0, 6, 40000, 5001)])
    # A failed link the core has heard of but not yet rerouted around: FAST_FAILOVER buckets
    # watch the dead port. Then after the flush.
    e1, a1 = g.nodes["e1"]["dpid"], g.nodes["a1"]["dpid"]
    core.port_status(e1, g.edges["e1", "a1"]["ports"]["e1"], False, 1.0)
    core.port_status(a1, g.edges["e1", "a1"]["ports"]["a1"], False, 1.0)
    same_as_core(g, core)
    fab.apply(core.flush(1.0))
    same_as_core(g, core)
    src, dst = core.hosts[g.nodes["h1"]["mac"]], core.hosts[g.nodes["h16"]["mac"]]
    assert installed_paths(core.installed, core.links, core.ports, None, dst) == []
    with pytest.raises(ValueError):
        installed_paths(core.installed, core.links, core.ports, src, dst, (1, 2))


def test_hashed_path_is_one_of_the_paths_and_the_cores_view_agrees():
    g, core, fab = fattree()
    names = {g.nodes[n]["dpid"]: n for n in g if g.nodes[n]["role"] != "host"}
    for a, b in [("h1", "h16"), ("h3", "h9"), ("h5", "h6"), ("h2", "h4")]:
        for sport in range(40000, 40010):
            key = five(g, a, b, sport)
            path = fab.path(a, b, **fields(key))
            assert path in fab.paths(a, b, **fields(key))
            (mine,) = installed_paths(core.installed, core.links, core.ports,
                                      core.hosts[g.nodes[a]["mac"]],
                                      core.hosts[g.nodes[b]["mac"]], key, hashed=True)
            assert tuple(names[d] for d in mine) == path


def test_ecmp_hash_collisions_on_an_edge_uplink():
    g, core, fab = fattree()
    a, b = "h1", "h2"  # both on e1
    dst = next(h for h in hosts(g) if g.nodes[h]["pod"] != g.nodes[a]["pod"])
    e1 = fab.switch("e1")

    def uplink(src, sport):
        key = five(g, src, dst, sport)
        path = fab.path(src, dst, **fields(key))
        assert path[0] == "e1"
        return path[1]

    ports = range(40000, 40016)
    ups = {(src, p): uplink(src, p) for src in (a, b) for p in ports}
    assert set(ups.values()) == {n for n in g.neighbors("e1") if g.nodes[n]["role"] != "host"}
    same = [(p, q) for p, q in itertools.product(ports, ports) if ups[(a, p)] == ups[(b, q)]]
    other = [(p, q) for p, q in itertools.product(ports, ports) if ups[(a, p)] != ups[(b, q)]]
    assert same and other
    p, q = same[0]
    # Two TCP flows from different hosts share e1's uplink because OVS's hash says so: the
    # same bucket of e1's SELECT group, seen through the group directly.
    rule = e1.lookup(dict(fab.packet(a, dst, **fields(five(g, a, dst, p))), in_port=1))
    (group_action,) = rule.actions
    group = e1.groups[group_action.group_id]
    picked = {src: select_bucket(group, fab.packet(src, dst, **fields(five(g, src, dst, s))))
              for src, s in ((a, p), (b, q))}
    assert picked[a] is picked[b]
    port = dict((bk, prt) for bk, (_, prt) in zip(group.buckets, e1.bucket_ports(group.group_id)))
    assert g.edges["e1", ups[(a, p)]]["ports"]["e1"] == port[picked[a]]
    p, q = other[0]
    assert fab.path(a, dst, **fields(five(g, a, dst, p)))[1] != fab.path(
        b, dst, **fields(five(g, b, dst, q)))[1]


def test_the_vectorized_tcp_hash_equals_the_packet_hash():
    import ipaddress

    from controllers.tables import ovs_dp_hash_tcp4
    rng = random.Random(4)
    cases = [(rng.getrandbits(32), rng.getrandbits(32), rng.randrange(65536),
              rng.randrange(65536)) for _ in range(500)]
    cases += [(1, 1, 7, 7), (0, 0, 0, 0)]   # zero blocks leave the state unmixed
    got = ovs_dp_hash_tcp4(*zip(*cases))
    for (s, d, sp, dp), h in zip(cases, got):
        pkt = {"eth_type": 0x0800, "ipv4_src": str(ipaddress.IPv4Address(s)),
               "ipv4_dst": str(ipaddress.IPv4Address(d)), "ip_proto": 6, "tcp_src": sp,
               "tcp_dst": dp}
        assert int(h) == ovs_dp_hash(pkt)


def test_select_index_picks_the_bucket_select_bucket_picks_also_on_the_fallback():
    from controllers.rules import Bucket, Group, Output
    from controllers.tables import select_index
    rng = random.Random(9)
    for weights in ((1, 1, 1), (1, 3), (1, 100, 100, 100), (0, 5, 7)):
        group = Group(1, "select", tuple(Bucket((Output(i + 1),), weight=w)
                                         for i, w in enumerate(weights)))
        for _ in range(200):
            pkt = {"eth_type": 0x0800, "ipv4_src": f"10.0.0.{rng.randrange(1, 255)}",
                   "ipv4_dst": f"10.0.1.{rng.randrange(1, 255)}", "ip_proto": 6,
                   "tcp_src": rng.randrange(65536), "tcp_dst": 5001}
            i = select_index(weights, ovs_dp_hash(pkt), lambda: ovs_symmetric_l4_hash(pkt))
            assert group.buckets[i] is select_bucket(group, pkt)
