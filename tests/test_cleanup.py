"""Clean-up bookkeeping without an emulation: state files and sockets of dead runs go, those
of live runs stay."""

import json
import os
import shlex
import subprocess
import sys
import time

import pytest

from fabric import cleanup


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_dead_runs_state_and_socket_go_a_live_runs_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cleanup, "LOCK_PATH", str(tmp_path / "emulation.lock"))
    dead, live = _dead_pid(), os.getppid()
    for pid in (dead, live):
        (tmp_path / f"ctl-{pid}.sock").write_text("")
        (tmp_path / f"delayline-{pid}.json").write_text("{}")
        (tmp_path / f"run-{pid}.json").write_text(json.dumps({"bridges": [], "pids": []}))
    (tmp_path / f"delayline-{dead}.json.err").write_text("")
    removed = cleanup.cleanup()
    assert removed == [f"run {dead}: 0 bridges, 0 processes"]
    assert sorted(os.listdir(tmp_path)) == [f"ctl-{live}.sock", f"delayline-{live}.json",
                                            "emulation.lock", f"run-{live}.json"]


def _line(pid):
    """The ``pgrep -fa`` line :func:`cleanup.leftovers` would see for ``pid``."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f"{pid} " + f.read().replace(b"\0", b" ").decode().strip()


def _wait_for(path):
    for _ in range(200):
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read().split()[0])
        time.sleep(0.05)
    raise AssertionError(f"no pid in {path}")


def test_our_and_orphaned_controllers_are_leftovers_another_programs_is_not(tmp_path):
    """A controller this process started, and one whose starter died (what a killed run
    leaves), count as left behind; one that another live program started (a test elsewhere,
    before its emulation recorded it) does not."""
    fake = [sys.executable, "-c", "import time; time.sleep(60)", "controllers.launcher"]
    ours = subprocess.Popen(fake)
    orphan_pid = tmp_path / "orphan"
    subprocess.run(["bash", "-c", f"{shlex.join(fake)} >/dev/null & echo $! > {orphan_pid}"],
                   check=True)
    starter = tmp_path / "starter.py"
    starter.write_text(
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen({fake!r})\n"
        f"open({str(tmp_path / 'foreign')!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n")
    # The starter is orphaned at once (its bash exits): a live program that is not us.
    subprocess.run(["bash", "-c", f"{sys.executable} {starter} >/dev/null 2>&1 &"], check=True)
    pids = [ours.pid, _wait_for(orphan_pid), _wait_for(tmp_path / "foreign")]
    try:
        belongs = [cleanup._belongs(_line(p), set(), set()) for p in pids]
        assert belongs == [False, False, True]
    finally:
        for p in pids:
            cleanup._signal(p, 9)
        subprocess.run(["pkill", "-f", str(starter)])
        ours.wait()


def test_clean_up_waits_for_the_machine_and_removes_nothing_while_a_run_holds_it(
        tmp_path, monkeypatch):
    """A dead run's nodes are removed by name, names every fabric reuses: while another
    emulation holds the machine (it may have taken it as the dead run released it, and built
    nodes of the same names), nothing is removed and `aifabric clean` says why."""
    monkeypatch.setattr(cleanup, "STATE_DIR", str(tmp_path))
    monkeypatch.setattr(cleanup, "LOCK_PATH", str(tmp_path / "emulation.lock"))
    monkeypatch.setenv("AIFABRIC_LOCK_WAIT_S", "0")
    # What the clean-up would remove is noted, not removed: these names may be a live
    # emulation's on this machine (a test's record is no emulation's).
    removed_nodes = []
    monkeypatch.setattr(cleanup, "kill_host_shells", removed_nodes.extend)
    monkeypatch.setattr(cleanup, "remove_bridges", removed_nodes.extend)
    dead = _dead_pid()
    record = tmp_path / f"run-{dead}.json"
    record.write_text(json.dumps({"bridges": ["e1"], "hosts": ["h1"], "pids": []}))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from fabric import cleanup; "
         f"cleanup.LOCK_PATH = {str(tmp_path / 'emulation.lock')!r}; "
         "cleanup.MachineLock().acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(cleanup.Busy, match=f"pid {holder.pid}"):
            cleanup.cleanup()
        assert record.exists() and removed_nodes == []
        assert cleanup.main([]) == 1
    finally:
        holder.kill()
        holder.wait()
    assert cleanup.cleanup() == [f"run {dead}: 1 bridges, 0 processes"]
    assert not record.exists() and sorted(removed_nodes) == ["e1", "e1", "h1"]


def test_an_emulation_without_open_vswitch_says_so_before_building_anything(tmp_path,
                                                                          monkeypatch):
    """With Open vSwitch down (ovs-vsctl cannot reach its database) or not installed, an
    emulation refuses with one error naming it and how to start it, instead of Mininet's
    message and exit."""
    from fabric.emulate import EmulationError, check_ovs
    fake = tmp_path / "ovs-vsctl"
    fake.write_text("#!/bin/sh\necho 'ovs-vsctl: unix:/var/run/openvswitch/db.sock: database"
                    " connection failed (Connection refused)' >&2\nexit 1\n")
    fake.chmod(0o755)
    path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{tmp_path}:{path}")
    with pytest.raises(EmulationError, match=r"^Open vSwitch is not running \(ovs-vsctl "
                                             r"show: .*database connection failed.*make setup"):
        check_ovs()
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(EmulationError, match="^Open vSwitch is not installed"):
        check_ovs()
    monkeypatch.setenv("PATH", path)
    check_ovs()   # this machine's runs Open vSwitch (make setup)
