"""Shared fixtures. Emulation tests need root (CI runs as root); they check after themselves
that nothing was left behind."""

import os
import subprocess
import time

import pytest

from fabric.cleanup import leftovers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Emulations started by tests (in this process or in runners they start) queue for the
# machine instead of failing when another test process holds it (a shared machine).
os.environ.setdefault("AIFABRIC_LOCK_WAIT_S", "900")


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="emulation tests need root (CI runs them as root)")
    for item in items:
        if "emulation" in item.keywords:
            item.add_marker(skip)


def wait_for_machine(timeout_s=900):
    """Wait while another process's emulation holds the machine (a user's run on a shared
    machine): the test would otherwise fail on the lock, not on its own merits."""
    from fabric.cleanup import Busy, MachineLock
    deadline = time.monotonic() + timeout_s
    while True:
        lock = MachineLock()
        try:
            lock.acquire()
        except Busy as e:
            if time.monotonic() > deadline:
                pytest.fail(f"machine still busy after {timeout_s} s: {e}")
            time.sleep(1.0)
            continue
        lock.release()
        return


@pytest.fixture
def clean_machine():
    """Fails the test if emulation state is left after it (and clears it for the next)."""
    wait_for_machine()
    yield
    left = leftovers(names=_all_node_names())
    if left:
        subprocess.run([os.path.join(ROOT, ".venv/bin/python"), "-m", "fabric.cleanup"],
                       cwd=ROOT)
    assert not left, f"left behind: {left}"


def _all_node_names():
    from fabric.model import switches, hosts
    from topologies import build
    names = set()
    for g in (build("fattree", k=4), build("leafspine", leaves=4, spines=2, hosts_per_leaf=4)):
        names |= set(switches(g)) | set(hosts(g))
    return names | {"o1", "o2", "o3"}   # the OCS bridges of tests/test_ocs_emulation.py
