"""Source ports of a run's TCP connections, drawn from its seed.

ECMP hashes a flow's 5-tuple, so where its packets go depends on the source port its
connection was given. Left to the kernel, the port is a fresh draw on every run and the
same spec and seed route differently from one run to the next (on the 2:1 leaf-spine's
stride permutation under ``ecmp``, efficiency 0.50 or 0.66 from one run to the next). Both
backends instead take each flow's port from :func:`source_ports`: the emulation's agents
bind their connections to it (``emulation.source_ports: seeded``) and the twin hashes it,
so a seed picks the same buckets on both, and a different seed is a different draw of
hash luck.

The draw is uniform in Linux's ephemeral range (``net.ipv4.ip_local_port_range``), distinct
per sending host, made host by host in the fabric's host order with one generator seeded
by the run's seed, each host's flows taking their ports in schedule order.
"""

import numpy as np

from traffic.metrics import fabric_codes

EPHEMERAL_PORTS = (32768, 60999)   # Linux's net.ipv4.ip_local_port_range default


class PortError(ValueError):
    """A host sends more connections than there are ports to give them."""


def source_ports(src, n_hosts, seed, given=None, host_names=None):
    """The source port of every flow, as a uint16 array in flow order.

    Parameters
    ----------
    src : numpy.ndarray
        Each flow's sending host, as an index into the fabric's hosts (``0..n_hosts-1``).
    n_hosts : int
        How many hosts the fabric has.
    seed : int
        The run's seed.
    given : dict, optional
        ``{flow index: port}`` of flows whose port is fixed already (a replayed connection):
        they keep it, and no other flow of their host is given it.
    host_names : sequence, optional
        The hosts' names, for the error a host with too many connections raises.
    """
    src = np.asarray(src)
    given = given or {}
    rng = np.random.default_rng(seed)
    span = EPHEMERAL_PORTS[1] - EPHEMERAL_PORTS[0] + 1
    ports = np.zeros(len(src), dtype=np.uint16)
    order = np.argsort(src, kind="stable")
    bounds = np.searchsorted(src[order], np.arange(n_hosts + 1))
    taken = {}
    for fi, port in given.items():
        ports[fi] = port
        taken.setdefault(int(src[fi]), set()).add(int(port))
    for h in range(n_hosts):
        mine = order[bounds[h]:bounds[h + 1]]
        if h in taken:
            mine = np.array([fi for fi in mine.tolist() if fi not in given], dtype=np.int64)
        if not len(mine):
            continue
        held = taken.get(h, ())
        if len(mine) > span - len(held):
            name = host_names[h] if host_names is not None else h
            raise PortError(f"host {name}: {len(mine)} connections need more source ports "
                            f"than Linux's {span}")
        drawn = EPHEMERAL_PORTS[0] + rng.choice(span, size=len(mine) + len(held),
                                                replace=False)
        if held:
            drawn = drawn[~np.isin(drawn, list(held))]
        ports[mine] = drawn[:len(mine)]
    return ports


def schedule_ports(schedule, g, seed):
    """``{flow id: source port}`` of every flow of ``schedule`` on fabric ``g``: the ports
    :func:`source_ports` gives the twin for the same schedule and seed (hosts in the
    fabric's order). Raises ScheduleError for a flow whose end is not a host of ``g``."""
    hosts, cols, codes = fabric_codes(g, schedule)
    ports = source_ports(codes[cols.src], len(hosts), seed, host_names=hosts)
    return {f.id: int(p) for f, p in zip(schedule.flows, ports.tolist())}
