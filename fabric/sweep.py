"""Sweeps: one spec whose values may be lists, run as a grid of experiments on Ray.

A *sweep spec* is an experiment spec (fabric/spec.py) in which values may be lists. Each list
is an *axis*; the sweep runs one *cell* per combination of one value from every axis (the
cartesian product, in a fixed order: the first axis in the file varies slowest). Example::

    name: policies
    backend: twin
    topology: {name: fattree, params: {k: [4, 8]}}
    policy: [ecmp, congestion]
    workload: {name: moe_alltoall, params: {skew: 1.0}}
    seed: [1, 2]                  # 2 x 2 x 2 = 8 cells

Which values may be lists, precisely: lists are looked for in mappings only, from the top of
the spec down (top-level keys, ``topology``, ``topology.params``, ``workload.params``,
``controller``, ``controller.options``, ``emulation``, ...). The first list met on a path is
the axis, and its elements are taken as they are: nothing inside an element is expanded
again. Hence:

- a value that is itself a list (the edge topology's ``site_km``, an explicit host list, a
  list of jobs) is written as a list of lists: ``site_km: [[20, 50, 80]]`` is one value,
  ``site_km: [[20, 50], [80, 90]]`` two;
- an element may be a whole mapping: ``topology: [{name: fattree, params: {k: 4}},
  {name: leafspine, params: {leaves: 4}}]``;
- ``name`` names the sweep (default: the file's name without extension) and cannot be a
  list; an empty list gives no cells and is an error.

Every cell is checked by :func:`fabric.spec.check` and every distinct topology is built once
before anything starts; the first problem is one :class:`~fabric.spec.SpecError` naming the
file, the cell and the key and value, and nothing runs.

Each cell is a Ray task that runs :func:`fabric.runner.run_spec`. Emulation cells (the
default backend) ask for the custom resource ``emulator: 1``, which every machine able to
emulate declares once, so a machine runs one emulation at a time; twin cells ask for one
CPU. With no address given (``--address`` or ``RAY_ADDRESS``) the sweep starts a Ray on
this machine that declares ``emulator: 1``, and shuts it down at the end, also on error and
Ctrl-C; with one, it joins that cluster, ships this checkout to it as the tasks' working
directory (from an installed package: the packages, as Ray ``py_modules``) and leaves the
cluster running.

Results, under ``results/sweep-<name>/``::

    <cell id>/cell.json        the cell: id, label, the grid's values, its checked spec
    <cell id>/log.txt          the runner's log
    <cell id>/<run id>/        the runner's run directory (summary.json, flows.csv, runs/...)
    <cell id>/run              a link to it
    <cell id>/summary.json     that run's summary with the cell, written last: the cell is done
    sweep.csv, sweep.md        one row per cell: the grid's values and the key figures
    efficiency.png             efficiency per cell, grouped by the grid's values

A cell id is a short hash of the cell's checked spec, so it does not depend on the other
cells or on where the cell's values were written; re-running a sweep skips every cell whose
directory holds a complete summary.json.

Usage: python -m fabric.sweep SPEC [--address ADDR] [--results DIR] [--num-cpus N] [--dry-run]
"""

import argparse
import contextlib
import copy
import csv
import datetime
import hashlib
import io
import itertools
import json
import logging
import os
import signal
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass

from fabric import bundled, model, runner, spec as specs
from fabric.progress import Progress
from topologies import build as build_topology

ROOT = runner.ROOT
FIGURES = ("efficiency", "completion_time_s", "lower_bound_s", "busbw_gbps")
CANCEL_GRACE_S = 60.0  # how long cancelled cells get to tear their emulation down
POLL_S = 0.5


class SweepError(RuntimeError):
    """A sweep that cannot start here (no root for emulation, a cluster without the
    resources its cells need, no cluster at the address)."""


