"""Command-line and config-file options of our controller (``--fabric-*``).

Kept apart from the app so the launcher can register them before ryu-manager parses its
arguments, without importing the app before eventlet has patched the standard library.
Values are only declared here; controllers/app.py checks them (through the routing core,
which names a bad policy or threshold) when it starts.
"""

from ryu import cfg

POLICY = "fabric-policy"
LLDP_INTERVAL = "fabric-lldp-interval"
STATS_INTERVAL = "fabric-stats-interval"
FAST_FAILOVER = "fabric-fast-failover"
TOPOLOGY = "fabric-topology"
SCALE = "fabric-scale"
POLICY_OPTIONS = "fabric-policy-options"
LLDP_SECRET = "fabric-lldp-secret"
REST_TOKEN = "fabric-rest-token"
REST_TOKEN_FILE = "fabric-rest-token-file"
HEALTH_OPTIONS = "fabric-health-options"
METER_OPTIONS = "fabric-meter-options"
METRICS_PORT = "fabric-metrics-port"
METRICS_HOST = "fabric-metrics-host"

# Options that take no value on the command line (``--name`` / ``--noname``): the launcher
# must not mistake the next argument for their value.
FLAGS = (f"--{FAST_FAILOVER}", f"--no{FAST_FAILOVER}")

cfg.CONF.register_cli_opts([
    cfg.StrOpt(POLICY, default="ecmp",
               help="routing policy: ecmp, shortest, congestion, hedera, collective "
                    "(see controllers/policies.py)"),
    cfg.FloatOpt(LLDP_INTERVAL, default=2.0, help="seconds between LLDP probe rounds"),
    cfg.FloatOpt(STATS_INTERVAL, default=1.0,
                 help="seconds between port/flow statistics rounds (each ends in adapt)"),
    cfg.BoolOpt(FAST_FAILOVER, default=True,
                help="protect routes with FAST_FAILOVER groups (--nofabric-fast-failover: off)"),
    cfg.StrOpt(TOPOLOGY, default="",
               help="JSON file of the fabric model (networkx node_link_data, edges 'links'), "
                    "for link capacities"),
    cfg.FloatOpt(SCALE, default=1.0,
                 help="emulated rate per nominal rate: link capacities are the model's times "
                      "this (what port statistics will show)"),
    cfg.StrOpt(LLDP_SECRET, default="", secret=True,
               help="key of the HMAC our LLDP probes carry (default: random per controller; "
                    "give controllers that must accept each other's probes the same one)"),
    cfg.StrOpt(REST_TOKEN, default="", secret=True,
               help="bearer token every REST request must carry (Authorization: Bearer ...); "
                    "default none: REST then binds to 127.0.0.1 only, as by default"),
    cfg.StrOpt(REST_TOKEN_FILE, default="",
               help="file whose first line is the REST bearer token (kept out of the "
                    "process list)"),
    cfg.StrOpt(POLICY_OPTIONS, default="",
               help='JSON object of policy thresholds, e.g. \'{"hot_util": 0.7}\' '
                    "(see controllers.policies.PolicyConfig)"),
    cfg.StrOpt(HEALTH_OPTIONS, default="",
               help='JSON object of gray-failure and flap-dampening thresholds, e.g. '
                    '\'{"restore_s": 20}\' (see controllers.health.HealthConfig)'),
    cfg.StrOpt(METER_OPTIONS, default="",
               help='JSON object of packet-in budgets of the meters on every switch, e.g. '
                    '\'{"learn_pps": 100}\' (see controllers.meters.MeterConfig)'),
    cfg.IntOpt(METRICS_PORT, default=0, min=0, max=65535,
               help="TCP port of the Prometheus metrics endpoint (/metrics; "
                    "controllers/prom.py); 0: not served"),
    cfg.StrOpt(METRICS_HOST, default="127.0.0.1",
               help="address the metrics endpoint binds (default: loopback only)"),
])
