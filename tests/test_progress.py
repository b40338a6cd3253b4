"""Progress of long commands (fabric/progress.py): a bar on a terminal, the same milestones as
plain lines elsewhere; and a real `aifabric sweep` of twin cells, piped, printing them."""

import io
import os
import re
import subprocess
import sys

import yaml
from rich.console import Console

from fabric.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def steps(p):
    p.begin("cell a (1 running)", status="1 running")
    p.advance("cell a: efficiency 0.900", status="0 running")
    p.status("cell b")
    p.line("a note")
    p.advance("cell b: failed: agent on h1 exited with 1")


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()  # not a tty
    with Progress(3, "cells", done=1, stream=out) as p:
        assert not p.live
        steps(p)
    assert out.getvalue().splitlines() == [
        "start cell a (1 running)",
        "[2/3] cell a: efficiency 0.900",
        "a note",
        "[3/3] cell b: failed: agent on h1 exited with 1",
    ]


def test_a_bar_on_a_terminal_with_the_same_milestones():
    out = io.StringIO()
    console = Console(force_terminal=True, file=out, width=100, color_system=None)
    with Progress(3, "cells", done=1, console=console) as p:
        assert p.live
        steps(p)
    text = ANSI.sub("", out.getvalue())
    for milestone in ("[2/3] cell a: efficiency 0.900", "a note",
                      "[3/3] cell b: failed: agent on h1 exited with 1"):
        assert milestone in text
    assert "start cell a" not in text  # a start shows in the bar only
    # The bar as drawn when it stopped: label, count, what the last status said.
    last = [line for line in text.splitlines() if line.startswith("cells")][-1]
    assert "3/3" in last and "cell b" in last and "━" in last


def test_a_real_sweep_piped_prints_plain_milestones(tmp_path):
    spec = {"name": "p", "backend": "twin", "topology": {"name": "fattree", "params": {"k": 4}},
            "policy": ["ecmp", "congestion"],
            "workload": {"name": "permutation", "params": {"bytes_per_flow": 1000000}}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = subprocess.run([sys.executable, "-m", "fabric.cli", "sweep", str(path), "--results",
                        str(tmp_path / "res"), "--num-cpus", "2"], cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "\x1b[" not in r.stdout  # no bar, no colour
    lines = r.stdout.splitlines()
    done = [line for line in lines if re.match(r"\[\d/2\] ", line)]
    assert [d[:6] for d in done] == ["[1/2] ", "[2/2] "]
    assert sorted(d.split()[2].rstrip(":") for d in done) == ["policy=congestion",
                                                              "policy=ecmp"]
    assert all(re.search(r": efficiency \d\.\d{3}$", d) for d in done)
    starts = [line for line in lines if line.startswith("start ")]
    assert len(starts) == 2 and all(re.search(r"\(\d running\)$", s) for s in starts)
    assert lines.index(starts[0]) < lines.index(done[0])


def test_the_twin_bench_counts_its_cells(tmp_path, capsys):
    from bench import twin_bench
    emu = [{"fabric": "fattree", "policy": p, "workload": "stride", "seed": 1,
            "efficiency": 0.5} for p in ("ecmp", "congestion")]
    rows = twin_bench.twin_rows(emu, 0.1, str(tmp_path))  # no emulation: nothing to replay
    assert [r["backend"] for r in rows] == ["twin", "twin"]
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out] == ["[1/2] fattree-ecmp-stride-s1",
                                                    "[2/2] fattree-congestion-stride-s1"]
    assert all(re.search(r"emulation 0\.500, twin \d\.\d{3}, replay -$", x) for x in out)