@dataclass
class Cell:
    """One experiment of the grid.

    Attributes
    ----------
    id : str
        Short hash of ``spec`` (:func:`cell_id`).
    label : str
        The grid's values of this cell, e.g. ``k=4,policy=ecmp,seed=1``.
    values : dict
        Dotted key path (``topology.params.k``) to this cell's value, in axis order.
    spec : dict
        The checked experiment spec, defaults filled in.
    where : str
        The spec file and the cell's label, for messages.
    """

    id: str
    label: str
    values: dict
    spec: dict
    where: str


@dataclass
class Sweep:
    """A checked sweep: its name, spec file, axes (dotted path to short column name, in the
    file's order) and cells in grid order."""

    name: str
    path: str
    axes: dict
    cells: list


def show(value):
    """A value as a sweep spec would write it: ``ecmp``, ``4``, ``true``, ``[20, 50]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (str, int, float)):
        return str(value)
    return json.dumps(value, separators=(", ", ": "))


def find_axes(raw, where):
    """The axes of a sweep spec mapping: a list of (key path tuple, values), in file order."""
    found = []

    def walk(node, path):
        for key, value in node.items():
            p = path + (str(key),)
            dotted = ".".join(p)
            if isinstance(value, list):
                if p == ("name",):
                    raise specs.SpecError(f"{where}: 'name' names the sweep and cannot be a "
                                          f"list, got {value!r}")
                if not value:
                    raise specs.SpecError(f"{where}: '{dotted}' is an empty list, which gives "
                                          f"no cells")
                found.append((p, value))
            elif isinstance(value, dict):
                walk(value, p)

    walk(raw, ())
    return found


def short_names(paths):
    """For each key path, the shortest dotted suffix no other path ends with (``k`` for
    ``topology.params.k`` unless ``workload.params.k`` is also an axis)."""
    out = {}
    for p in paths:
        n = 1
        while any(q != p and q[-n:] == p[-n:] for q in paths) and n < len(p):
            n += 1
        out[".".join(p)] = ".".join(p[-n:])
    return out


def expand(raw, axes):
    """Every combination of one value per axis: (values by dotted path, spec mapping) pairs
    in grid order (the first axis varies slowest)."""
    paths = [p for p, _ in axes]
    for combo in itertools.product(*(vals for _, vals in axes)):
        cell = copy.deepcopy(raw)
        for path, value in zip(paths, combo):
            node = cell
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = copy.deepcopy(value)
        yield {".".join(p): v for p, v in zip(paths, combo)}, cell


def cell_id(spec):
    """Ten hex digits of the SHA-256 of a checked spec's canonical JSON."""
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def load(path):
    """Read a sweep spec, expand its grid and check every cell; return a :class:`Sweep`.

    Raises
    ------
    SpecError
        For the first bad cell (or an unreadable file, a list where none may be, two cells
        that are the same experiment, a topology that cannot be built), naming the file,
        the cell, the key and the value.
    """
    raw = specs.read(path)
    if not isinstance(raw, dict):
        raise specs.SpecError(f"{path}: a spec must be a YAML mapping")
    axes = find_axes(raw, path)
    name = raw.get("name") or os.path.splitext(os.path.basename(path))[0]
    names = short_names([p for p, _ in axes])
    cells, seen, topologies = [], {}, set()
    for values, cell_raw in expand(dict(raw, name=name), axes):
        label = ",".join(f"{names[k]}={show(v)}" for k, v in values.items())
        where = f"{path} [{label}]" if label else str(path)
        checked = specs.check(cell_raw, where=where)
        topo = json.dumps(checked["topology"], sort_keys=True, default=str)
        if topo not in topologies:
            try:
                build_topology(checked["topology"]["name"], **checked["topology"]["params"])
            except model.TopologyError as e:
                raise specs.SpecError(f"{where}: topology: {e}") from None
            topologies.add(topo)
        cid = cell_id(checked)
        if cid in seen:
            raise specs.SpecError(f"{path}: cells [{seen[cid]}] and [{label}] are the same "
                                  f"experiment")
        seen[cid] = label
        cells.append(Cell(cid, label, values, checked, where))
    return Sweep(name, str(path), names, cells)


