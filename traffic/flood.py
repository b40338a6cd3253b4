"""A host flooding new flows, and legitimate connection setup timed beside it.

Three small programs run inside emulated hosts (``python -c`` with the script text, so they
need nothing from this repository inside the host): a TCP server that accepts and closes
(:data:`SERVER`), a client that opens connections one after another and prints how long
they took (:data:`CLIENT`), and a flooder that sends UDP datagrams at a fixed rate, each to
a new destination port (a new flow for a learning controller) or all as one flow
(:data:`FLOODER`). The helpers start them in a Mininet host and read their JSON output, and
read the CPU time that the controller and Open vSwitch used meanwhile.

Used by tests/test_flood_emulation.py and bench/flood.py; it only generates and measures
traffic, it decides nothing.
"""

import json
import os
import subprocess
import sys

PORT = 6001

SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", %d))
s.listen(1024)
while True:
    c, _ = s.accept()
    c.close()
""" % PORT

CLIENT = """
import json, socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, lat, t0 = 0, [], time.monotonic()
for _ in range(n):
    t = time.monotonic()
    try:
        socket.create_connection((ip, port), timeout=10).close()
        ok += 1
    except OSError:
        pass
    lat.append(time.monotonic() - t)
lat.sort()
print(json.dumps({"completed": ok, "tried": n, "seconds": time.monotonic() - t0,
                  "p50_s": lat[n // 2], "max_s": lat[-1]}))
"""

FLOODER = """
import json, signal, socket, sys, time
ip, pps, secs, one_flow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = refused = 0
port = 1024
t0 = time.monotonic()
while True:
    elapsed = time.monotonic() - t0
    if elapsed >= secs or stopped:
        break
    while sent + refused < elapsed * pps:
        if not one_flow:
            port = port + 1 if port < 65535 else 1024
        try:
            s.sendto(b"flood", (ip, port))
            sent += 1
        except OSError:
            refused += 1
    time.sleep(0.001)
print(json.dumps({"sent": sent, "refused": refused, "seconds": elapsed,
                  "pps": sent / elapsed}))
"""


def rss_mb(pid):
    """Resident memory (MB) of a process."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cpu_s(pid):
    """User and system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ovs_pid():
    """Process id of ovs-vswitchd (the one process of every emulated switch)."""
    with open("/var/run/openvswitch/ovs-vswitchd.pid") as f:
        return int(f.read().strip())


def start_server(host):
    """The accepting server in ``host`` (a Mininet host); stop it when done."""
    return host.popen([sys.executable, "-c", SERVER], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)


def start_flood(host, ip, pps, one_flow, seconds=120):
    """``pps`` UDP datagrams per second from ``host`` to ``ip``, each to a new port (or all
    to one, ``one_flow``), for at most ``seconds``; :func:`end_flood` stops it."""
    return host.popen([sys.executable, "-c", FLOODER, ip, str(pps), str(seconds),
                       "1" if one_flow else "0"],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def end_flood(flooder):
    """Stop a flooder; what it sent: ``sent``, ``refused``, ``seconds``, ``pps``."""
    flooder.terminate()   # it stops and says what it sent
    stdout, stderr = flooder.communicate(timeout=30)
    if flooder.returncode != 0:
        raise RuntimeError(f"the flooder failed: {stderr.strip()[-300:]}")
    return json.loads(stdout)


def connect_round(host, ip, connections):
    """``connections`` TCP connections from ``host`` to the server at ``ip``, one after
    another: ``completed``, ``tried``, ``seconds``, ``p50_s``, ``max_s``."""
    out = host.popen([sys.executable, "-c", CLIENT, ip, str(PORT), str(connections)],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = out.communicate(timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"the client failed: {stderr.strip()[-300:]}")
    return json.loads(stdout)
