"""Remove everything a run created, even after a crash: OVS bridges, host shells, controllers.

Each running emulation records what it creates in a state file under :data:`STATE_DIR`
(``/run/aifabric``, never /tmp: ``mn -c`` wipes /tmp/*.log). Normal teardown removes it
there and then; :func:`cleanup` removes whatever a dead run left behind (``make clean`` and
the start of every run call it). It touches nothing it did not record, except Mininet host
shells (``bash ... mininet:<name>``) whose names it recorded.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time

STATE_DIR = os.environ.get("AIFABRIC_STATE_DIR", "/run/aifabric")


def _state_path(pid=None):
    return os.path.join(STATE_DIR, f"run-{pid or os.getpid()}.json")


def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _save(path, state):
    os.makedirs(STATE_DIR, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, path)


KINDS = ("bridges", "hosts", "pids", "ovs_config")
# The command lines of an emulation's processes: Mininet shells, our controller, the agents
# and the delay forwarder.
OURS = r"mininet:|controllers\.launcher|traffic\.agent|fabric\.delayline"
LOCK_PATH = os.path.join(STATE_DIR, "emulation.lock")


class Busy(RuntimeError):
    """Another emulation holds this machine (node and bridge names would collide)."""


class MachineLock:
    """Exclusive right to build an emulation on this machine, held from start to teardown.

    Every fabric names its nodes h1, e1, ... and Open vSwitch bridges and interfaces live in
    one namespace per machine, so two emulations at once would tear down each other's nodes.
    """

    held = 0   # how many of this process's locks are held: its cleanup() needs none more

    def __init__(self):
        self._fd = None

    def acquire(self, wait_s=None):
        """Take the machine, or raise :class:`Busy` at once; with ``wait_s`` (default: the
        environment's ``AIFABRIC_LOCK_WAIT_S``, else 0) wait that long for it first, as
        the test suite does so that tests run side by side queue instead of failing."""
        if wait_s is None:
            wait_s = float(os.environ.get("AIFABRIC_LOCK_WAIT_S") or 0)
        deadline = time.monotonic() + wait_s
        os.makedirs(STATE_DIR, exist_ok=True)
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.5)
                    continue
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise Busy(f"another emulation is running on this machine (pid {holder}); "
                           "run one at a time, or `make clean` if it is gone") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        MachineLock.held += 1

    def release(self):
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
            MachineLock.held -= 1


def record(**created):
    """Note what this process is about to create: ``bridges=``, ``hosts=``, ``pids=``, or
    change: ``ovs_config=`` (``"key=value"`` items: the value an Open vSwitch ``other_config``
    key had before, empty if it was unset; see :func:`set_ovs_config`)."""
    _update(created, lambda have, new: have | new)


def forget(**removed):
    """Drop entries this process removed itself; delete the state file when it is empty."""
    _update(removed, lambda have, gone: have - gone)


def _update(changes, op):
    path = _state_path()
    state = _load(path)
    for kind, items in changes.items():
        assert kind in KINDS, kind
        state[kind] = sorted(op(set(state.get(kind, [])), set(items)))
    if any(state.get(k) for k in KINDS):
        _save(path, state)
    elif os.path.exists(path):
        os.remove(path)


def ovs_config(key):
    """The value of Open vSwitch's ``other_config:key`` (a string), or None if it is unset."""
    r = subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "get", "Open_vSwitch", ".",
                        f"other_config:{key}"], capture_output=True, text=True)
    value = r.stdout.strip().strip('"')
    return value if r.returncode == 0 and value else None


def set_ovs_config(key, value):
    """Set Open vSwitch's ``other_config:key`` to ``value``, or remove it if ``value`` is
    None or empty (back to Open vSwitch's default). Returns ovs-vsctl's error, empty if it
    took."""
    cmd = (["set", "Open_vSwitch", ".", f"other_config:{key}={value}"] if value
           else ["remove", "Open_vSwitch", ".", "other_config", key])
    r = subprocess.run(["ovs-vsctl", "--timeout=10", *cmd], capture_output=True, text=True)
    return "" if r.returncode == 0 else (r.stderr.strip() or f"exit {r.returncode}")


def restore_ovs_config(items):
    """Put back the ``"key=value"`` items :func:`record` kept (``ovs_config=``)."""
    for item in items:
        key, _, value = item.partition("=")
        set_ovs_config(key, value or None)