def task_options(spec):
    """What one cell asks Ray for: an emulation the machine's one ``emulator`` (and a CPU),
    a twin run one CPU."""
    if spec["backend"] == "twin":
        return {"num_cpus": 1}
    return {"num_cpus": 1, "resources": {"emulator": 1}}


def cell_dir(sweep_dir, cell):
    return os.path.join(sweep_dir, cell.id)


def done(sweep_dir, cell):
    """The cell's summary if its directory holds a complete one (it parses and names this
    cell), else None."""
    try:
        with open(os.path.join(cell_dir(sweep_dir, cell), "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict) or summary.get("cell", {}).get("id") != cell.id:
        return None
    return summary


def _write_json(path, obj):
    """Write JSON through a temporary file, so a reader never sees half of it."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
    os.replace(tmp, path)


def _run_into(spec, where, out):
    """Run the cell's spec with results under ``out``; return (run id, summary)."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "log.txt"), "a") as f:
        f.write(f"--- {datetime.datetime.now().isoformat(timespec='seconds')} {where}\n")

        def log(line):
            f.write(line + "\n")
            f.flush()

        run_dir, summary = runner.run_spec(spec, where, out, log)
    return os.path.basename(run_dir), summary


def _pack(directory):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for entry in sorted(os.listdir(directory)):
            tar.add(os.path.join(directory, entry), arcname=entry)
    return buf.getvalue()


def run_cell(spec, where, out, in_place, tracker=None, cid=None):
    """The body of a cell's Ray task.

    Parameters
    ----------
    spec : dict
        The cell's checked spec.
    where : str
        The spec file and the cell's label, for messages.
    out : str
        The cell's directory on the driver's machine.
    in_place : bool
        Whether this task runs on the driver's machine (a Ray the sweep started): the run is
        written into ``out``. Otherwise it is written into a temporary directory and sent
        back as a gzipped tar, which the driver unpacks into ``out``.
    tracker, cid
        The sweep's :class:`Started` actor, told ``cid`` when the cell starts.

    Returns
    -------
    dict
        ``run_id`` and ``summary`` (with ``archive`` when not in place), or ``error``: the
        one line a run error gives.
    """
    if tracker is not None:
        tracker.start.remote(cid)
    try:
        if spec["backend"] == "emulation" and os.geteuid() != 0:
            raise runner.RunError("emulation needs root (Mininet creates namespaces and "
                                  "bridges)")
        if in_place:
            run_id, summary = _run_into(spec, where, out)
            return {"run_id": run_id, "summary": summary}
        with tempfile.TemporaryDirectory(prefix="aifabric-cell-") as tmp:
            run_id, summary = _run_into(spec, where, tmp)
            return {"run_id": run_id, "summary": summary, "archive": _pack(tmp)}
    except runner.RUN_ERRORS as e:
        return {"error": str(e)}


def record(sweep_dir, cell, result):
    """Store a finished task's result in the cell's directory: unpack a run sent back, link
    the run directory as ``run`` and write summary.json last. Returns the summary."""
    out = cell_dir(sweep_dir, cell)
    if "archive" in result:
        with tarfile.open(fileobj=io.BytesIO(result["archive"]), mode="r:gz") as tar:
            members = tar.getmembers()
            for m in members:  # what _pack makes: files and directories below ``out``
                if not (m.isfile() or m.isdir()) or os.path.isabs(m.name) \
                        or ".." in m.name.split("/"):
                    raise runner.RunError(f"cell {cell.id}: unexpected {m.name!r} in its run")
            tar.extractall(out, members)
    link = os.path.join(out, "run")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(result["run_id"], link)
    summary = dict(result["summary"], run_dir=result["run_id"],
                   cell={"id": cell.id, "label": cell.label, "values": cell.values})
    _write_json(os.path.join(out, "summary.json"), summary)
    return summary


class Started:
    """A Ray actor holding the ids of the cells whose tasks have started (Ray says when a
    task finishes, not when it starts)."""

    def __init__(self):
        self.ids = []

    def start(self, cid):
        self.ids.append(cid)

    def started(self):
        return list(self.ids)


def _figure(summary):
    eff = summary.get("efficiency")
    return "no efficiency" if eff is None else f"efficiency {eff:.3f}"


def shipped():
    """What a cluster's tasks get of this code (Ray's runtime environment): the checkout as
    their working directory, or, from an installed package, the packages themselves."""
    if bundled.is_checkout():
        return {"working_dir": ROOT,
                "excludes": [".git/", ".venv/", "results/", "__pycache__/"]}
    return {"py_modules": [os.path.join(bundled.ROOT, p) for p in bundled.PACKAGES],
            "excludes": ["__pycache__/"]}


def connect(address, num_cpus):
    """Join the Ray cluster at ``address`` (or ``RAY_ADDRESS``), or start one on this
    machine; returns whether it was started here (and must be shut down)."""
    import ray
    address = address or os.environ.get("RAY_ADDRESS")
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address:
        try:
            ray.init(address=address, runtime_env=shipped(), **quiet)
        except ConnectionError as e:
            raise SweepError(f"cannot join the Ray cluster at {address}: {e}") from None
        return False
    # Ray's processes inherit this environment: its workers import this checkout (quicker
    # than a runtime environment, which costs seconds per worker).
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=num_cpus or os.cpu_count(), resources={"emulator": 1},
             include_dashboard=False, **quiet)
    return True


@contextlib.contextmanager
def _signals_held():
    """Hold Ctrl-C and SIGTERM while Ray starts (a Ray stopped half-way leaves processes
    that its shutdown does not find), then raise KeyboardInterrupt if one came. Ray's own
    SIGTERM handler, which exits at once, is replaced by the one in place before."""
    caught = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, lambda signum, _frame: caught.append(signum))
              for sig in held}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt(f"signal {caught[0]}")


