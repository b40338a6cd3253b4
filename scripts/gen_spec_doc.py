"""Generate docs/spec.md, the experiment spec reference, from the code that checks specs.

Keys, types, bounds, allowed values and meanings come from the models of fabric/config.py
(a field's ``description``), defaults from fabric/spec.py; topology parameters from the
builders' signatures and numpydoc (topologies/); workload parameters from the generators'
signatures and numpydoc (traffic/workloads.py); policy and health options from the
dataclasses controllers.policies.PolicyConfig and controllers.health.HealthConfig.
:func:`render` fails if a key has no description or the models and fabric/spec.py disagree,
so the reference cannot silently go stale (tests/test_docs.py compares the committed file
with :func:`render`).

Usage: python scripts/gen_spec_doc.py [--check]   (writes docs/spec.md, or exits 1 if stale)
"""

import argparse
import dataclasses
import inspect
import json
import pathlib
import re
import sys
import typing

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controllers.health import HealthConfig  # noqa: E402
from controllers.policies import PolicyConfig  # noqa: E402
from fabric import config, spec  # noqa: E402
from topologies import TOPOLOGIES  # noqa: E402
from traffic.workloads import WORKLOADS  # noqa: E402

OUT = ROOT / "docs" / "spec.md"

# The models whose fields are the spec's keys, by section ("" for the top level): their
# types, bounds, allowed values and meanings (``description``) are the reference's columns.
MODELS = {"": config.Spec, **config.SECTIONS}


class DocError(RuntimeError):
    """The hand-written key lines disagree with fabric/spec.py."""


def numpydoc_entries(obj, section):
    """``{name: (type, description)}`` from the numpydoc ``section`` of ``obj``'s docstring."""
    lines = (inspect.getdoc(obj) or "").splitlines()
    out, name, inside = {}, None, False
    for i, line in enumerate(lines):
        if not inside:
            inside = (line.strip() == section and i + 1 < len(lines)
                      and set(lines[i + 1].strip()) == {"-"})
            continue
        if set(line.strip()) == {"-"}:
            continue
        if line and not line.startswith(" "):
            if i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}:
                break                                   # the next section's title
            head, _, kind = line.partition(" : ")
            if name is not None and name.rstrip().endswith(",") and not out[_last(name)][1]:
                head = name + head          # a list of names wrapped onto this line
            for n in filter(None, (n.strip() for n in head.split(","))):
                out[n] = [kind.strip(), []]
            name = head
        elif line.strip() and name is not None:
            for n in filter(None, (n.strip() for n in name.split(","))):
                out[n][1].append(line.strip())
    return {k: (kind, " ".join(desc)) for k, (kind, desc) in out.items()}


def _last(names):
    return [n.strip() for n in names.split(",") if n.strip()][-1]


