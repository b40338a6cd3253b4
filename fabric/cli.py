"""The ``aifabric`` command: one entry point for what the Makefile's targets run.

Each subcommand hands its arguments to the module that does the work, unchanged, so
``aifabric run SPEC --policy congestion`` is ``python -m fabric.runner SPEC --policy
congestion`` and ``aifabric SUBCOMMAND --help`` prints that module's own options. The
controller has its own command, ``aifabric-controller`` (controllers/launcher.py, every
ryu-manager flag kept).
"""

import importlib
import sys

# subcommand -> (module whose main(argv) runs it, one line of help)
COMMANDS = {
    "run": ("fabric.runner", "run an experiment spec (emulation or twin)"),
    "sweep": ("fabric.sweep", "run a grid of specs as Ray tasks"),
    "chaos": ("fabric.chaos", "inject seeded faults while traffic runs; teardown soak"),
    "report": ("fabric.report", "write report.html with charts for a results directory"),
    "clean": ("fabric.cleanup", "remove whatever a crashed run left behind"),
    "schema": ("fabric.schema", "print the JSON Schema of a spec or of a trace line"),
}
# aifabric bench [NAME] -> module; the first is the default.
BENCHES = {
    "policies": ("bench.policies", "every policy side by side on k=4 and leaf-spine (make bench)"),
    "core": ("bench.core_bench", "the routing core's costs, k=4 to 32, no emulation"),
    "twin": ("bench.twin_bench", "the twin against the emulation, cell by cell"),
    "twin-scale": ("bench.twin_scale", "the twin at 16 to 8,192 hosts"),
    "k8": ("bench.alltoall_k8", "a 128-host all-to-all under every adaptive policy"),
    "scale": ("bench.scale", "bring-up, reachability and teardown of a k=8 fat-tree"),
    "failover": ("bench.failover", "traffic gap when a link fails, with and without "
                                   "FAST_FAILOVER"),
}


def usage():
    lines = ["usage: aifabric COMMAND [ARGS...]   (aifabric COMMAND --help for its options)",
             "", "commands:"]
    lines += [f"  {name:<12} {text}" for name, (_, text) in COMMANDS.items()]
    lines.append(f"  {'bench':<12} benchmarks: aifabric bench [NAME] [ARGS...], NAME one of:")
    lines += [f"    {name:<12} {text}" for name, (_, text) in BENCHES.items()]
    return "\n".join(lines)


def _call(module, argv, prog):
    """Run ``module.main(argv)`` with its usage line naming the command the user typed
    (argparse takes its default ``prog`` from ``sys.argv[0]``)."""
    saved = sys.argv[0]
    sys.argv[0] = prog
    try:
        return importlib.import_module(module).main(argv)
    finally:
        sys.argv[0] = saved


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "bench":
        name = rest[0] if rest and rest[0] in BENCHES else next(iter(BENCHES))
        if rest and rest[0] in BENCHES:
            rest = rest[1:]
        elif rest and not rest[0].startswith("-"):
            print(f"aifabric bench: unknown benchmark {rest[0]!r}; one of "
                  f"{', '.join(BENCHES)}", file=sys.stderr)
            return 2
        return _call(BENCHES[name][0], rest, f"aifabric bench {name}")
    if cmd not in COMMANDS:
        print(f"aifabric: unknown command {cmd!r}\n{usage()}", file=sys.stderr)
        return 2
    return _call(COMMANDS[cmd][0], rest, f"aifabric {cmd}")


if __name__ == "__main__":
    sys.exit(main())
