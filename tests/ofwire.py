"""OpenFlow 1.3 messages as a switch sends them, built byte by byte, and seeded mutations.

For the tests of controllers/ofguard.py and of the controller under hostile switches
(tests/test_hostile.py): :func:`valid_messages` gives one well-formed message of every
structure the guard walks, :func:`cve_cases` the zero-length elements Ryu 4.34's parser
loops on (CVE-2024-28732, faucetsdn/ryu #188-#196), :func:`mutate` a message changed by a
seeded RNG the ways a fuzzer would (a length, a type, a byte, cut short, grown).
No Ryu here: the bytes follow the OpenFlow 1.3.5 specification.
"""

import struct

VERSION = 4
OFPT = {"hello": 0, "error": 1, "echo_request": 2, "echo_reply": 3, "experimenter": 4,
        "features_request": 5, "features_reply": 6, "get_config_reply": 8, "packet_in": 10,
        "flow_removed": 11, "port_status": 12, "flow_mod": 14, "multipart_request": 18,
        "multipart_reply": 19, "barrier_request": 20, "barrier_reply": 21,
        "queue_get_config_reply": 23, "role_reply": 25, "get_async_reply": 27}


def header(mtype, body, xid=0, version=VERSION, length=None):
    name = OFPT.get(mtype, mtype)
    return struct.pack("!BBHI", version, name, 8 + len(body) if length is None else length,
                       xid) + body


def pad8(b):
    return b + b"\0" * (-len(b) % 8)


# -- parts -------------------------------------------------------------------------------
def oxm(field, value, size):
    return struct.pack("!HBB", 0x8000, field << 1, size) + value.to_bytes(size, "big")


def match(*fields, length=None):
    body = b"".join(fields)
    return pad8(struct.pack("!HH", 1, 4 + len(body) if length is None else length) + body)


def in_port_match(port):
    return match(oxm(0, port, 4))


def action_output(port, length=16):
    return struct.pack("!HHIH6x", 0, length, port, 0xFFFF)


def action_group(group_id, length=8):
    return struct.pack("!HHI", 22, length, group_id)


def action_set_field_eth_dst(mac=b"\x02\0\0\0\0\x01"):
    return pad8(struct.pack("!HH", 25, 16) + struct.pack("!HBB", 0x8000, 3 << 1, 6) + mac)


def nicira_ct(actions=b"", length=None):
    body = struct.pack("!HH4sHB3xH", 35, 0, b"\0" * 4, 0, 0xFF, 0) + actions
    return struct.pack("!HHI", 0xFFFF, 8 + len(body) if length is None else length,
                       0x2320) + body


def instruction_actions(actions, itype=4, length=None):
    return struct.pack("!HH4x", itype, 8 + len(actions) if length is None else length) + \
        actions


def instruction_goto(table, length=8):
    return struct.pack("!HHB3x", 1, length, table)


def bucket(actions, length=None, weight=1):
    return struct.pack("!HHII4x", 16 + len(actions) if length is None else length, weight,
                       0xFFFFFFFF, 0xFFFFFFFF) + actions


def port(no, name=b"eth", hw=b"\x02\0\0\0\0\x01", state=0):
    return struct.pack("!I4x6s2x16sIIIIIIII", no, hw, name.ljust(16, b"\0")[:16], 0, state,
                       0, 0, 0, 0, 10**6, 10**6)


def multipart(mptype, body, flags=0, xid=0):
    return header("multipart_reply", struct.pack("!HH4x", mptype, flags) + body, xid)


def flow_stats_entry(match_bytes, instructions, length=None):
    body = struct.pack("!BxIIHHHH4xQQQ", 0, 1, 0, 100, 0, 0, 0, 0xA1F0000000000001, 10,
                       1000) + match_bytes + instructions
    return struct.pack("!H", 2 + len(body) if length is None else length) + body


def group_desc_entry(buckets, length=None):
    return struct.pack("!HBxI", 8 + len(buckets) if length is None else length, 1, 7) + buckets


def table_features_entry(props, length=None):
    return struct.pack("!HB5x32sQQII", 64 + len(props) if length is None else length, 0,
                       b"t0".ljust(32, b"\0"), 0, 0, 0, 1000) + props


def table_prop(ptype, body, length=None):
    return pad8(struct.pack("!HH", ptype, 4 + len(body) if length is None else length) + body)


def meter_config_entry(bands, length=None):
    return struct.pack("!HHI", 8 + len(bands) if length is None else length, 1, 1) + bands


def meter_band(length=16):
    return struct.pack("!HHII4x", 1, length, 1000, 10)


def packet_queue(props, length=None):
    return struct.pack("!IIH6x", 1, 1, 16 + len(props) if length is None else length) + props


def queue_prop(length=16):
    return struct.pack("!HH4xH6x", 1, length, 500)


def hello_elem_bitmap(length=8):
    return struct.pack("!HHI", 1, length, 1 << VERSION)


# -- messages ----------------------------------------------------------------------------
def hello(xid=0, elements=None):
    return header("hello", hello_elem_bitmap() if elements is None else elements, xid)