def _cancel(pending):
    """Cancel unfinished cells; a running one unwinds like Ctrl-C (its emulation torn down),
    given up to :data:`CANCEL_GRACE_S` (a second Ctrl-C stops waiting)."""
    import ray
    for ref in pending:
        ray.cancel(ref)
    try:
        ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_GRACE_S)
    except KeyboardInterrupt:
        pass


def _outcome(ray, ref, sweep_dir, cell, failures):
    """Record a finished cell (its run, or its error in ``failures``); one line on it."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None) or e
        result = {"error": f"{type(cause).__name__}: {cause}".splitlines()[0]}
    if "error" not in result:
        try:
            return _figure(record(sweep_dir, cell, result))
        except runner.RunError as e:
            result = {"error": str(e)}
    failures[cell.id] = result["error"]
    return f"failed: {result['error']}"


def run(sweep, sweep_dir, address=None, num_cpus=None, stream=None):
    """Run every cell of ``sweep`` not done earlier; return {cell id: error line} of the
    cells that failed.

    Raises
    ------
    SweepError
        Before any cell starts: emulation cells on a local Ray without root, a cluster
        without an ``emulator`` resource for emulation cells, no cluster at the address.
    KeyboardInterrupt
        After cancelling the cells still running.
    """
    stream = stream or sys.stdout
    todo = [c for c in sweep.cells if done(sweep_dir, c) is None]
    earlier = len(sweep.cells) - len(todo)
    if earlier:
        print(f"{earlier} cells done earlier, skipped", file=stream, flush=True)
    if not todo:
        return {}
    emulating = any(c.spec["backend"] == "emulation" for c in todo)
    joining = bool(address or os.environ.get("RAY_ADDRESS"))
    if emulating and not joining and os.geteuid() != 0:
        raise SweepError("emulation cells need root (Mininet creates namespaces and bridges); "
                         "run as root or give the cells backend: twin")
    import ray
    runner.terminate_on_sigterm()
    try:
        with _signals_held():
            local = connect(address, num_cpus)
        if emulating and ray.cluster_resources().get("emulator", 0) < 1:
            raise SweepError("the Ray cluster has no 'emulator' resource for the emulation "
                             "cells: start each machine that can emulate with "
                             "ray start ... --resources='{\"emulator\": 1}'")
        task = ray.remote(max_retries=0)(run_cell)
        tracker = ray.remote(num_cpus=0)(Started).remote()
        failures, pending, started, finished = {}, {}, set(), set()
        by_id = {c.id: c for c in todo}
        with Progress(len(sweep.cells), "cells", done=earlier, stream=stream) as display:
            try:
                for cell in todo:
                    out = cell_dir(sweep_dir, cell)
                    os.makedirs(out, exist_ok=True)
                    _write_json(os.path.join(out, "cell.json"),
                                {"id": cell.id, "label": cell.label, "values": cell.values,
                                 "spec": cell.spec})
                    ref = task.options(**task_options(cell.spec)).remote(
                        cell.spec, cell.where, os.path.abspath(out), local, tracker, cell.id)
                    pending[ref] = cell
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                    for ref in ready:
                        cell = pending.pop(ref)
                        if cell.id not in started:
                            # Started and done between two polls (a twin cell takes a
                            # fraction of a second): its start is said before its end.
                            started.add(cell.id)
                            running = len(started - finished)
                            display.begin(f"{cell.id} {cell.label} ({running} running)",
                                          status=f"{running} running")
                        finished.add(cell.id)
                        display.advance(f"{cell.id} {cell.label}: "
                                        f"{_outcome(ray, ref, sweep_dir, cell, failures)}",
                                        status=f"{len(started - finished)} running")
                    for cid in ray.get(tracker.started.remote()):
                        if cid not in started:
                            started.add(cid)
                            if cid not in finished:
                                running = len(started - finished)
                                cell = by_id[cid]
                                display.begin(f"{cell.id} {cell.label} ({running} running)",
                                              status=f"{running} running")
            except KeyboardInterrupt:
                display.line(f"interrupted: cancelling {len(pending)} cells")
                _cancel(pending)
                raise
        return failures
    finally:
        ray.shutdown()  # stops the Ray started here; from a cluster, only disconnects


def _flows(summary):
    if summary.get("flows_total") is None:
        return None
    return f"{summary.get('flows_completed')}/{summary['flows_total']}"


def _cpu_saturated(summary):
    """Whether any run of the cell saturated the CPU; None if its runs do not say."""
    if "cpu_saturated" in summary:
        return summary["cpu_saturated"]
    said = [r["cpu_saturated"] for r in summary.get("runs", []) if "cpu_saturated" in r]
    return any(said) if said else None


def rows(sweep, sweep_dir, failures=None):
    """One row per cell, in grid order: ``cell``, the grid's values (by column name), the
    key figures of its summary (None where it has none), ``status``."""
    failures = failures or {}
    out = []
    for cell in sweep.cells:
        row = {"cell": cell.id}
        row.update({sweep.axes[k]: show(v) for k, v in cell.values.items()})
        summary = done(sweep_dir, cell)
        figures = summary or {}
        row.update({k: figures.get(k) for k in FIGURES})
        row["flows"] = _flows(figures)
        row["backend"] = cell.spec["backend"]
        row["cpu_saturated"] = _cpu_saturated(figures)
        row["status"] = ("done" if summary else
                         f"failed: {failures[cell.id]}" if cell.id in failures else "not run")
        out.append(row)
    return out


def _columns(table):
    cols = list(table[0]) if table else []
    if all(r["cpu_saturated"] is None for r in table):
        cols.remove("cpu_saturated")
    return cols


def _md(v):
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def markdown(table):
    """The rows as a Markdown table (cpu_saturated only if some cell says)."""
    cols = _columns(table)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(_md(r[c]) for c in cols) + " |" for r in table]
    return "\n".join(lines)


def write_table(table, sweep_dir):
    """Write ``sweep.csv`` and ``sweep.md`` into the sweep directory; return the Markdown."""
    os.makedirs(sweep_dir, exist_ok=True)
    cols = _columns(table)
    with open(os.path.join(sweep_dir, "sweep.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows([["" if r[c] is None else r[c] for c in cols] for r in table])
    text = markdown(table)
    with open(os.path.join(sweep_dir, "sweep.md"), "w") as f:
        f.write(text + "\n")
    return text


def plot(sweep, table, sweep_dir):
    """Bar chart of efficiency per cell, ``efficiency.png``: one group of bars per
    combination of the grid's values other than the policy (or the first axis if the
    policy does not vary), one colour per policy. Returns the path, or None if no cell
    has an efficiency."""
    if all(r["efficiency"] is None for r in table):
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sweep.axes.values())
    hue = "policy" if "policy" in names else (names[0] if names else None)
    rest = [n for n in names if n != hue]
    measured = [r for r in table if r["efficiency"] is not None]

    def group(r):
        return ",".join(f"{n}={r[n]}" for n in rest) or sweep.name

    groups = list(dict.fromkeys(group(r) for r in table))
    hues = list(dict.fromkeys(r[hue] for r in measured)) if hue else [None]
    width = 0.8 / len(hues)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(table) + 3), 4))
    for i, h in enumerate(hues):
        mine = [r for r in measured if h is None or r[hue] == h]
        ax.bar([groups.index(group(r)) + (i - (len(hues) - 1) / 2) * width for r in mine],
               [r["efficiency"] for r in mine], width, color=colours[i % len(colours)],
               label=None if h is None else f"{hue}={h}")
    tilt = len(groups) > 3
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(groups, rotation=30 if tilt else 0, ha="right" if tilt else "center",
                       fontsize=8)
    ax.set_ylabel("efficiency (lower bound / completion)")
    ax.set_ylim(0, max(1.0, max(r["efficiency"] for r in measured)))
    ax.set_title(f"sweep {sweep.name}")
    if hue is not None:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path = os.path.join(sweep_dir, "efficiency.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def finish(sweep, sweep_dir, failures, stream=None):
    """Write and print the table, draw the plot."""
    stream = stream or sys.stdout
    table = rows(sweep, sweep_dir, failures)
    print(write_table(table, sweep_dir), file=stream)
    png = plot(sweep, table, sweep_dir)
    print(f"results: {sweep_dir}" + (f" (plot {os.path.basename(png)})" if png else ""),
          file=stream, flush=True)


def dry_run(sweep, sweep_dir, stream=None):
    """Print the cells, what each asks Ray for and whether it is done, start nothing."""
    stream = stream or sys.stdout
    n_done = 0
    for cell in sweep.cells:
        state = "done" if done(sweep_dir, cell) else "to run"
        n_done += state == "done"
        print(f"{cell.id} {cell.label or '-'} backend={cell.spec['backend']} "
              f"{json.dumps(task_options(cell.spec), sort_keys=True)} {state}", file=stream)
    print(f"{len(sweep.cells)} cells, {n_done} done earlier; results: {sweep_dir}", file=stream)


def main(argv=None):
    p = argparse.ArgumentParser(description="Run a sweep spec's grid of experiments on Ray.")
    p.add_argument("spec", help="sweep spec file, or the name of a bundled one "
                                "(sweep_example)")
    p.add_argument("--address", help="join this Ray cluster (default: $RAY_ADDRESS, else "
                                     "start a Ray on this machine)")
    p.add_argument("--results", default="results")
    p.add_argument("--num-cpus", type=int, help="CPUs of the Ray started here "
                                                "(default: every core)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the sweep and list its cells, run nothing")
    a = p.parse_args(argv)
    try:
        sweep = load(bundled.resolve(a.spec))
    except specs.SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweep_dir = os.path.join(a.results, f"sweep-{sweep.name}")
    if a.dry_run:
        dry_run(sweep, sweep_dir)
        return 0
    t0 = time.monotonic()
    try:
        failures = run(sweep, sweep_dir, a.address, a.num_cpus)
    except SweepError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        finish(sweep, sweep_dir, {})
        print("interrupted: cells still running were cancelled", file=sys.stderr)
        return 130
    finish(sweep, sweep_dir, failures)
    print(f"{len(sweep.cells)} cells, {len(failures)} failed, "
          f"{time.monotonic() - t0:.1f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
