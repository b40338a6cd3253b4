"""Helpers for processes the emulation tests start inside hosts."""

import subprocess


def stop(proc):
    """End a process started in a host, whatever it is doing."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
