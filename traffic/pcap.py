"""Per-flow packet reordering in captured traffic (pcap), for RoCEv2 and TCP.

Reads packets (a pcap file via scapy, or packets already in memory) and reports, per flow,
how many arrived out of order and how far. It never captures, sends or changes traffic.

Definitions
-----------
A flow is a RoCEv2 queue pair, ``(src IP, dst IP, destination QP)`` with the BTH PSN as its
sequence (24 bits), or a TCP connection direction, ``(src IP, src port, dst IP, dst port)``
with the sequence number of segments that carry data (32 bits). Sequences are unwrapped with
serial-number arithmetic (RFC 1982), so wrap-around is not reordering.

- A packet whose sequence was already seen is a **duplicate** (a retransmission), not
  reordered.
- Otherwise a packet whose sequence is lower than the highest seen so far in its flow is
  **reordered** (RFC 4737's reordered packet).
- Its **extent** (RFC 4737, section 4.2) is the number of packets of the flow between the
  first one that arrived with a higher sequence and it: ``i - j``, with ``i`` its arrival
  index and ``j`` the earliest arrival index with a higher sequence.
- Its **displacement** is the highest sequence seen minus its own: PSNs (packets) for RoCE,
  bytes for TCP.
"""

from bisect import bisect_right

from scapy.contrib.roce import BTH
from scapy.layers.inet import IP, TCP
from scapy.utils import PcapReader

SEQ_BITS = {"roce": 24, "tcp": 32}


def _unwrap(bits, previous, value):
    """``value`` (mod 2**bits) as the integer nearest to ``previous``."""
    span = 1 << bits
    delta = (value - previous) % span
    if delta >= span // 2:
        delta -= span
    return previous + delta


def flow_key(pkt):
    """``(protocol, key, sequence)`` of a RoCEv2 or TCP data packet, else None."""
    if IP not in pkt:
        return None
    ip = pkt[IP]
    if BTH in pkt:
        return "roce", (ip.src, ip.dst, pkt[BTH].dqpn), pkt[BTH].psn
    if TCP in pkt and len(pkt[TCP].payload) > 0:
        tcp = pkt[TCP]
        return "tcp", (ip.src, tcp.sport, ip.dst, tcp.dport), tcp.seq
    return None


class _FlowState:
    def __init__(self, protocol, key, first):
        self.protocol, self.key = protocol, key
        self.last = first              # unwrapping reference
        self.seen = set()
        self.prefix_max = []           # highest sequence after each arrival
        self.reordered = self.duplicates = 0
        self.max_extent = self.max_displacement = 0

    def add(self, raw_seq):
        seq = self.last = _unwrap(SEQ_BITS[self.protocol], self.last, raw_seq)
        top = self.prefix_max[-1] if self.prefix_max else None
        if seq in self.seen:
            self.duplicates += 1
        elif top is not None and seq < top:
            self.reordered += 1
            first_higher = bisect_right(self.prefix_max, seq)
            self.max_extent = max(self.max_extent, len(self.prefix_max) - first_higher)
            self.max_displacement = max(self.max_displacement, top - seq)
        self.seen.add(seq)
        self.prefix_max.append(seq if top is None else max(top, seq))

    def report(self):
        packets = len(self.prefix_max)
        unique = packets - self.duplicates
        return {"protocol": self.protocol, "flow": self.key, "packets": packets,
                "duplicates": self.duplicates, "reordered": self.reordered,
                "reorder_ratio": self.reordered / unique if unique else 0.0,
                "max_extent": self.max_extent, "max_displacement": self.max_displacement}


def reordering(source):
    """Reordering per flow of a capture.

    Parameters
    ----------
    source : str, path-like or iterable of scapy packets
        A pcap file, or packets in arrival order.

    Returns
    -------
    list of dict
        One per flow in order of first packet: ``protocol`` (``"roce"``/``"tcp"``),
        ``flow`` (the key tuple), ``packets``, ``duplicates``, ``reordered``,
        ``reorder_ratio`` (reordered / non-duplicate packets), ``max_extent`` (packets)
        and ``max_displacement`` (PSNs or bytes). Other packets are ignored.
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        with PcapReader(str(source)) as packets:
            return _analyse(packets)
    return _analyse(source)


def _analyse(packets):
    flows = {}
    for pkt in packets:
        found = flow_key(pkt)
        if found is None:
            continue
        protocol, key, seq = found
        state = flows.get((protocol, key))
        if state is None:
            state = flows[(protocol, key)] = _FlowState(protocol, key, seq)
        state.add(seq)
    return [s.report() for s in flows.values()]
