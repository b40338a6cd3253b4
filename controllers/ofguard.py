"""A validator of OpenFlow 1.3 messages from switches, run before Ryu parses them.

Ryu 4.34's parser walks every list of a message (hello elements, instructions, actions,
buckets, multipart bodies, table-feature properties, queue properties...) by the length each
element gives itself, and never checks it: an element of length zero is parsed again and
again, forever, in the green thread every switch and the REST API share (CVE-2024-28732,
faucetsdn/ryu issues #188-#196). :func:`check` walks the same structures by the same length
fields, as the OpenFlow 1.3.5 specification lays them out, and raises :class:`Malformed`
naming the first thing wrong: a length shorter than its element's header, a length past the
end of what contains it, a fixed-size element of another size, a type OpenFlow 1.3 does not
define (or Ryu cannot parse), nesting deeper than :data:`MAX_DEPTH`. A message it passes
is walked by Ryu's loops in as many steps as here, and each step moves forward.

Where Ryu advances by something other than the wire length (a fixed-size action or
instruction advances by its class's size, a hello element by its unpadded length), the walk
here advances the way Ryu does and requires the two to agree, so the walks cannot drift
apart. The launcher (controllers/launcher.py, :func:`install`) runs it on every message a
switch sends; a message it rejects closes that switch's connection and nothing else.

Pure: ``struct`` only, no Ryu, no sockets, no clock; tests/test_ofguard.py feeds it crafted
and mutated messages and checks Ryu's own parser on whatever it passes.
"""

import collections
import logging
import struct

VERSION = 0x04          # OpenFlow 1.3: the only version our apps speak
HEADER = 8
MAX_DEPTH = 4           # nested actions (Nicira ct inside ct ...): Ryu recurses per level

# Message types a switch may send in OpenFlow 1.3 (and FLOW_MOD, which Ryu parses too).
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
FEATURES_REPLY, GET_CONFIG_REPLY, PACKET_IN, FLOW_REMOVED, PORT_STATUS = 6, 8, 10, 11, 12
FLOW_MOD, MULTIPART_REPLY, BARRIER_REPLY, QUEUE_GET_CONFIG_REPLY = 14, 19, 21, 23
ROLE_REPLY, GET_ASYNC_REPLY = 25, 27

ONF_EXPERIMENTER = 0x4F4E4600
ONF_BUNDLE_CONTROL = 2300
NX_EXPERIMENTER = 0x00002320
NXAST_CT, NXAST_CONTROLLER2 = 35, 37
OXM_CLASS_EXPERIMENTER, OXM_CLASS_BASIC = 0xFFFF, 0x8000
# Payload bytes of the OpenFlow basic OXM fields 0..39 (in_port ... ipv6_exthdr), unmasked;
# Ryu refuses a known field of another size.
OXM_BASIC_SIZES = (4, 4, 8, 6, 6, 2, 2, 1, 1, 1, 1, 4, 4, 2, 2, 2, 2, 2, 2, 1, 1, 2, 4, 4, 6,
                   6, 16, 16, 4, 1, 1, 16, 6, 6, 4, 1, 1, 3, 8, 2)
# Versions Ryu 4.34 has a parser for (1.0, 1.2, 1.3, 1.4, 1.5): a hello of another version
# makes Ryu's receive loop raise.
HELLO_VERSIONS = (1, 3, 4, 5, 6)
METER_BANDS = (1, 2, 0xFFFF)

# Actions of a fixed size (type: bytes); Ryu advances by this size whatever the wire says.
FIXED_ACTIONS = {0: 16, 11: 8, 12: 8, 15: 8, 16: 8, 17: 8, 18: 8, 19: 8, 20: 8, 21: 8, 22: 8,
                 23: 8, 24: 8, 26: 8, 27: 8}
ACTION_SET_FIELD, ACTION_EXPERIMENTER = 25, 0xFFFF
# Instructions: goto-table, write-metadata and meter are fixed; write/apply/clear actions
# carry actions. Experimenter instructions Ryu cannot parse.
FIXED_INSTRUCTIONS = {1: 8, 2: 24, 6: 8}
ACTION_INSTRUCTIONS = (3, 4, 5)

LOG = logging.getLogger("fabric.ofguard")


class Malformed(ValueError):
    """A message that must not reach Ryu's parser; the text says what is wrong and where."""


def _u16(buf, at):
    return struct.unpack_from("!H", buf, at)[0]


def _need(cond, what):
    if not cond:
        raise Malformed(what)


