"""Source ports drawn from the run's seed (traffic/ports.py): the draw itself, the twin's use
of it, and the agent binding its connections to it (on loopback, no emulation)."""

import socket

import numpy as np
import pytest

from fabric import model
from fabric.twin import Twin
from topologies import build
from traffic import agent as agent_module, workloads
from traffic.ports import EPHEMERAL_PORTS, PortError, schedule_ports, source_ports
from traffic.schedule import Flow, Schedule, ScheduleError


def test_ports_are_in_the_ephemeral_range_distinct_per_host_and_fixed_by_the_seed():
    src = np.array([0, 1, 0, 2, 1, 0] * 50)
    a = source_ports(src, 3, seed=4)
    assert ((a >= EPHEMERAL_PORTS[0]) & (a <= EPHEMERAL_PORTS[1])).all()
    for h in range(3):
        mine = a[src == h]
        assert len(set(mine.tolist())) == len(mine)
    assert (source_ports(src, 3, seed=4) == a).all()
    assert (source_ports(src, 3, seed=5) != a).mean() > 0.9


def test_a_given_port_is_kept_and_no_other_flow_of_its_host_gets_it():
    src = np.array([0] * 200 + [1] * 200)
    free = source_ports(src, 2, seed=1)
    held = int(free[3])           # the port the draw would give flow 3 ...
    a = source_ports(src, 2, seed=1, given={10: held})   # ... given to flow 10 instead
    assert a[10] == held
    assert (a[src == 0] == held).sum() == 1
    assert len(set(a[src == 0].tolist())) == 200


def test_a_host_with_more_connections_than_ports_is_named():
    span = EPHEMERAL_PORTS[1] - EPHEMERAL_PORTS[0] + 1
    with pytest.raises(PortError, match="host h2: .* more source ports"):
        source_ports(np.ones(span + 1, dtype=np.int64), 2, seed=1, host_names=["h1", "h2"])


def test_the_schedules_ports_are_the_ones_the_twin_hashes():
    g = build("leafspine", leaves=4, spines=2, hosts_per_leaf=4)
    hosts = model.hosts(g)
    moe = workloads.build("moe_alltoall", g, 3)
    # Hosts named in another order than the fabric's: the draw follows the fabric's.
    shuffled = Schedule([Flow(f"f{i}", s, d, 1000) for i, (s, d) in enumerate(
        [("h7", "h2"), ("h2", "h9"), ("h7", "h12"), ("h16", "h1"), ("h2", "h3")])])
    assert list(shuffled.columns().hosts)[:2] != hosts[:2]
    for sched in (moe, shuffled):
        ports = schedule_ports(sched, g, 3)
        tw = Twin(g, sched, policy="ecmp", seed=3)
        assert [ports[f.id] for f in sched.flows] == tw.sport.tolist()
    other = Twin(g, moe, policy="ecmp", seed=4)
    assert other.sport.tolist() != Twin(g, moe, policy="ecmp", seed=3).sport.tolist()


def test_schedule_ports_names_a_host_the_fabric_lacks():
    g = build("leafspine", leaves=2, spines=1, hosts_per_leaf=2)
    sched = Schedule([Flow("f", "h1", "h99", 1000)])
    with pytest.raises(ScheduleError, match="'h99'"):
        schedule_ports(sched, g, 1)


def _agent(ports):
    """An agent with just what connecting needs (no coordinator)."""
    a = agent_module.Agent.__new__(agent_module.Agent)
    a.cc, a.port, a.ip, a.ports = b"cubic", 0, "127.0.0.1", ports
    return a


@pytest.fixture
def listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s
    s.close()


def test_the_agent_binds_the_drawn_port_and_takes_the_kernels_when_it_is_held(listener):
    a = _agent({"f1": 0, "f2": 0})
    a.port = listener.getsockname()[1]
    with socket.socket() as probe:           # a free port of the range, found by the kernel
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    a.ports["f1"] = free
    s1 = a._connect(Flow("f1", "h1", "h2", 1), "127.0.0.1")
    assert s1.getsockname()[1] == free
    held = socket.socket()                   # a port another socket of the host listens on
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    a.ports["f2"] = held.getsockname()[1]
    s2 = a._connect(Flow("f2", "h1", "h2", 1), "127.0.0.1")
    assert s2.getsockname()[1] not in (held.getsockname()[1], 0)
    assert s2.getpeername()[1] == a.port
    for s in (s1, s2, held):
        s.close()


def test_without_drawn_ports_the_kernel_picks(listener):
    a = _agent({})
    a.port = listener.getsockname()[1]
    s = a._connect(Flow("f1", "h1", "h2", 1), "127.0.0.1")
    assert s.getsockname()[1] > 0
    s.close()
