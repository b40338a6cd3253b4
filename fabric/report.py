"""A run's report: ``report.html`` with PNG charts, from the files a run wrote.

Reads only results (``summary.json``, every ``runs/<label>/flows.csv`` and, from the
emulation, ``links.csv``: the controller's link utilization over time, recorded by
:class:`LinkRecorder` during the run), so it can be made again at any time
(``aifabric report RUN``); the runner writes it at the end of every run. Per run: a link
utilization heatmap (links by time), a flow timeline by host, the FCT CDF and the per-phase
breakdown (where flows carry phases). Charts a benchmark or a sweep wrote into the directory
(``efficiency*.png``, ``scale.png``) are shown as the comparison charts.

Usage: python -m fabric.report RUN_DIR
"""

import argparse
import csv
import glob
import html
import json
import os
import sys
import threading
import time

LINKS_FIELDS = ("t_s", "link", "capacity_bps", "rate_bps", "utilization")


class LinkRecorder:
    """Polls the controller's ``/fabric/topology`` every ``period_s`` in a thread and writes
    one ``links.csv`` row per directed switch link and sample: ``t_s`` (seconds since
    :meth:`mark`, negative before it: connection set-up), ``link`` (``src>dst``, switch names
    of the model), capacity, measured rate (bit/s, emulated units) and utilization."""

    def __init__(self, ctl, g, path, period_s=1.0):
        self.ctl, self.path, self.period_s = ctl, path, period_s
        self.names = {d["dpid"]: n for n, d in g.nodes(data=True) if "dpid" in d}
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._rows = []
        self._thread = threading.Thread(target=self._loop, name="links", daemon=True)

    def mark(self):
        """The run's clock starts now: times are counted from here."""
        self.t0 = time.monotonic()

    def _sample(self):
        try:
            links = self.ctl.get("/fabric/topology", timeout=2.0)["links"]
        except (OSError, ValueError, KeyError):
            return  # a controller restarting: no sample this period
        now = time.monotonic()
        for x in links:
            self._rows.append((now, f"{self.names.get(x['src'], x['src'])}>"
                                    f"{self.names.get(x['dst'], x['dst'])}",
                               x["capacity_bps"], x["rate_bps"], x["utilization"]))

    def _loop(self):
        # A sample at the start and one at the end, whatever the period: the series spans
        # the whole run.
        self._sample()
        while not self._stop.wait(self.period_s):
            self._sample()
        self._sample()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(LINKS_FIELDS)
            for t, link, cap, rate, util in self._rows:
                w.writerow((round(t - self.t0, 3), link, cap, round(rate, 1), round(util, 4)))
        return False


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def heatmap(links_rows, path, title):
    """Links (rows, by name) by time (columns): utilization, 0 to 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    times = sorted({float(r["t_s"]) for r in links_rows})
    names = sorted({r["link"] for r in links_rows})
    if not times or not names:
        return False
    ti = {t: i for i, t in enumerate(times)}
    li = {n: i for i, n in enumerate(names)}
    grid = np.full((len(names), len(times)), np.nan)
    for r in links_rows:
        grid[li[r["link"]], ti[float(r["t_s"])]] = float(r["utilization"])
    fig, ax = plt.subplots(figsize=(10, max(3, 0.12 * len(names) + 1.5)))
    im = ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="inferno", vmin=0,
                   vmax=1, extent=(times[0], times[-1], len(names) - 0.5, -0.5))
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=5 if len(names) > 40 else 7)
    ax.set_xlabel("time since the clock started (emulated s)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label="utilization")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


TIMELINE_MAX_FLOWS = 5000


def timeline(flows, path, title):
    """One row per sending host, a bar per flow from its start to its end (red: not
    completed, drawn to the last end); at most :data:`TIMELINE_MAX_FLOWS`, every n-th flow
    of a larger run (the title says so)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    if len(flows) > TIMELINE_MAX_FLOWS:
        step = -(-len(flows) // TIMELINE_MAX_FLOWS)
        title = f"{title} (every {step}th of {len(flows)} flows)"
        flows = flows[::step]
    starts = [_num(f["start_s"]) for f in flows]
    ends = [_num(f["end_s"]) for f in flows]
    if not any(s is not None for s in starts):
        return False
    last = max([e for e in ends if e is not None] or [0.0])
    hosts = sorted({f["src"] for f in flows} | {f["dst"] for f in flows},
                   key=lambda h: (len(h), h))
    from matplotlib.collections import LineCollection
    row = {h: i for i, h in enumerate(hosts)}
    fig, ax = plt.subplots(figsize=(10, max(3, 0.3 * len(hosts) + 1.5)))
    segments, colors = [], []
    for f, s, e in zip(flows, starts, ends):
        if s is None:
            continue
        # Within its source's band, a flow sits at its destination's place, so flows that
        # overlap in time stay apart.
        y = row[f["src"]] - 0.4 + 0.8 * row[f["dst"]] / max(1, len(hosts) - 1)
        segments.append([(s, y), (e if e is not None else last, y)])
        colors.append("tab:blue" if f["completed"] == "True" else "tab:red")
    ax.add_collection(LineCollection(segments, colors=colors, linewidths=1.2, alpha=0.8))
    ax.set_xlim(min(s for s in starts if s is not None), max(last, 1e-9))
    ax.set_ylim(len(hosts) - 0.5, -0.5)
    ax.set_yticks(range(len(hosts)))
    ax.set_yticklabels(hosts, fontsize=7)
    ax.set_xlabel("time (s, as recorded); in a host's band, flows by destination")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def fct_cdf(flows, path, title):
    """CDF of completed flows' completion times, nominal seconds where recorded."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    key = "fct_nominal_s" if flows and "fct_nominal_s" in flows[0] else "fct_s"
    fct = np.sort([v for v in (_num(f[key]) for f in flows if f["completed"] == "True")
                   if v is not None])
    if not len(fct):
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.step(fct, np.arange(1, len(fct) + 1) / len(fct), where="post")
    ax.set_xscale("log")
    ax.set_xlabel(f"flow completion time ({'nominal ' if key == 'fct_nominal_s' else ''}s)")
    ax.set_ylabel("fraction of flows")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _phases(summary):
    """(label, phases) pairs: the run's, and each job's."""
    out = []
    if summary.get("phases"):
        out.append(("", summary["phases"]))
    for name, job in (summary.get("jobs") or {}).items():
        if job.get("phases"):
            out.append((f"job {name}: ", job["phases"]))
    return out


def phases_chart(summary, path, title):
    """Each phase's span (start to end) as a horizontal bar, per job."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bars = [(f"{prefix}{p['tag']}", p["start_emulated_s"], p["end_emulated_s"])
            for prefix, phases in _phases(summary) for p in phases
            if p.get("start_emulated_s") is not None and p.get("end_emulated_s") is not None]
    if not bars:
        return False
    fig, ax = plt.subplots(figsize=(10, max(2.5, 0.3 * len(bars) + 1.5)))
    for i, (label, s, e) in enumerate(bars):
        ax.barh(i, e - s, left=s, color="tab:green", alpha=0.7)
    ax.set_yticks(range(len(bars)))
    ax.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("emulated s since the clock started")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