def _elements(buf, start, end, header, what, length_at=2):
    """Offsets and lengths of the length-prefixed elements filling ``buf[start:end]``.

    Each element's length (a 16-bit field ``length_at`` bytes into it) must cover at least
    its ``header`` and end within ``end``; elements must fill the range exactly.
    """
    at = start
    while at < end:
        _need(end - at >= header, f"{what} at byte {at}: {end - at} bytes left, its header "
                                  f"needs {header}")
        length = _u16(buf, at + length_at)
        _need(length >= header, f"{what} at byte {at}: length {length} < {header}")
        _need(at + length <= end, f"{what} at byte {at}: length {length} runs past byte {end}")
        yield at, length
        at += length


def _fixed(start, end, size, what):
    _need((end - start) % size == 0, f"{what}: {end - start} bytes is not a whole number of "
                                     f"{size}-byte entries")


def _match(buf, at, end, what):
    """An ofp_match at ``at``; returns the offset after it (padded to 8, as Ryu skips)."""
    _need(end - at >= 4, f"{what}: no room for a match at byte {at}")
    mtype, length = struct.unpack_from("!HH", buf, at)
    _need(mtype == 1, f"{what}: match type {mtype} is not OXM")
    _need(length >= 4, f"{what}: match length {length} < 4")
    padded = at + (length + 7) // 8 * 8
    _need(padded <= end, f"{what}: match length {length} runs past byte {end}")
    oxm, stop = at + 4, at + length
    while oxm < stop:
        _need(stop - oxm >= 4, f"{what}: OXM header at byte {oxm} cut short")
        _oxm(buf, oxm, what)
        size = 4 + buf[oxm + 3]
        _need(oxm + size <= stop, f"{what}: OXM at byte {oxm} runs past its match")
        oxm += size
    return padded


def _oxm(buf, at, what):
    """An OXM header: a payload Ryu can read (not empty; a basic field of its own size)."""
    oxm_class, field, size = _u16(buf, at), buf[at + 2] >> 1, buf[at + 3]
    masked = buf[at + 2] & 1
    _need(size > (4 if oxm_class == OXM_CLASS_EXPERIMENTER else 0) and
          not (masked and (size < 2 or size % 2)),
          f"{what}: OXM at byte {at} has a payload of {size} bytes")
    if oxm_class == OXM_CLASS_BASIC and field < len(OXM_BASIC_SIZES):
        want = OXM_BASIC_SIZES[field] * (2 if masked else 1)
        _need(size == want, f"{what}: OXM field {field} at byte {at} of {size} bytes, must be "
                            f"{want}")


def _actions(buf, start, end, what, depth=0):
    _need(depth <= MAX_DEPTH, f"{what}: actions nested more than {MAX_DEPTH} deep")
    for at, length in _elements(buf, start, end, 8, f"{what} action"):
        atype = _u16(buf, at)
        _need(length % 8 == 0, f"{what} action at byte {at}: length {length} not a multiple "
                               f"of 8")
        if atype in FIXED_ACTIONS:
            _need(length == FIXED_ACTIONS[atype], f"{what} action type {atype} at byte {at}: "
                                                  f"length {length}, must be "
                                                  f"{FIXED_ACTIONS[atype]}")
        elif atype == ACTION_SET_FIELD:
            _need(length >= 8 and 8 + buf[at + 7] <= length,
                  f"{what} set-field at byte {at}: its OXM runs past the action")
            _oxm(buf, at + 4, f"{what} set-field")
        elif atype == ACTION_EXPERIMENTER:
            experimenter = struct.unpack_from("!I", buf, at + 4)[0]
            if experimenter == NX_EXPERIMENTER:
                _nicira(buf, at, length, what, depth)
        else:
            raise Malformed(f"{what}: unknown action type {atype} at byte {at}")


def _nicira(buf, at, length, what, depth):
    """A Nicira action. Ryu walks ct's nested actions by their lengths, checked here like
    any others; it walks controller2's properties by sizes of its own, which a property of
    length zero makes go backwards or nowhere: refused (our controller never installs one)."""
    _need(length >= 16, f"{what} Nicira action at byte {at}: length {length} < 16")
    subtype = _u16(buf, at + 8)
    if subtype == NXAST_CT:
        _need(length >= 24, f"{what} Nicira ct at byte {at}: length {length} < 24")
        _actions(buf, at + 24, at + length, f"{what} ct", depth + 1)
    elif subtype == NXAST_CONTROLLER2:
        raise Malformed(f"{what}: Nicira controller2 action at byte {at} refused")


def _instructions(buf, start, end, what):
    for at, length in _elements(buf, start, end, 4, f"{what} instruction"):
        itype = _u16(buf, at)
        if itype in FIXED_INSTRUCTIONS:
            _need(length == FIXED_INSTRUCTIONS[itype], f"{what} instruction type {itype} at "
                                                       f"byte {at}: length {length}, must be "
                                                       f"{FIXED_INSTRUCTIONS[itype]}")
        elif itype in ACTION_INSTRUCTIONS:
            _need(length >= 8, f"{what} instruction at byte {at}: length {length} < 8")
            _actions(buf, at + 8, at + length, f"{what} instruction")
        else:
            raise Malformed(f"{what}: unknown instruction type {itype} at byte {at}")