def _plain(text):
    """numpydoc/Sphinx markup as Markdown: ``x`` and :func:`x` become `x`."""
    return re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", str(text)).replace("``", "`")


def _cell(text):
    return _plain(text).replace("|", "\\|").replace("\n", " ")


def _code(value):
    """``value`` as it would be written in YAML (JSON flow style), or "none"."""
    return "none" if value is None else f"`{json.dumps(value)}`"


def _choices(values):
    return ", ".join(f"`{v}`" for v in values)


def _table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _kind(field):
    """A field's type column: its allowed values as code, or :func:`fabric.config.expects`."""
    annotation, _ = config._strip(field.annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + _choices(typing.get_args(annotation))
    return config.expects(field)


def _keys_table(where, defaults):
    """The table of section ``where``'s keys; DocError if a key of ``defaults`` (fabric/spec.py)
    is not a field of the section's model or has no description there."""
    fields = MODELS[where].model_fields
    bad = sorted(set(fields) ^ set(defaults)) + [
        k for k in fields if k in defaults and not fields[k].description]
    if bad:
        raise DocError(f"{where or 'top level'}: keys {bad} lack a description in "
                       f"fabric/config.py or differ from fabric/spec.py's {sorted(defaults)}")
    rows = [(f"`{key}`", _kind(fields[key]), _code(defaults[key]), fields[key].description)
            for key in defaults]
    return _table(("key", "type / allowed values", "default", "meaning"), rows)


def _config_table(cls):
    docs = numpydoc_entries(cls, "Attributes")
    rows = []
    for f in dataclasses.fields(cls):
        if f.name not in docs:
            raise DocError(f"{cls.__name__}.{f.name} has no numpydoc entry")
        kind, desc = docs[f.name]
        rows.append((f"`{f.name}`", kind, _code(f.default), desc))
    return _table(("option", "type", "default", "meaning"), rows)


def _qualified(text, module):
    """Sphinx references to names of ``module`` written with the module (`traffic.x.f`), so
    a reader of the reference knows where to look."""
    return re.sub(r":(func|data|class):`([A-Za-z_]\w*)`", rf":\1:`{module}.\2`", text)


def _params_table(fn, skip=("hosts", "seed", "g")):
    docs = numpydoc_entries(fn, "Parameters")
    rows = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip:
            continue
        default = "required" if p.default is inspect.Parameter.empty else _code(p.default)
        kind, desc = docs.get(p.name, ("", ""))
        if not desc:
            # Described inside another parameter's entry (``length_sigma`` in
            # ``prompt_tokens``'s): point there rather than leave the cell empty.
            where = [n for n, (_, d) in docs.items() if f"``{p.name}``" in d]
            if where:
                # A parameter no spec sets (``g``) has no row to point to: quote it.
                desc = docs[where[0]][1] if where[0] in skip else f"See `{where[0]}`."
        rows.append((f"`{p.name}`", kind, default, _qualified(desc, fn.__module__)))
    if not rows:
        return ["No parameters."]
    return _table(("parameter", "type", "default", "meaning"), rows)


def _summary(fn):
    doc = inspect.getdoc(fn) or ""
    return _plain(doc.split("\n\n")[0].replace("\n", " "))


def render():
    """The text of docs/spec.md, generated from the code."""
    top = list(config.Spec.model_fields)
    if set(top) != spec.TOP_KEYS:
        raise DocError(f"documented top-level keys {sorted(top)} differ from fabric/spec.py's "
                       f"{sorted(spec.TOP_KEYS)}")
    top_defaults = {k: spec.DEFAULTS.get(k) for k in top}
    out = [
        "# Experiment spec reference",
        "",
        "<!-- Generated by scripts/gen_spec_doc.py from fabric/spec.py, topologies/,",
        "     traffic/workloads.py and controllers/; do not edit: run",
        "     `python scripts/gen_spec_doc.py`. tests/test_docs.py fails if it is stale. -->",
        "",
        "An experiment spec is one YAML mapping (see `experiments/` for examples). "
        "`fabric/spec.py` checks it once against the pydantic models of `fabric/config.py`, "
        "fills in every default below and stops at the first problem with one line naming "
        "the file, the key path and the value. Unknown keys are errors at every level; "
        "counts must be integers and rates numbers (`true` or `\"4\"` are refused).",
        "",
        "## Checking a spec in an editor",
        "",
        "The same models give the spec's JSON Schema, committed as "
        "[schema/spec.json](schema/spec.json) (`aifabric schema spec` prints it; "
        "`aifabric schema trace` prints [schema/trace.json](schema/trace.json), one line "
        "of a trace). An editor with the YAML language server (VS Code's YAML extension, "
        "Neovim's yamlls, ...) checks and completes a spec that starts with:",
        "",
        "```yaml",
        "# yaml-language-server: $schema=../docs/schema/spec.json",
        "```",
        "",
        "(the path relative to the spec; `experiments/demo.yaml` has it). The schema knows "
        "every key, default and allowed value, and each topology's and workload's parameter "
        "names and defaults; parameter values are checked by the builders when a run "
        "starts, before anything is built. A sweep file (lists as axes) is not a spec: "
        "its cells are.",
        "",
        "## Top-level keys",
        "",
        *_keys_table("", top_defaults),
        "",
        "A section (`controller`, `emulation`, `twin`) may give only some of its keys; the "
        "others keep their defaults. `topology` and `workload` may be a bare name "
        "(`topology: fattree`) or `{name: ..., params: {...}}`; `params` default to the "
        "builder's or generator's defaults.",
    ]
    for section in config.SECTIONS:
        out += ["", f"## {section}", "", *_keys_table(section, spec.DEFAULTS[section])]
    out += ["", "### controller.options", "",
            "Thresholds of the adaptive policies (`controllers.policies.PolicyConfig`).", "",
            *_config_table(PolicyConfig),
            "", "### controller.health", "",
            "Gray-failure detection and flap dampening (`controllers.health.HealthConfig`).",
            "", *_config_table(HealthConfig)]
    out += ["", "## Jobs", "",
            "`jobs` is a non-empty list of mappings with the keys "
            + _choices(spec.JOB_KEYS) + ":", "",
            *_table(("key", "type / allowed values", "default", "meaning"), [
                ("`name`", f"1-{spec.MAX_JOB_NAME} letters, digits, - or _, unique",
                 "required", "prefixes the job's flow ids"),
                ("`workload`", "name, or `{name, params}`", "required",
                 "as the spec's `workload`"),
                ("`placement`", "one of " + _choices(spec.COUNTED_PLACEMENTS)
                 + ", or `{hosts: [h1, ...]}`", _code("packed"),
                 "which hosts the job runs on (traffic/jobs.py)"),
                ("`hosts`", "integer >= 1", "required with a counted placement",
                 "how many hosts; not allowed beside `placement.hosts`"),
                ("`after`", "the name of an earlier job", "none (starts at time 0)",
                 "the job starts once every flow of that job has been received, and may "
                 "take its hosts (jobs one after the other)"),
            ]),
            "", "Whether the hosts exist and suffice is checked on the fabric before any "
            "network exists."]
    out += ["", "## Topologies", "",
            "`topology.name` is one of " + _choices(TOPOLOGIES) + " (topologies/__init__.py). "
            "Counts must be integers >= 1 and rates numbers > 0 (topologies/_params.py); "
            "every value is checked before anything is built."]
    for name, fn in TOPOLOGIES.items():
        out += ["", f"### {name}", "", f"{_summary(fn)} (`{fn.__module__}.{fn.__name__}`)",
                "", *_params_table(fn, skip=())]
    out += ["", "## Workloads", "",
            "`workload.name` is one of " + _choices(WORKLOADS) + " (traffic/workloads.py). "
            "Every generator also gets the fabric's hosts and the run's `seed`; neither "
            "may be given in `params`."]
    for name, fn in WORKLOADS.items():
        out += ["", f"### {name}", "", f"{_summary(fn)} (`{fn.__module__}.{fn.__name__}`)",
                "", *_params_table(fn)]
    out += ["", "## Sweeps", "",
            "A sweep spec (`python -m fabric.sweep SPEC`, fabric/sweep.py) is a spec in "
            "which values may be lists: each list is an axis and the sweep runs one cell per "
            "combination, the first axis in the file varying slowest. Lists are looked for "
            "in mappings only, from the top down; the first list met on a path is the axis "
            "and its elements are not expanded again, so a value that is itself a list "
            "(`site_km`, a host list, `jobs`) is written as a list of lists. `name` cannot "
            "be a list. Every cell is checked as above before anything runs.",
            "", "```yaml", "name: policies", "backend: twin",
            "topology: {name: fattree, params: {k: [4, 8]}}", "policy: [ecmp, congestion]",
            "workload: {name: moe_alltoall, params: {skew: 1.0}}",
            "seed: [1, 2]                  # 2 x 2 x 2 = 8 cells", "```", ""]
    return "\n".join(out)


def main(argv=None):
    """Write docs/spec.md, or with ``--check`` exit 1 if it differs from :func:`render`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if docs/spec.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT}: stale; run python scripts/gen_spec_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