SUMMARY_KEYS = ("efficiency", "completion_time_s", "lower_bound_s", "busbw_gbps",
                "fct_p50_s", "fct_p99_s", "flows_completed", "flows_total", "cpu_idle_min")


def write(run_dir):
    """Make ``report.html`` (and its PNGs under ``report/``) for the results in ``run_dir``;
    returns its path. Raises FileNotFoundError when ``run_dir`` holds no results."""
    run_dir = os.path.abspath(run_dir)
    top = os.path.join(run_dir, "summary.json")
    runs = sorted(glob.glob(os.path.join(run_dir, "runs", "*", "summary.json")))
    comparisons = sorted(glob.glob(os.path.join(run_dir, "*.png")))
    if not os.path.exists(top) and not runs and not comparisons:
        raise FileNotFoundError(f"{run_dir}: no summary.json, runs/ or charts to report on")
    out = os.path.join(run_dir, "report")
    os.makedirs(out, exist_ok=True)
    parts = [f"<h1>{html.escape(os.path.basename(run_dir))}</h1>"]
    if os.path.exists(top):
        with open(top) as f:
            s = json.load(f)
        head = {k: s.get(k) for k in ("topology", "policy", "backend", "workload", "repeats")}
        parts.append("<p>" + ", ".join(f"{k}: <b>{html.escape(str(v))}</b>"
                                       for k, v in head.items() if v is not None) + "</p>")
    for png in comparisons:
        parts.append(f"<h2>{html.escape(os.path.basename(png))}</h2>"
                     f"<img src='{os.path.basename(png)}'>")
    for path in runs:
        label = os.path.basename(os.path.dirname(path))
        with open(path) as f:
            s = json.load(f)
        rows = "".join(f"<tr><td>{k}</td><td>{html.escape(str(s.get(k)))}</td></tr>"
                       for k in SUMMARY_KEYS if k in s)
        parts.append(f"<h2>run {html.escape(label)}</h2><table>{rows}</table>")
        flows_path = os.path.join(os.path.dirname(path), "flows.csv")
        flows = _read_csv(flows_path) if os.path.exists(flows_path) else []
        links_path = os.path.join(os.path.dirname(path), "links.csv")
        links = _read_csv(links_path) if os.path.exists(links_path) else []
        charts = [
            ("links", heatmap, links, "link utilization (controller's measurement)"),
            ("timeline", timeline, flows, "flows by sending host"),
            ("fct", fct_cdf, flows, "flow completion times"),
            ("phases", phases_chart, s, "phases"),
        ]
        for name, draw, data, title in charts:
            png = os.path.join(out, f"{label}-{name}.png")
            if data and draw(data, png, f"{label}: {title}"):
                parts.append(f"<h3>{html.escape(title)}</h3>"
                             f"<img src='report/{os.path.basename(png)}'>")
        if not links:
            parts.append("<p>No links.csv (the twin, or a reference controller): no link "
                         "utilization over time.</p>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>report</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
            "td{padding:0 1em}</style></head><body>" + "\n".join(parts) + "</body></html>")
    path = os.path.join(run_dir, "report.html")
    with open(path, "w") as f:
        f.write(page)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(prog="aifabric report",
                                description="Write report.html (with PNG charts) for a run's "
                                            "results directory.")
    p.add_argument("run", help="a results/<run-id>/ directory")
    a = p.parse_args(argv)
    try:
        print(f"report: {write(a.run)}")
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
