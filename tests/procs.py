"""Helpers for processes the emulation tests start inside hosts."""

import subprocess
import time


def stop(proc):
    """End a process started in a host, whatever it is doing."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait(what, predicate, timeout_s, period_s=0.2):
    """``predicate()``'s first true value, asked every ``period_s``; fails the test naming
    ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