def features_reply(dpid, xid=0):
    return header("features_reply", struct.pack("!QIBB2xII", dpid, 256, 254, 0, 0x4F, 0), xid)


def echo_reply(data, xid):
    return header("echo_reply", data, xid)


def barrier_reply(xid):
    return header("barrier_reply", b"", xid)


def port_desc_reply(ports, xid=0):
    return multipart(13, b"".join(port(p) for p in ports), xid=xid)


def port_stats_reply(ports, xid=0, tx_bytes=0):
    rows = b"".join(struct.pack("!I4xQQQQQQQQQQQQII", p, 0, 0, 0, tx_bytes, 0, 0, 0, 0, 0, 0,
                                0, 0, 1, 0) for p in ports)
    return multipart(4, rows, xid=xid)


def flow_stats_reply(xid=0, entries=None):
    if entries is None:
        entries = flow_stats_entry(in_port_match(1), instruction_actions(action_output(2)))
    return multipart(1, entries, xid=xid)


def packet_in(data, in_port=1, xid=0):
    return header("packet_in", struct.pack("!IHBBQ", 0xFFFFFFFF, len(data), 0, 0, 0) +
                  in_port_match(in_port) + b"\0\0" + data, xid)


def port_status(no, reason=2, state=0):
    return header("port_status", struct.pack("!B7x", reason) + port(no, state=state))


def valid_messages():
    """``{name: bytes}``: one well-formed message of every structure the guard walks."""
    eth = b"\xff" * 6 + b"\x02\0\0\0\0\x02" + b"\x08\x06" + b"\0" * 28
    return {
        "hello": hello(),
        "hello_bare": header("hello", b""),
        "error": header("error", struct.pack("!HH", 1, 2) + b"\0" * 16),
        "error_experimenter": header("error", struct.pack("!HHI", 0xFFFF, 1, 0x2320)),
        "echo_request": header("echo_request", b"ping"),
        "echo_reply": echo_reply(b"pong", 5),
        "experimenter": header("experimenter", struct.pack("!II", 0x2320, 7) + b"data"),
        # (With properties Ryu 4.34 cannot parse one: OFPBundleProp is not defined in 1.3.)
        "bundle_ctrl": header("experimenter", struct.pack("!IIIHH", 0x4F4E4600, 2300, 1, 0,
                                                          0)),
        "features_reply": features_reply(0xABC),
        "get_config_reply": header("get_config_reply", struct.pack("!HH", 0, 128)),
        "packet_in": packet_in(eth),
        "flow_removed": header("flow_removed", struct.pack("!QHBBIIHHQQ", 1, 100, 0, 0, 1, 0,
                                                           0, 0, 1, 64) + in_port_match(1)),
        "port_status": port_status(3),
        "flow_mod": header("flow_mod", struct.pack("!QQBBHHHIIIH2x", 1, 0, 0, 0, 0, 0, 100,
                                                   0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0) +
                           in_port_match(1) +
                           instruction_actions(action_output(2) + action_group(5)) +
                           instruction_goto(1)),
        "desc_reply": multipart(0, b"\0" * 1056),
        "flow_stats_reply": flow_stats_reply(entries=flow_stats_entry(
            match(oxm(0, 1, 4), oxm(5, 0x0800, 2)),
            instruction_actions(action_set_field_eth_dst() + action_output(2)) +
            instruction_actions(nicira_ct(action_output(3)), itype=3))),
        "aggregate_reply": multipart(2, b"\0" * 24),
        "table_stats_reply": multipart(3, b"\0" * 48),
        "port_stats_reply": port_stats_reply([1, 2]),
        "queue_stats_reply": multipart(5, b"\0" * 40),
        "group_stats_reply": multipart(6, struct.pack("!H2xII4xQQII", 56, 1, 0, 0, 0, 0, 0) +
                                       b"\0" * 16),
        "group_desc_reply": multipart(7, group_desc_entry(
            bucket(action_output(1)) + bucket(action_output(2) + action_group(3)))),
        "group_features_reply": multipart(8, b"\0" * 40),
        "meter_stats_reply": multipart(9, struct.pack("!IH6xIQQII", 1, 56, 0, 0, 0, 0, 0) +
                                       b"\0" * 16),
        "meter_config_reply": multipart(10, meter_config_entry(meter_band() + meter_band())),
        "meter_features_reply": multipart(11, b"\0" * 16),
        "table_features_reply": multipart(12, table_features_entry(
            table_prop(0, struct.pack("!HHHH", 1, 4, 4, 4)) +
            table_prop(2, b"\x01\x02") +
            table_prop(4, struct.pack("!HH", 0, 4)) +
            table_prop(8, struct.pack("!I", 0x80000004)))),
        "port_desc_reply": port_desc_reply([1, 2, 3]),
        "experimenter_reply": multipart(0xFFFF, struct.pack("!II", 0x2320, 1) + b"x"),
        "barrier_reply": barrier_reply(9),
        "queue_get_config_reply": header("queue_get_config_reply", struct.pack("!I4x", 1) +
                                         packet_queue(queue_prop() + queue_prop())),
        "role_reply": header("role_reply", struct.pack("!I4xQ", 2, 1)),
        "get_async_reply": header("get_async_reply", b"\0" * 24),
    }


