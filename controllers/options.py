"""Command-line and config-file options of our controller (``--fabric-*``).

Kept apart from the app so the launcher can register them before ryu-manager parses its
arguments, without importing the app before eventlet has patched the standard library.
"""

from ryu import cfg

POLICY = "fabric-policy"
LLDP_INTERVAL = "fabric-lldp-interval"

cfg.CONF.register_cli_opts([
    cfg.StrOpt(POLICY, default="ecmp", help="routing policy (see controllers/core.py)"),
    cfg.FloatOpt(LLDP_INTERVAL, default=2.0, help="seconds between LLDP probe rounds"),
])
