"""Shared fixtures. Emulation tests need root (CI runs as root); they check after themselves
that nothing was left behind."""

import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="emulation tests need root (CI runs them as root)")
    for item in items:
        if "emulation" in item.keywords:
            item.add_marker(skip)


def leftovers(names=()):
    """What an emulation could leave behind: OVS bridges, Mininet shells, our controller and
    agents, interfaces of the named nodes. Waits a little for the kernel's asynchronous
    namespace clean-up before it answers."""
    deadline = time.monotonic() + 20
    while True:
        found = {}
        br = subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"], capture_output=True,
                            text=True).stdout.split()
        if br:
            found["bridges"] = br
        ps = subprocess.run(["pgrep", "-fa", r"mininet:|controllers\.launcher|traffic\.agent"],
                            capture_output=True, text=True).stdout.strip()
        if ps:
            found["processes"] = ps.splitlines()
        prefixes = tuple(f"{n}-eth" for n in names)
        intfs = [i for i in os.listdir("/sys/class/net") if prefixes and i.startswith(prefixes)]
        if intfs:
            found["interfaces"] = intfs[:10]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


@pytest.fixture
def clean_machine():
    """Fails the test if emulation state is left after it (and clears it for the next)."""
    yield
    left = leftovers(names=_all_node_names())
    if left:
        subprocess.run([os.path.join(ROOT, ".venv/bin/python"), "-m", "fabric.cleanup", "--all"],
                       cwd=ROOT)
    assert not left, f"left behind: {left}"


def _all_node_names():
    from fabric.model import switches, hosts
    from topologies import build
    names = set()
    for g in (build("fattree", k=4), build("leafspine", leaves=4, spines=2, hosts_per_leaf=4)):
        names |= set(switches(g)) | set(hosts(g))
    return names
