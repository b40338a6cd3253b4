"""The one way to start our controller: ``ryu-manager`` with the Python 3.11 shim applied.

Ryu 4.34 imports ``eventlet.wsgi.ALREADY_HANDLED``, which eventlet 0.33 no longer defines; it
must exist before anything imports ryu. Every ryu-manager flag keeps working
(``--ofp-tcp-listen-port``, ``--config-file``, ``--default-log-level``, ``--wsapi-port``...).
With no application named, our app (controllers.app) is run; the REST API binds to
127.0.0.1 unless ``--wsapi-host`` says otherwise.

Usage: python -m controllers.launcher [ryu-manager options] [apps...]
"""

import sys

DEFAULT_APP = "controllers.app"


def apply_shim():
    import eventlet.wsgi
    if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
        eventlet.wsgi.ALREADY_HANDLED = object()


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
    from ryu.cmd import manager
    import controllers.options  # noqa: F401 - registers --fabric-* before parsing
    sys.argv = [sys.argv[0]] + with_defaults(sys.argv[1:] if argv is None else argv)
    manager.main()


if __name__ == "__main__":
    main()