def remove_bridges(names):
    """Delete the named OVS bridges that exist, in one ovs-vsctl call, and their interfaces
    (``<bridge>-eth<N>``) left in the root namespace: a veth between two switches has both
    ends there, so no host namespace takes it away when it dies."""
    names = list(names)
    if not names:
        return
    prefixes = tuple(f"{n}-eth" for n in names)
    stale = [i for i in os.listdir("/sys/class/net") if i.startswith(prefixes)]
    if stale:
        subprocess.run(["ip", "-force", "-batch", "-"], capture_output=True, text=True,
                       input="".join(f"link del {i}\n" for i in stale))
    r = subprocess.run(["ovs-vsctl", "--timeout=20", "list-br"], capture_output=True, text=True)
    present = set(r.stdout.split()) & set(names)
    if present:
        # Wait for ovs-vswitchd to finish (not --no-wait): a next run creating bridges of the
        # same names while it still deletes these gets its new interfaces set down.
        cmd = ["ovs-vsctl", "--timeout=120"]
        for b in sorted(present):
            cmd += ["--", "--if-exists", "del-br", b]
        subprocess.run(cmd, capture_output=True)
    # Interfaces of dying host namespaces go away asynchronously: wait for them (deleting any
    # still there), or a next emulation creating the same names fails ("File exists").
    deadline = time.monotonic() + 20
    while True:
        left = [i for i in os.listdir("/sys/class/net") if i.startswith(prefixes)]
        if not left or time.monotonic() > deadline:
            return
        subprocess.run(["ip", "-force", "-batch", "-"], capture_output=True, text=True,
                       input="".join(f"link del {i}\n" for i in left))
        time.sleep(0.2)


