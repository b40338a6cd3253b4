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


def foreign_runs():
    """Bridges and process ids recorded by emulations that are running now in another
    process (another user's run on a shared machine, not this test's): the lock keeps them
    from overlapping with ours, but one may start between our teardown and this check."""
    from fabric import cleanup
    bridges, pids = set(), set()
    for owner, state in cleanup.other_live_runs().items():
        bridges |= set(state.get("bridges", [])) | set(state.get("hosts", []))
        pids |= set(state.get("pids", [])) | {owner}
    return bridges, pids


def leftovers(names=()):
    """What an emulation could leave behind: OVS bridges, Mininet shells, our controller and
    agents, interfaces of the named nodes; not what a live emulation of another process
    recorded. Waits a little for the kernel's asynchronous namespace clean-up before it
    answers."""
    deadline = time.monotonic() + 20
    while True:
        found = {}
        others, other_pids = foreign_runs()
        br = [b for b in subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"],
                                        capture_output=True, text=True).stdout.split()
              if b not in others]
        if br:
            found["bridges"] = br
        ps = subprocess.run(["pgrep", "-fa", r"mininet:|controllers\.launcher|traffic\.agent"],
                            capture_output=True, text=True).stdout.strip()
        ps = [line for line in ps.splitlines() if not _belongs(line, others, other_pids)]
        if ps:
            found["processes"] = ps
        prefixes = tuple(f"{n}-eth" for n in names)
        intfs = [i for i in os.listdir("/sys/class/net") if prefixes and i.startswith(prefixes)]
        if intfs:
            found["interfaces"] = intfs[:10]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


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


def _belongs(ps_line, names, pids):
    """Whether a ``pgrep -fa`` line is a process of a live foreign run: one of its recorded
    pids or children, or the shell of one of its nodes."""
    pid, _, cmd = ps_line.partition(" ")
    if any(cmd.endswith(f"mininet:{n}") for n in names):
        return True
    p = int(pid)
    while p > 1:
        if p in pids:
            return True
        try:
            with open(f"/proc/{p}/stat") as f:
                p = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


def _all_node_names():
    from fabric.model import switches, hosts
    from topologies import build
    names = set()
    for g in (build("fattree", k=4), build("leafspine", leaves=4, spines=2, hosts_per_leaf=4)):
        names |= set(switches(g)) | set(hosts(g))
    return names