def _buckets(buf, start, end, what):
    for at, length in _elements(buf, start, end, 16, f"{what} bucket", length_at=0):
        _actions(buf, at + 16, at + length, f"{what} bucket")


def _props(buf, start, end, what):
    """Properties padded to 8 (Ryu's OFPPropBase.parse skips the padded length)."""
    at = start
    while at < end:
        _need(end - at >= 4, f"{what} property at byte {at}: header cut short")
        length = _u16(buf, at + 2)
        _need(length >= 4, f"{what} property at byte {at}: length {length} < 4")
        padded = (length + 7) // 8 * 8
        _need(at + padded <= end, f"{what} property at byte {at}: length {length} runs past "
                                  f"byte {end}")
        yield at, length
        at += padded


def _table_features(buf, at, length, what):
    for p, plen in _props(buf, at + 64, at + length, what):
        ptype = _u16(buf, p)
        if ptype in (0, 1, 4, 5, 6, 7):     # instruction and action ids: type, length
            for _ in _elements(buf, p + 4, p + plen, 4, f"{what} id"):
                pass
        elif ptype in (8, 10, 12, 13, 14, 15):  # OXM ids: 4 bytes, 8 for experimenter ones
            oxm = p + 4
            while oxm < p + plen:
                size = 8 if _u16(buf, oxm) == OXM_CLASS_EXPERIMENTER else 4
                _need(oxm + size <= p + plen, f"{what} OXM id at byte {oxm} cut short")
                oxm += size


def _multipart(buf, end):
    _need(end >= 16, f"multipart reply of {end} bytes < 16")
    mtype = _u16(buf, 8)
    body = 16
    single = {0: 1056, 2: 24, 8: 40, 11: 16}   # desc, aggregate, group/meter features
    fixed = {3: 24, 4: 112, 5: 40, 13: 64}     # table, port, queue stats, port desc
    what = f"multipart reply type {mtype}"
    if mtype in single:
        _need(end - body == single[mtype], f"{what}: body of {end - body} bytes, must be "
                                           f"{single[mtype]}")
    elif mtype in fixed:
        _fixed(body, end, fixed[mtype], what)
    elif mtype == 1:        # flow stats: 48 bytes, match, instructions
        for at, length in _elements(buf, body, end, 56, f"{what} entry", length_at=0):
            _instructions(buf, _match(buf, at + 48, at + length, what), at + length, what)
    elif mtype in (6, 9):   # group and meter stats: 40 bytes, then 16-byte counters
        for at, length in _elements(buf, body, end, 40, f"{what} entry",
                                    length_at=0 if mtype == 6 else 4):
            _fixed(at + 40, at + length, 16, f"{what} entry at byte {at}")
    elif mtype == 7:        # group desc: 8 bytes, then buckets
        for at, length in _elements(buf, body, end, 8, f"{what} entry", length_at=0):
            _buckets(buf, at + 8, at + length, what)
    elif mtype == 10:       # meter config: 8 bytes, then bands of 16
        for at, length in _elements(buf, body, end, 8, f"{what} entry", length_at=0):
            for b, blen in _elements(buf, at + 8, at + length, 16, f"{what} band"):
                _need(blen == 16, f"{what} band at byte {b}: length {blen}, must be 16")
                _need(_u16(buf, b) in METER_BANDS, f"{what} band at byte {b}: unknown type "
                                                   f"{_u16(buf, b)}")
    elif mtype == 12:       # table features: 64 bytes, then properties
        for at, length in _elements(buf, body, end, 64, f"{what} entry", length_at=0):
            _table_features(buf, at, length, what)
    elif mtype == 0xFFFF:
        # Ryu reads an experimenter header (8 bytes) at every 16 bytes of the body.
        _need(end - body >= 8 and (end - body) % 16 in (0, 8, 9, 10, 11, 12, 13, 14, 15),
              f"{what}: experimenter body of {end - body} bytes")
    else:
        raise Malformed(f"unknown multipart reply type {mtype}")


def _queues(buf, end):
    _need(end >= 16, f"queue config reply of {end} bytes < 16")
    for at, length in _elements(buf, 16, end, 16, "packet queue", length_at=8):
        for p, plen in _elements(buf, at + 16, at + length, 8, "queue property"):
            prop = _u16(buf, p)
            _need(prop in (1, 2, 0xFFFF), f"queue property type {prop} at byte {p} unknown")
            _need(plen >= 16, f"queue property at byte {p}: length {plen} < 16")