def interruptible():
    """``preexec_fn`` of a run that will be stopped with SIGINT: the child takes it as Ctrl-C.

    A background job of a non-interactive shell (``make test &``, a CI step started with
    ``&``) ignores SIGINT, its children inherit that, and a Python that starts with SIGINT
    ignored keeps ignoring it: the run would go on to its end and exit 0.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_pids(pids, grace_s=3.0):
    """SIGTERM, then SIGKILL after ``grace_s``, each live pid (and its process group)."""
    live = [p for p in pids if _alive(p)]
    for p in live:
        _signal(p, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        time.sleep(0.05)
        live = [p for p in live if _alive(p)]
    for p in live:
        _signal(p, signal.SIGKILL)


def _signal(pid, sig):
    for target in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
        try:
            target()
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def kill_host_shells(names):
    """Kill Mininet host shells (``bash ... mininet:<name>``) of the named nodes."""
    wanted = {f"mininet:{n}" for n in names}
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.decode(errors="replace") in wanted for a in args):
            pids.append(int(pid))
    kill_pids(pids, grace_s=1.0)


def _owned(prefix, suffix):
    """``(pid, path)`` of the files in :data:`STATE_DIR` named ``<prefix><pid><suffix>``."""
    if not os.path.isdir(STATE_DIR):
        return []
    return [(int(f[len(prefix):-len(suffix)]), os.path.join(STATE_DIR, f))
            for f in sorted(os.listdir(STATE_DIR)) if f.startswith(prefix) and f.endswith(suffix)]


def other_live_runs():
    """``{pid: state}`` of the runs recorded by other processes that are still alive."""
    return {owner: _load(path) for owner, path in _owned("run-", ".json")
            if owner != os.getpid() and _alive(owner)}


def cleanup(include_live=False):
    """Remove what runs left behind. A run whose process is still alive is left alone unless
    ``include_live``; this process's own record always is. Returns a list of what was
    removed, for the log.

    Nodes are removed by name, and every fabric reuses the same names, so this holds the
    machine lock while it works (waiting as :meth:`MachineLock.acquire` does; it raises
    :class:`Busy` if another emulation keeps it): otherwise a run that took the machine when
    the dead one released it would lose its own bridges and shells of those names.
    ``include_live`` takes no lock (it stops the live runs anyway)."""
    lock = None
    if not include_live and not MachineLock.held:
        lock = MachineLock()
        lock.acquire()
    try:
        return _cleanup(include_live)
    finally:
        if lock is not None:
            lock.release()


def _cleanup(include_live):
    for owner, path in _owned("ctl-", ".sock"):
        if not _alive(owner):  # a dead run's coordinator socket: nothing listens
            os.remove(path)
    for suffix in (".json", ".json.err"):  # a dead run's delay forwarder's counters
        for owner, path in _owned("delayline-", suffix):
            if not _alive(owner):
                os.remove(path)
    removed = []
    live = {} if include_live else other_live_runs()
    for owner, path in _owned("run-", ".json"):
        if owner in live or owner == os.getpid():  # ours: this process is using it
            continue
        state = _load(path)
        kill_pids(state.get("pids", []))
        kill_host_shells(state.get("bridges", []) + state.get("hosts", []))
        remove_bridges(state.get("bridges", []))
        restore_ovs_config(state.get("ovs_config", []))
        removed.append(f"run {owner}: {len(state.get('bridges', []))} bridges, "
                       f"{len(state.get('pids', []))} processes")
        os.remove(path)
    return removed


def foreign_runs():
    """Bridges, node names and process ids recorded by emulations running now in another
    process (another user's run on a shared machine): the machine lock keeps them from
    overlapping with ours, but one may start between our teardown and a check."""
    names, pids = set(), set()
    for owner, state in other_live_runs().items():
        names |= set(state.get("bridges", [])) | set(state.get("hosts", []))
        pids |= set(state.get("pids", [])) | {owner}
    return names, pids


def leftovers(names=(), wait_s=20.0):
    """What an emulation could leave behind: OVS bridges, Mininet shells, our controller,
    agents and delay forwarders, interfaces of the named nodes; not what a live emulation of
    another process recorded. Waits up to ``wait_s`` for the kernel's asynchronous namespace
    clean-up before it answers; ``{}`` when nothing is left."""
    deadline = time.monotonic() + wait_s
    while True:
        found = {}
        others, other_pids = foreign_runs()
        br = [b for b in subprocess.run(["ovs-vsctl", "--timeout=10", "list-br"],
                                        capture_output=True, text=True).stdout.split()
              if b not in others]
        if br:
            found["bridges"] = br
        ps = subprocess.run(["pgrep", "-fa", OURS], capture_output=True, text=True).stdout.strip()
        ps = [line for line in ps.splitlines() if not _belongs(line, others, other_pids)]
        if ps:
            found["processes"] = ps
        prefixes = tuple(f"{n}-eth" for n in names if n not in others)
        intfs = [i for i in os.listdir("/sys/class/net") if prefixes and i.startswith(prefixes)]
        if intfs:
            found["interfaces"] = intfs[:10]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _belongs(ps_line, names, pids):
    """Whether a ``pgrep -fa`` line is a process of a live foreign run: one of its recorded
    pids or children, the shell of one of its nodes, or a process another live program
    started (a controller that a test elsewhere started before its emulation recorded it).
    A process this one started, or one orphaned (its starter died: what a killed run
    leaves), is not foreign."""
    pid, _, cmd = ps_line.partition(" ")
    if any(cmd.endswith(f"mininet:{n}") for n in names):
        return True
    chain = _ancestry(int(pid))
    if any(p in pids for p in chain):
        return True
    if os.getpid() in chain:
        return False
    # Below init: an ancestor that is no emulation process is a live program, not us; an
    # orphan's chain holds only emulation processes.
    return any(not _ours_kind(p) for p in chain[1:])


def _ancestry(pid):
    """``pid`` and its parents, up to but not including init."""
    chain = []
    while pid is not None and pid > 1:
        chain.append(pid)
        pid = _parent(pid)
    return chain


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ours_kind(pid):
    """Is ``pid`` an emulation process (a Mininet shell, our controller or an agent)?"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return bool(re.search(OURS, cmd))


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(prog="aifabric clean",
                                description="Remove what crashed runs left behind: OVS "
                                            "bridges, Mininet shells, controllers, agents.")
    p.add_argument("--all", action="store_true",
                   help="also what live runs recorded (stops them from working)")
    a = p.parse_args(argv)
    try:
        removed = cleanup(include_live=a.all)
    except Busy as e:
        print(f"aifabric clean: {e}; nothing removed (--all stops it too)", file=sys.stderr)
        return 1
    for line in removed:
        print("cleanup:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
