"""``aifabric schema [spec|trace]``: the JSON Schema of an experiment spec or of a trace line.

The schemas come from the models of fabric/config.py, the ones the runner validates with, so
an editor that checks a YAML spec against docs/schema/spec.json (yaml-language-server: a first
line ``# yaml-language-server: $schema=../docs/schema/spec.json``) agrees with ``aifabric
run``, except for topology and workload parameter values, which their builders check when the
run starts (fabric/config.py says why). ``--write DIR`` writes both files, as committed in
docs/schema/ (``make schema``; tests/test_schema.py fails when they are stale).
"""

import argparse
import json
import os
import sys

from fabric.config import SCHEMAS, json_schema


def dumps(kind):
    """The text of ``kind``'s schema as printed and committed (sorted keys, a final newline)."""
    return json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n"


def main(argv=None):
    """Print a schema, or write every schema into a directory; exit status 2 on bad use."""
    parser = argparse.ArgumentParser(prog="aifabric schema", description=__doc__.splitlines()[0])
    parser.add_argument("kind", nargs="?", default="spec", choices=SCHEMAS,
                        help="spec (an experiment spec file, default) or trace (one line of "
                             "a trace file)")
    parser.add_argument("--write", metavar="DIR",
                        help="write <kind>.json for every kind into DIR instead of printing")
    a = parser.parse_args(argv)
    if a.write is None:
        sys.stdout.write(dumps(a.kind))
        return 0
    os.makedirs(a.write, exist_ok=True)
    for kind in SCHEMAS:
        with open(os.path.join(a.write, f"{kind}.json"), "w", encoding="utf-8") as f:
            f.write(dumps(kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
