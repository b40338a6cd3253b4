"""Clean-up bookkeeping without an emulation: state files and sockets of dead runs go, those
of live runs stay."""

import json
import os
import subprocess

from fabric import cleanup


def _dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_dead_runs_state_and_socket_go_a_live_runs_stay(tmp_path, monkeypatch):
    monkeypatch.setattr(cleanup, "STATE_DIR", str(tmp_path))
    dead, live = _dead_pid(), os.getppid()
    for pid in (dead, live):
        (tmp_path / f"ctl-{pid}.sock").write_text("")
        (tmp_path / f"delayline-{pid}.json").write_text("{}")
        (tmp_path / f"run-{pid}.json").write_text(json.dumps({"bridges": [], "pids": []}))
    (tmp_path / f"delayline-{dead}.json.err").write_text("")
    removed = cleanup.cleanup()
    assert removed == [f"run {dead}: 0 bridges, 0 processes"]
    assert sorted(os.listdir(tmp_path)) == [f"ctl-{live}.sock", f"delayline-{live}.json",
                                            f"run-{live}.json"]