def _hello(buf, end):
    # Ryu steps by each element's unpadded length: a padded element's padding would be read
    # as an element of length zero, so the walk here steps the same way.
    for _ in _elements(buf, HEADER, end, 4, "hello element"):
        pass


# Smallest length of each message type; None: walked by a function of its own.
MINIMUM = {HELLO: None, ERROR: 12, ECHO_REQUEST: 8, ECHO_REPLY: 8, EXPERIMENTER: 16,
           FEATURES_REPLY: 32, GET_CONFIG_REPLY: 12, PACKET_IN: 34, FLOW_REMOVED: 56,
           PORT_STATUS: 80, FLOW_MOD: 56, MULTIPART_REPLY: None, BARRIER_REPLY: 8,
           QUEUE_GET_CONFIG_REPLY: None, ROLE_REPLY: 24, GET_ASYNC_REPLY: 32}


def check(buf):
    """Raise :class:`Malformed` unless ``buf`` is one well-formed OpenFlow 1.3 message that
    a switch may send (a HELLO of any version, whose elements are walked the same way).

    Parameters
    ----------
    buf : bytes-like
        Exactly one message, header included.

    Raises
    ------
    Malformed
        Naming the first thing wrong, e.g. ``"flow stats reply instruction at byte 104:
        length 0 < 4"``.
    """
    buf = bytes(buf)
    _need(len(buf) >= HEADER, f"{len(buf)} bytes is shorter than an OpenFlow header")
    version, mtype, length = struct.unpack_from("!BBH", buf)
    _need(length == len(buf), f"header length {length}, message of {len(buf)} bytes")
    if mtype == HELLO:
        _need(version in HELLO_VERSIONS, f"hello of OpenFlow version {version:#x}, which Ryu "
                                         f"cannot parse")
        _hello(buf, length)
        return
    _need(version == VERSION, f"message type {mtype} of OpenFlow version {version:#x}, "
                              f"not 1.3")
    _need(mtype in MINIMUM, f"message type {mtype} is not one a switch sends")
    least = MINIMUM[mtype]
    _need(least is None or length >= least, f"message type {mtype} of {length} bytes < "
                                            f"{least}")
    try:
        if mtype in (PACKET_IN, FLOW_REMOVED, FLOW_MOD):
            after = _match(buf, 24 if mtype == PACKET_IN else 48, length, f"type {mtype}")
            if mtype == PACKET_IN:
                _need(after + 2 <= length, "packet-in: no room for the padding after its match")
            elif mtype == FLOW_MOD:
                _instructions(buf, after, length, "flow mod")
        elif mtype == MULTIPART_REPLY:
            _multipart(buf, length)
        elif mtype == QUEUE_GET_CONFIG_REPLY:
            _queues(buf, length)
        elif mtype == ERROR and _u16(buf, 8) == 0xFFFF:
            _need(length >= 16, f"experimenter error of {length} bytes < 16")
        elif mtype == EXPERIMENTER:
            experimenter, exp_type = struct.unpack_from("!II", buf, 8)
            if (experimenter, exp_type) == (ONF_EXPERIMENTER, ONF_BUNDLE_CONTROL):
                _need(length >= 24, f"bundle control of {length} bytes < 24")
                for _ in _props(buf, 24, length, "bundle control"):
                    pass
    except struct.error:  # a field read past the end: a length check above is missing
        raise Malformed(f"message type {mtype}: a field runs past its end") from None


Verdict = collections.namedtuple("Verdict", "ok reason")


class Guard:
    """Counts and logs what :func:`check` rejected; the launcher installs one per process.

    Attributes
    ----------
    counters : collections.Counter
        ``messages_checked``, ``messages_malformed``, ``connections_closed``.
    last : list
        The newest rejections, ``(peer, reason)``, at most :attr:`KEEP`.
    """

    KEEP = 20

    def __init__(self):
        self.counters = collections.Counter()
        self.last = collections.deque(maxlen=self.KEEP)

    def verdict(self, buf, peer):
        """Check one message from ``peer`` (a printable address); log a rejection."""
        self.counters["messages_checked"] += 1
        try:
            check(buf)
        except Malformed as e:
            self.counters["messages_malformed"] += 1
            self.last.append((str(peer), str(e)))
            LOG.warning("closing the OpenFlow connection of %s: malformed message: %s",
                        peer, e)
            return Verdict(False, str(e))
        return Verdict(True, None)

    def status(self):
        return {"messages_checked": self.counters["messages_checked"],
                "messages_malformed": self.counters["messages_malformed"],
                "connections_closed": self.counters["connections_closed"],
                "last_rejected": [{"peer": p, "reason": r} for p, r in self.last]}


GUARD = Guard()
