"""The installable package (pyproject.toml): a wheel built from a copy of the checkout, with
no network, holds everything the code loads at run time, and the commands run from the
unpacked wheel alone, away from the checkout: `aifabric run` of a bundled twin spec by name,
a sweep of a bundled spec, the controller's --help. No emulation."""

import glob
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from fabric import bundled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# `python -m MODULE` started by the code (the controller, agents, probes, child benchmarks).
LAUNCHED = re.compile(r'"-m",\s*"([a-z_.]+)"')


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The wheel's path, built from a copy of the checkout (pip builds in the source tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "results", "build", "__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                        "--no-build-isolation", "--disable-pip-version-check", "-w",
                        str(tmp / "dist"), str(src)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (path,) = glob.glob(str(tmp / "dist" / "aifabric-*.whl"))
    return path


def package_files():
    """Every file the packages hold in the checkout, as the wheel should name it."""
    out = set()
    for pkg in bundled.PACKAGES:
        for d, dirs, files in os.walk(os.path.join(ROOT, pkg)):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            out |= {os.path.relpath(os.path.join(d, f), ROOT) for f in files
                    if not f.endswith(".pyc")}
    return out


def test_the_wheel_holds_every_package_file_and_the_bundled_specs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert package_files() - names == set()
    specs = {f"fabric/experiments/{f}" for f in os.listdir(os.path.join(ROOT, "experiments"))}
    assert specs and specs <= names
    assert {n.split("/")[0] for n in names if not n.startswith("aifabric-")} == \
        set(bundled.PACKAGES)
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = tomllib.load(f)["tool"]["setuptools"]["packages"]
    assert {p for p in listed if "." not in p} == set(bundled.PACKAGES)
    launched = set()
    for path in package_files():
        if path.endswith(".py"):
            with open(os.path.join(ROOT, path)) as f:
                launched |= set(LAUNCHED.findall(f.read()))
    assert "controllers.launcher" in launched and "traffic.agent" in launched
    assert {m.replace(".", "/") + ".py" for m in launched} <= names
    entry = zipfile.ZipFile(wheel).read("aifabric-0.1.0.dist-info/entry_points.txt").decode()
    assert "aifabric = fabric.cli:main" in entry
    assert "aifabric-controller = controllers.launcher:main" in entry


def test_the_unpacked_wheel_runs_away_from_the_checkout(wheel, tmp_path):
    site, here = tmp_path / "site", tmp_path / "elsewhere"
    zipfile.ZipFile(wheel).extractall(site)
    here.mkdir()
    # The unpacked wheel first on the path: it, not the checkout (nor an editable install of
    # it), is what runs.
    env = dict(os.environ, PYTHONPATH=str(site))

    def cmd(*args, timeout=300):
        return subprocess.run([sys.executable, *args], cwd=here, env=env, capture_output=True,
                              text=True, timeout=timeout)

    r = cmd("-c", "import fabric, controllers; print(fabric.__file__, controllers.__file__)")
    assert r.stdout.split() == [str(site / "fabric" / "__init__.py"),
                                str(site / "controllers" / "__init__.py")]
    r = cmd("-m", "fabric.cli", "run", "multijob_twin", "--results", "res")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "flows completed" in r.stdout
    (run,) = glob.glob(str(here / "res" / "*-multijob-twin"))
    for name in ("summary.json", "flows.csv", "report.html"):
        assert os.path.isfile(os.path.join(run, name)), name
    r = cmd("-m", "fabric.cli", "sweep", "sweep_example", "--dry-run", "--results", "res")
    assert r.returncode == 0 and "4 cells, 0 done earlier" in r.stdout, r.stderr[-2000:]
    r = cmd("-m", "fabric.cli", "run", "no_such_spec")
    assert r.returncode == 2 and "no_such_spec" in r.stderr
    r = cmd("-m", "controllers.launcher", "--help", timeout=120)
    assert r.returncode == 0 and "--ofp-tcp-listen-port" in r.stdout


def test_a_spec_argument_names_a_file_or_a_bundled_spec(tmp_path, monkeypatch):
    demo = os.path.join(ROOT, "experiments", "demo.yaml")
    assert bundled.experiments_dir() == os.path.join(ROOT, "experiments")  # a checkout
    assert "demo" in bundled.names() and "sweep_example" in bundled.names()
    monkeypatch.chdir(tmp_path)
    for arg in ("demo", "demo.yaml", "experiments/demo.yaml"):
        assert bundled.resolve(arg) == demo
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "demo.yaml").write_text("name: mine\n")
    (tmp_path / "demo").write_text("name: mine\n")
    # A file that exists is what the user meant, even where a bundled spec has its name.
    assert bundled.resolve("experiments/demo.yaml") == "experiments/demo.yaml"
    assert bundled.resolve("demo") == "demo"
    for arg in ("other/demo.yaml", "nothing.yaml"):
        assert bundled.resolve(arg) == arg
