"""The run report (fabric/report.py) from results files alone: every chart drawn from what the
files hold, a readable error for a directory without results."""

import csv
import json
import subprocess
import sys

import pytest

from fabric import report, runner
from topologies import build
from traffic import workloads


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _results(tmp_path, links=True):
    run = tmp_path / "runs" / "fattree-r1"
    run.mkdir(parents=True)
    summary = {"topology": "fattree", "policy": "ecmp", "efficiency": 0.9,
               "flows_total": 3, "flows_completed": 2,
               "jobs": {"train": {"phases": [
                   {"tag": "dispatch", "start_emulated_s": 0.0, "end_emulated_s": 1.5},
                   {"tag": "combine", "start_emulated_s": 1.5, "end_emulated_s": 2.0}]}}}
    (run / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    with (run / "flows.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "src", "dst", "bytes", "bytes_received", "start_s", "end_s", "fct_s",
                    "completed", "fct_nominal_s", "tags"])
        w.writerow(["a", "h1", "h2", 10, 10, 0.0, 1.0, 1.0, True, 1e-4, "{}"])
        w.writerow(["b", "h2", "h1", 10, 10, 0.5, 2.0, 1.5, True, 1.5e-4, "{}"])
        w.writerow(["c", "h3", "h1", 10, 4, 0.2, "", "", False, "", "{}"])
    if links:
        with (run / "links.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(report.LINKS_FIELDS)
            for t in (0.0, 1.0, 2.0):
                w.writerow([t, "e1>a1", 2e7, 1e7, 0.5])
                w.writerow([t, "a1>e1", 2e7, 2e7, 1.0])
    return run


def test_a_report_draws_every_chart_its_files_allow(tmp_path):
    _results(tmp_path)
    (tmp_path / "efficiency-fattree.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # a bench's chart
    page = report.write(tmp_path)
    text = open(page).read()
    for name in ("links", "timeline", "fct", "phases"):
        png = tmp_path / "report" / f"fattree-r1-{name}.png"
        assert _png(png), name
        assert f"report/fattree-r1-{name}.png" in text
    assert "efficiency-fattree.png" in text and "<b>ecmp</b>" in text


def test_without_links_csv_the_report_says_so_and_draws_the_rest(tmp_path):
    _results(tmp_path, links=False)
    text = open(report.write(tmp_path)).read()
    assert "links.png" not in text and "No links.csv" in text
    assert _png(tmp_path / "report" / "fattree-r1-fct.png")


def test_a_directory_without_results_is_one_error_and_exit_2(tmp_path):
    with pytest.raises(FileNotFoundError, match="no summary.json"):
        report.write(tmp_path)
    r = subprocess.run([sys.executable, "-m", "fabric.cli", "report", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and str(tmp_path) in r.stderr


def test_every_twin_run_ends_with_its_report(tmp_path):
    spec = {"name": "rep", "backend": "twin", "workload": {"name": "moe_alltoall"},
            "topology": {"name": "fattree", "params": {"k": 4}}}
    from fabric import spec as specs
    out, summary = runner.run_spec(specs.check(spec), "test", str(tmp_path), log=lambda m: None)
    text = open(f"{out}/report.html").read()
    assert "fattree-r1-timeline.png" in text and "fattree-r1-fct.png" in text
    assert summary["flows_total"] == len(workloads.build(
        "moe_alltoall", build("fattree", k=4), 1).flows)
