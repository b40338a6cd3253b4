"""The installed commands (pyproject.toml): aifabric dispatches to the modules the Makefile
runs, with their own options and exit codes; the lint configuration holds."""

import os
import shutil
import subprocess
import sys

import pytest

from fabric import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)


def _aifabric(*args):
    exe = os.path.join(BIN, "aifabric")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "fabric.cli"]
    return subprocess.run(cmd + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_make_setup_installed_both_commands():
    for name in ("aifabric", "aifabric-controller"):
        assert os.access(os.path.join(BIN, name), os.X_OK), f"{name} not installed in {BIN}"


def test_help_lists_every_command_and_benchmark():
    r = _aifabric("--help")
    assert r.returncode == 0
    for name in list(cli.COMMANDS) + list(cli.BENCHES):
        assert f"  {name} " in r.stdout


@pytest.mark.parametrize("args, message", [
    (("teleport",), "unknown command 'teleport'"),
    (("bench", "warp"), "unknown benchmark 'warp'"),
])
def test_an_unknown_command_is_exit_2(args, message):
    r = _aifabric(*args)
    assert r.returncode == 2 and message in r.stderr


def test_run_passes_its_arguments_and_exit_status_through(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("topology: {name: torus}\nworkload: {name: moe_alltoall}\n")
    r = _aifabric("run", str(spec))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        line for line in r.stderr.strip().splitlines() if line.startswith("error: ")]
    assert "unknown topology 'torus'" in r.stderr and str(spec) in r.stderr


def test_subcommand_help_is_the_modules_own():
    r = _aifabric("bench", "core", "--help")
    assert r.returncode == 0 and "--prefill" in r.stdout
    assert r.stdout.startswith("usage: aifabric bench core ")
    for cmd in ("run", "sweep", "chaos", "report", "clean", "schema"):
        r = _aifabric(cmd, "--help")
        assert r.returncode == 0 and r.stdout.startswith(f"usage: aifabric {cmd} "), r.stdout
    r = _aifabric("controller-does-not-exist", "--help")
    assert r.returncode == 2


def test_the_code_passes_its_lint_configuration():
    ruff = shutil.which("ruff", path=BIN) or shutil.which("ruff")
    assert ruff, "ruff is in requirements.txt: make setup installs it"
    r = subprocess.run([ruff, "check", "--output-format", "concise", "."], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]
