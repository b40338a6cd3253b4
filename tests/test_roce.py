"""RoCEv2 packet building and per-flow reordering analysis of synthetic captures."""

import pytest
from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from topologies import build
from traffic.pcap import reordering
from traffic.roce import (
    PSN_MASK, ROCE_UDP_PORT, SEND_OPCODES, fabric_packets, packet_count, qpn, roce_packets,
    udp_sport)
from traffic.schedule import Flow


def wire(packets):
    """Packets as a capture would see them: built to bytes and parsed again."""
    return [Ether(bytes(p)) for p in packets]


def test_roce_packets_have_port_4791_a_bth_and_increasing_psn():
    flow = Flow("f1", "h1", "h2", 5000)
    pkts = wire(roce_packets(flow, "10.0.0.1", "10.0.0.2", mtu=1024, psn0=100))
    assert len(pkts) == packet_count(5000, 1024) == 5
    assert all(p[UDP].dport == ROCE_UDP_PORT and BTH in p for p in pkts)
    assert [p[BTH].psn for p in pkts] == [100, 101, 102, 103, 104]
    assert [p[BTH].opcode for p in pkts] == [SEND_OPCODES["FIRST"]] + \
        [SEND_OPCODES["MIDDLE"]] * 3 + [SEND_OPCODES["LAST"]]
    assert [p[BTH].ackreq for p in pkts] == [0, 0, 0, 0, 1]
    assert sum(len(p[Raw].load) - p[BTH].padcount for p in pkts) == 5000
    assert len({p[UDP].sport for p in pkts}) == 1
    assert {p[BTH].dqpn for p in pkts} == {qpn("f1/dst")}
    assert all(p[BTH].icrc for p in pkts)
    (only,) = wire(roce_packets(Flow("f2", "h1", "h2", 10), "10.0.0.1", "10.0.0.2"))
    assert only[BTH].opcode == SEND_OPCODES["ONLY"] and only[BTH].padcount == 2


def test_psn_wraps_at_24_bits():
    pkts = wire(roce_packets(Flow("f", "h1", "h2", 3 * 256), "10.0.0.1", "10.0.0.2", mtu=256,
                             psn0=PSN_MASK))
    assert [p[BTH].psn for p in pkts] == [PSN_MASK, 0, 1]


def test_source_port_entropy_per_queue_pair():
    assert udp_sport(0x11, 0x22) == 0xC242          # Linux rdma_flow_label_to_udp_sport
    ports = {udp_sport(qpn(f"f{i}/src"), qpn(f"f{i}/dst")) for i in range(200)}
    assert all(0xC000 <= p <= 0xFFFF for p in ports)
    assert len(ports) > 190                          # different QPs, different 5-tuples
    flow = Flow("x", "h1", "h2", 100)
    a = next(roce_packets(flow, "10.0.0.1", "10.0.0.2", sqpn=5, dqpn=9))
    assert a[UDP].sport == udp_sport(5, 9) and a[BTH].dqpn == 9


def test_fabric_packets_use_the_hosts_addresses():
    g = build("leafspine", leaves=2, spines=1, hosts_per_leaf=2)
    p = next(fabric_packets(g, Flow("x", "h1", "h4", 100)))
    assert (p[IP].src, p[IP].dst) == (g.nodes["h1"]["ip"], g.nodes["h4"]["ip"])
    assert p[Ether].dst == g.nodes["h4"]["mac"]
    with pytest.raises(ValueError, match="mtu"):
        next(roce_packets(Flow("x", "h1", "h2", 1), "10.0.0.1", "10.0.0.2", mtu=1500))


def test_reordering_counts_a_known_roce_reorder(tmp_path):
    a = list(roce_packets(Flow("a", "h1", "h2", 8 * 256), "10.0.0.1", "10.0.0.2", mtu=256))
    b = list(roce_packets(Flow("b", "h3", "h2", 4 * 256), "10.0.0.3", "10.0.0.2", mtu=256,
                          psn0=PSN_MASK - 1))
    # a: PSN 3 arrives after 4, 5 and 6 (extent 3); PSN 0 is retransmitted at the end.
    order_a = [a[i] for i in (0, 1, 2, 4, 5, 6, 3, 7)] + [a[0]]
    arrivals = [order_a[0], b[0], *order_a[1:4], b[1], b[2], *order_a[4:], b[3]]
    path = tmp_path / "roce.pcap"
    wrpcap(str(path), arrivals)
    report = {r["flow"][0]: r for r in reordering(path)}
    ra, rb = report["10.0.0.1"], report["10.0.0.3"]
    assert (ra["protocol"], ra["packets"], ra["reordered"], ra["duplicates"]) == \
        ("roce", 9, 1, 1)
    assert ra["max_extent"] == 3 and ra["max_displacement"] == 3
    assert ra["reorder_ratio"] == pytest.approx(1 / 8)
    assert (rb["reordered"], rb["duplicates"], rb["packets"]) == (0, 0, 4)   # wrap is not


def test_reordering_counts_a_known_tcp_reorder(tmp_path):
    def seg(seq, size=100, sport=40000):
        return (Ether() / IP(src="10.0.0.1", dst="10.0.0.2")
                / TCP(sport=sport, dport=5001, seq=seq, flags="A") / Raw(bytes(size)))

    base = 2 ** 32 - 150                         # the stream wraps around 2**32
    seqs = [(base + k * 100) % 2 ** 32 for k in range(6)]
    arrivals = [seg(seqs[0]), seg(seqs[2]), seg(seqs[3]), seg(seqs[1]), seg(seqs[4]),
                Ether() / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=5001, dport=40000,
                                                                    flags="A"),
                seg(seqs[5]), seg(seqs[4]), seg(1, sport=40001)]
    path = tmp_path / "tcp.pcap"
    wrpcap(str(path), arrivals)
    report = reordering(str(path))
    assert len(report) == 2                       # pure ACKs carry no data
    main = report[0]
    assert main["flow"] == ("10.0.0.1", 40000, "10.0.0.2", 5001)
    assert (main["packets"], main["reordered"], main["duplicates"]) == (7, 1, 1)
    assert main["max_extent"] == 2 and main["max_displacement"] == 200
    assert reordering(arrivals) == report         # packets in memory work the same
