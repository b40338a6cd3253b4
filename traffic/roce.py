"""RoCEv2 packets for a flow, built with scapy, for packet-level tests and probes.

RoCEv2 carries InfiniBand transport over UDP: destination port 4791, then the Base Transport
Header (BTH: opcode, destination QP, 24-bit packet sequence number) from
``scapy.contrib.roce``, the payload and the ICRC. Real NICs put entropy in the UDP source
port so that ECMP spreads queue pairs (QPs) over paths; this module derives it the way Linux
does (``rdma_calc_flow_label`` and ``rdma_flow_label_to_udp_sport`` in
include/rdma/ib_verbs.h) from the two QP numbers, so one QP is one 5-tuple and different QPs
of a host pair usually hash differently.

This module only builds packets (lazily: a flow of many MB is many packets); it never sends
them, opens a socket or writes files (traffic/pcap.py reads captures).
"""

import zlib

from scapy.contrib.roce import BTH, opcode
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

ROCE_UDP_PORT = 4791
UDP_SPORT_MIN = 0xC000          # IB_ROCE_UDP_ENCAP_VALID_PORT_MIN
PSN_BITS = 24
PSN_MASK = (1 << PSN_BITS) - 1
FLOW_LABEL_MASK = 0xFFFFF
SEND_OPCODES = {part: opcode("RC", f"SEND_{part}")[0]
                for part in ("FIRST", "MIDDLE", "LAST", "ONLY")}
IB_MTUS = (256, 512, 1024, 2048, 4096)


def flow_label(lqpn, rqpn):
    """The 20-bit flow label Linux derives from a QP pair (``rdma_calc_flow_label``)."""
    v = (lqpn * rqpn) & 0xFFFFFFFFFFFFFFFF
    v ^= v >> 20
    v ^= v >> 40
    return v & FLOW_LABEL_MASK


def udp_sport(lqpn, rqpn):
    """UDP source port of a QP pair, in 0xC000..0xFFFF (``rdma_flow_label_to_udp_sport``).

    Examples
    --------
    >>> hex(udp_sport(0x11, 0x22))
    '0xc242'
    """
    fl = flow_label(lqpn, rqpn)
    low, high = fl & 0x03FFF, fl & 0xFC000
    low ^= high >> 14
    return (low | UDP_SPORT_MIN) & 0xFFFF


def qpn(name):
    """A deterministic 24-bit QP number for a flow id (never QP0 or QP1, which are special)."""
    return 2 + zlib.crc32(str(name).encode()) % (PSN_MASK - 1)


def packet_count(nbytes, mtu=1024):
    """Packets a message of ``nbytes`` needs at IB path MTU ``mtu`` (at least one)."""
    return max(1, -(-int(nbytes) // mtu))


def roce_packets(flow, src_ip, dst_ip, src_mac="02:00:00:00:00:01",
                 dst_mac="02:00:00:00:00:02", mtu=1024, sqpn=None, dqpn=None, psn0=0):
    """Yield the RoCEv2 packets of one flow sent as one RC SEND message.

    Parameters
    ----------
    flow : traffic.schedule.Flow
        Its ``bytes`` are the message; its ``id`` names the QPs unless given.
    src_ip, dst_ip, src_mac, dst_mac : str
    mtu : int
        InfiniBand path MTU (payload bytes per packet), one of :data:`IB_MTUS`.
    sqpn, dqpn : int, optional
        Source and destination QP numbers; default :func:`qpn` of ``"<id>/src"`` and
        ``"<id>/dst"``.
    psn0 : int
        PSN of the first packet; later packets count up modulo 2**24.

    Yields
    ------
    scapy.packet.Packet
        ``Ether / IP / UDP(sport=udp_sport(sqpn, dqpn), dport=4791) / BTH / Raw``; opcodes
        SEND_FIRST, SEND_MIDDLE..., SEND_LAST (SEND_ONLY for one packet); the last packet
        asks for an ACK; payloads are zeros padded to 4 bytes (BTH ``padcount``).

    Raises
    ------
    ValueError
        For an MTU that is not an IB MTU.
    """
    if mtu not in IB_MTUS:
        raise ValueError(f"mtu: must be one of {IB_MTUS}, got {mtu!r}")
    sqpn = qpn(f"{flow.id}/src") if sqpn is None else sqpn
    dqpn = qpn(f"{flow.id}/dst") if dqpn is None else dqpn
    sport = udp_sport(sqpn, dqpn)
    count = packet_count(flow.bytes, mtu)
    for k in range(count):
        size = min(mtu, flow.bytes - k * mtu)
        if count == 1:
            op = SEND_OPCODES["ONLY"]
        else:
            op = SEND_OPCODES["FIRST" if k == 0 else "LAST" if k == count - 1 else "MIDDLE"]
        pad = -size % 4
        yield (Ether(src=src_mac, dst=dst_mac) / IP(src=src_ip, dst=dst_ip, flags="DF")
               / UDP(sport=sport, dport=ROCE_UDP_PORT)
               / BTH(opcode=op, padcount=pad, dqpn=dqpn, ackreq=int(k == count - 1),
                     psn=(psn0 + k) & PSN_MASK)
               / Raw(bytes(size + pad)))


def fabric_packets(g, flow, **kwargs):
    """:func:`roce_packets` of ``flow`` with the IP and MAC addresses of its hosts in ``g``."""
    src, dst = g.nodes[flow.src], g.nodes[flow.dst]
    return roce_packets(flow, src["ip"], dst["ip"], src["mac"], dst["mac"], **kwargs)