# A set-field action of length 0 around a sound OXM (in_port = 1): Ryu advances by it.
ZERO_SET_FIELD = struct.pack("!HHII4x", 25, 0, 0x80000004, 1)


def cve_cases():
    """``{name: bytes}``: messages with one length-driven element of length zero (or
    another length that stalls Ryu 4.34's walk), one per loop of its parser."""
    out = {
        "hello_element": header("hello", struct.pack("!HH", 1, 0) + b"\0" * 4),
        "hello_padded_element": header("hello", hello_elem_bitmap(12) + b"\0" * 8),
        "flow_mod_instruction": header("flow_mod", struct.pack(
            "!QQBBHHHIIIH2x", 1, 0, 0, 0, 0, 0, 100, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0) +
            in_port_match(1) + instruction_actions(b"", itype=4, length=0)),
        "flow_stats_entry": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), b"", length=0)),
        "flow_stats_instruction": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), instruction_actions(action_output(1), length=0))),
        "instruction_action": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), instruction_actions(ZERO_SET_FIELD))),
        "experimenter_action": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), instruction_actions(struct.pack("!HHI", 0xFFFF, 0, 0x1234)))),
        "group_desc_entry": multipart(7, group_desc_entry(b"", length=0)),
        "group_bucket": multipart(7, group_desc_entry(bucket(b"", length=0))),
        "bucket_action": multipart(7, group_desc_entry(bucket(ZERO_SET_FIELD))),
        "group_stats_entry": multipart(6, struct.pack("!H2xII4xQQII", 0, 1, 0, 0, 0, 0, 0)),
        "meter_stats_entry": multipart(9, struct.pack("!IH6xIQQII", 1, 0, 0, 0, 0, 0, 0)),
        "meter_config_entry": multipart(10, meter_config_entry(b"", length=0)),
        "table_features_entry": multipart(12, table_features_entry(b"", length=0)),
        "table_features_property": multipart(12, table_features_entry(
            struct.pack("!HH", 2, 0) + b"\0" * 4)),
        "table_features_instruction_id": multipart(12, table_features_entry(
            table_prop(0, struct.pack("!HH", 1, 0)))),
        "table_features_action_id": multipart(12, table_features_entry(
            table_prop(4, struct.pack("!HH", 0, 0)))),
        "queue_config_queue": header("queue_get_config_reply", struct.pack("!I4x", 1) +
                                     packet_queue(b"", length=0)),
        "queue_config_property": header("queue_get_config_reply", struct.pack("!I4x", 1) +
                                        packet_queue(queue_prop(length=0))),
        "nicira_ct_action": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), instruction_actions(nicira_ct(ZERO_SET_FIELD)))),
        "nicira_controller2_property": flow_stats_reply(entries=flow_stats_entry(
            in_port_match(1), instruction_actions(struct.pack("!HHIH6x", 0xFFFF, 24, 0x2320,
                                                              37) +
                                                  struct.pack("!HH4x", 3, 0)))),
    }
    return out


# -- mutation ----------------------------------------------------------------------------
def mutate(msg, rnd):
    """One seeded mutation of ``msg``: a 16-bit field set to 0, 1, a neighbour or a huge
    value (most fields that matter are lengths), a byte flipped, the message cut short or
    grown, the header's length or type or version changed. The header's length is kept
    right unless that is the mutation, so most mutants reach the structure walks."""
    b = bytearray(msg)
    kind = rnd.randrange(8)
    if kind <= 2 and len(b) > 9:
        at = rnd.randrange(8, len(b) - 1)
        value = rnd.choice([0, 1, 2, 4, 7, 8, 0xFFFF, struct.unpack_from("!H", b, at)[0] + 8,
                            max(struct.unpack_from("!H", b, at)[0] - 8, 0)])
        struct.pack_into("!H", b, at, value & 0xFFFF)
    elif kind == 3 and len(b) > 8:
        b[rnd.randrange(8, len(b))] ^= 1 << rnd.randrange(8)
    elif kind == 4 and len(b) > 8:
        del b[rnd.randrange(8, len(b)):]
        struct.pack_into("!H", b, 2, len(b))
    elif kind == 5:
        b += bytes(rnd.randrange(256) for _ in range(rnd.choice([1, 4, 8, 16])))
        struct.pack_into("!H", b, 2, len(b))
    elif kind == 6:
        struct.pack_into("!H", b, 2, rnd.choice([0, 4, 7, len(b) - 1, len(b) + 1, 0xFFFF]))
    else:
        if rnd.random() < 0.5:
            b[1] = rnd.randrange(32)
        else:
            b[0] = rnd.choice([1, 3, 5, 6, 7, 0x7F])
    return bytes(b)
