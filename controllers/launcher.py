"""The one way to start our controller: ``ryu-manager`` with the Python 3.11 shim applied.

Ryu 4.34 imports ``eventlet.wsgi.ALREADY_HANDLED``, which eventlet 0.33 no longer defines; it
must exist before anything imports ryu. Every ryu-manager flag keeps working
(``--ofp-tcp-listen-port``, ``--config-file``, ``--default-log-level``, ``--wsapi-port``...).
With no application named, our app (controllers.app) is run; the REST API binds to
127.0.0.1 unless ``--wsapi-host`` says otherwise.

Two defenses are installed before Ryu runs, whatever the app:

- every OpenFlow message a switch sends is checked by controllers/ofguard.py before Ryu's
  parser sees it (Ryu 4.34 loops forever on elements of length zero, CVE-2024-28732): a
  malformed one is logged and closes that switch's connection, no other;
- echo liveness: the controller sends an echo request every ``--echo-request-interval``
  seconds (default :data:`ECHO_INTERVAL_S`) and drops a switch that leaves more than
  ``--maximum-unreplied-echo-requests`` of them unanswered (default :data:`ECHO_MISSES`),
  so a switch that hangs without closing its connection is noticed (within about 35 s).
  Ryu reads both only from a config file; the launcher takes them on the command line too.
  An echo reply is acknowledged as it is read, not once Ryu's handler gets to it: the switch
  answered, however far behind the apps are.

Usage: python -m controllers.launcher [ryu-manager options] [apps...]
"""

import logging
import sys

DEFAULT_APP = "controllers.app"
# A dead switch is noticed after about ECHO_INTERVAL_S * (ECHO_MISSES + 1) seconds. Generous:
# under a saturated emulation the controller reads its replies late, and a switch wrongly
# dropped is wiped and rebuilt (switches wait 60 s for the controller, fabric/emulate.py).
ECHO_INTERVAL_S = 5.0
ECHO_MISSES = 6
OFPT_ECHO_REPLY = 3

LOG = logging.getLogger("fabric.ofguard")


def apply_shim():
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()


def install_guard():
    """Check every message from a switch with controllers.ofguard before Ryu parses it.

    Wraps ``ryu.ofproto.ofproto_parser.msg``, which Ryu's receive loop calls for each message
    it has read whole. A rejected message closes the connection: the datapath goes to
    DEAD_DISPATCHER (the app sees the switch leave), its writes are shut, and the rest of
    what it sent is read and dropped unparsed until the receive loop ends and closes the
    socket. Returns the guard (controllers.ofguard.GUARD) whose counters status reports.
    """
    from ryu.ofproto import ofproto_parser

    from controllers import ofguard
    parse = ofproto_parser.msg
    if getattr(parse, "guarded", False):
        return ofguard.GUARD

    def guarded_msg(datapath, version, msg_type, msg_len, xid, buf):
        if getattr(datapath, "ofguard_closed", False):
            return None
        peer = _peer(datapath)
        if not ofguard.GUARD.verdict(buf, peer).ok:
            datapath.ofguard_closed = True
            ofguard.GUARD.counters["connections_closed"] += 1
            try:
                datapath.close()
            except Exception:  # noqa: BLE001 - a half-dead socket: the loop ends anyway
                LOG.exception("closing %s failed", peer)
            return None
        if msg_type == OFPT_ECHO_REPLY:
            ack = getattr(datapath, "acknowledge_echo_reply", None)
            if ack is not None:
                ack(xid)
        return parse(datapath, version, msg_type, msg_len, xid, buf)

    guarded_msg.guarded = True
    ofproto_parser.msg = guarded_msg
    return ofguard.GUARD


def _peer(datapath):
    address = getattr(datapath, "address", None)
    dpid = getattr(datapath, "id", None)
    where = "%s:%s" % tuple(address[:2]) if address else "?"
    return where if dpid is None else "%s (dpid %016x)" % (where, dpid)


# Ryu's config-file-only echo options, taken from the command line: flag -> (option, type,
# smallest value).
ECHO_OPTIONS = {"--echo-request-interval": ("echo_request_interval", float, 0.01),
                "--maximum-unreplied-echo-requests": ("maximum_unreplied_echo_requests", int, 0)}


class LauncherError(ValueError):
    """A bad launcher option: one line for the user."""


def take_echo_options(argv):
    """``(argv without the echo options, {option: value})``; raises LauncherError on a bad
    value. ``--maximum-unreplied-echo-requests 0`` turns echo liveness off."""
    rest, values, argv = [], {}, list(argv)
    while argv:
        a = argv.pop(0)
        flag, eq, value = a.partition("=")
        if flag not in ECHO_OPTIONS:
            rest.append(a)
            continue
        if not eq:
            if not argv:
                raise LauncherError(f"{flag} needs a value")
            value = argv.pop(0)
        name, kind, least = ECHO_OPTIONS[flag]
        try:
            values[name] = kind(value)
        except ValueError:
            values[name] = None
        if values[name] is None or values[name] < least:
            raise LauncherError(f"{flag} must be a {kind.__name__} >= {least}, got {value!r}")
    return rest, values


def apply_echo_options(values):
    """Our echo defaults, and any value given on the command line over everything."""
    from ryu import cfg
    import ryu.controller.controller  # noqa: F401 - registers the echo options
    cfg.CONF.set_default("echo_request_interval", ECHO_INTERVAL_S)
    cfg.CONF.set_default("maximum_unreplied_echo_requests", ECHO_MISSES)
    for name, value in values.items():
        cfg.CONF.set_override(name, value)


def with_defaults(argv):
    argv = list(argv)
    if not any(a.startswith("--wsapi-host") for a in argv):
        argv[:0] = ["--wsapi-host", "127.0.0.1"]
    if not _positionals(argv):
        argv.append(DEFAULT_APP)
    return argv


def _positionals(argv):
    """Arguments that are not options or option values (ryu options all take one value
    unless they are flags written ``--name`` with no value, or ``--name=value``)."""
    from controllers.options import FLAGS
    flags = {"--verbose", "--enable-debugger", "--observe-links", "--noobserve-links",
             "--install-lldp-flow", "--explicit-drop", "--use-stderr", "--nouse-stderr",
             "--use-syslog", "--version", "-h", "--help", *FLAGS}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a.startswith("-"):
            skip = "=" not in a and a not in flags
        else:
            out.append(a)
    return out


def main(argv=None):
    apply_shim()
    from ryu.cmd import manager  # patches the standard library first (eventlet)
    install_guard()
    import controllers.options  # noqa: F401 - registers --fabric-* before parsing
    try:
        argv, echo = take_echo_options(sys.argv[1:] if argv is None else argv)
    except LauncherError as e:
        sys.exit(f"launcher: {e}")
    apply_echo_options(echo)
    sys.argv = [sys.argv[0]] + with_defaults(argv)
    from controllers.policies import PolicyError
    try:
        manager.main()
    except PolicyError as e:   # a bad --fabric-* value, found as the app starts
        sys.exit(f"controller: {e}")


if __name__ == "__main__":
    main()
