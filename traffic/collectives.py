"""Collective operations as flow schedules, step by step as NCCL and MPI run them.

Generators only: every public generator returns a validated
:class:`~traffic.schedule.Schedule` whose flows are the real algorithm's point-to-point
transfers and whose dependencies are the algorithm's data dependencies. Nothing here opens a
socket, times anything or decides routes. :func:`collective_flows` exposes the same DAGs as
plain flow lists with entry conditions so that larger workloads (traffic/training.py,
traffic/chakra.py) can embed a collective in their own DAG.

Size convention (NCCL-tests, PERFORMANCE.md)
--------------------------------------------
``size_bytes`` is NCCL-tests' S: the whole buffer of an all-reduce; the gathered (all-gather)
or scattered (reduce-scatter) buffer, i.e. ``n`` times the per-rank part; the send buffer of
an all-to-all (``S / n`` to each rank, including itself). ``meta["size_bytes"]`` carries it so
that :func:`traffic.metrics.summarize` reports algbw = S / t and busbw = algbw * factor.
Bytes are split into integers that differ by at most one, so every flow carries a whole
number of bytes and the totals are exact.

Algorithms
----------
- Ring (all-reduce, all-gather, reduce-scatter): ``channels`` rings over the hosts in the
  order given, each carrying ``1 / channels`` of S, each cut into ``chunks`` consecutive
  loops of ``n`` pieces. In step ``s`` rank ``i`` sends one piece to rank ``i + 1``; that
  send depends on what rank ``i`` received in step ``s - 1`` and on its own previous send
  (one FIFO connection per channel). All-reduce is reduce-scatter then all-gather, 2(n-1)
  steps, ``2(n-1)/n * S`` bytes sent per rank.
- Double binary tree (all-reduce): NCCL's two complementary binary trees (``ncclGetDtree``:
  the second tree mirrors the first for even n and shifts it by one rank for odd n), each
  carrying half of S in ``chunks`` pipelined chunks: a rank sends chunk c up once it has chunk
  c from all its children; the root, then every rank, sends chunk c down once it has it.
- Recursive halving-doubling (all-reduce, Rabenseifner): reduce-scatter by recursive halving
  (distance n/2, n/4, ..., 1) then all-gather by recursive doubling. For n not a power of two
  the standard remainder step is used: with n = 2^p + r, ranks 0, 2, .., 2r-2 first send
  their whole buffer to the next (odd) rank, the 2^p remaining ranks run the algorithm, and
  the odd ranks send the result back.
- All-to-all: every pair at once, or pairwise shift in n-1 rounds (round r: rank i -> rank
  i + r) with ``channels`` flows in flight per sender (traffic/moe.py's schedule).
- Lower bounds: :func:`lower_bound_s` (``traffic.metrics.collective_bound_s``) is
  ``busbw_factor * S / B``.
- Hierarchical (rail-optimized fabrics, hosts tagged ``server`` and ``rail``): transfers
  between GPUs of one server use NVLink, which is not on the fabric, so they are not flows:
  their time, ``bytes / nvlink_gbps``, becomes a ``start_s`` offset of the fabric flows
  (NVLink work before the fabric phase) or ``meta["nvlink_after_s"]`` (after it, reported,
  not executed). Across servers every rail runs its own ring (or all-to-all) among the
  same-rail GPUs of all servers, all rails in parallel: all-reduce = NVLink reduce-scatter,
  rail all-reduce of S / gpus_per_server, NVLink all-gather; all-to-all follows PXN (data
  for GPU (s', r') first moves over NVLink to the local GPU on rail r', which sends it to
  (s', r') in one flow).

Flow ids are ``<prefix>-...`` and every flow is tagged ``collective``, ``algorithm``,
``phase`` and the step coordinates (``step``, ``channel``, ``chunk``, ``tree``, ``rail``...).
"""

import networkx as nx
import numpy as np

from traffic.metrics import busbw_factor, collective_bound_s as lower_bound_s  # noqa: F401
from traffic.moe import SCHEDULES, _alltoall_flows, _check_hosts, _check_positive_int
from traffic.schedule import ColumnarSchedule, Columns, Flow, Schedule

ALGORITHMS = {
    "allreduce": ("ring", "tree", "hd"),
    "allgather": ("ring",),
    "reducescatter": ("ring",),
    "alltoall": SCHEDULES,
}
NVLINK_GBPS = 3600.0   # H100 NVLink 4: 450 GB/s per direction per GPU


def split_bytes(total, parts):
    """``total`` bytes as ``parts`` ints that differ by at most one, the larger first.

    Raises
    ------
    ValueError
        If a part would be empty (``total < parts``).

    Examples
    --------
    >>> split_bytes(10, 4)
    [3, 3, 2, 2]
    """
    if total < parts:
        raise ValueError(f"size_bytes: {total} bytes cannot be split into {parts} non-empty "
                         "pieces (raise size_bytes or lower channels/chunks)")
    q, r = divmod(int(total), parts)
    return [q + 1 if i < r else q for i in range(parts)]


# -- building blocks shared by every algorithm ----------------------------------------------

def _flow(prefix, name, src, dst, nbytes, deps, tags):
    return Flow(id=f"{prefix}-{name}-{src}-{dst}", src=src, dst=dst, bytes=int(nbytes),
                deps=tuple(d for d in deps if d is not None), tags=tags)


def _apply_entry(flows, entry):
    """Give every flow whose deps hold no earlier flow of its own sender its sender's entry.

    ``entry`` maps a host to ``(start_s, deps)``: the moment its data for the collective
    exists (a gradient bucket computed, a previous collective finished). Those flows are the
    first a rank sends in each of its chains, so nothing else of the rank can start earlier.
    """
    if not entry:
        return flows
    sender = {f.id: f.src for f in flows}
    out = []
    for f in flows:
        if f.src in entry and not any(sender.get(d) == f.src for d in f.deps):
            start_s, deps = entry[f.src]
            f = Flow(id=f.id, src=f.src, dst=f.dst, bytes=f.bytes,
                     deps=tuple(dict.fromkeys((*deps, *f.deps))),
                     start_s=max(f.start_s, start_s), tags=f.tags, delay_s=f.delay_s)
        out.append(f)
    return out


def exits(flows, hosts):
    """Per host, the flows of a collective after which the host is done with it.

    A host is done when every flow it sends or receives has completed; those are implied by
    the flows touching it that no other flow touching it depends on.

    Returns
    -------
    dict
        Host -> tuple of flow ids (empty for a host no flow touches).
    """
    touching = {h: [] for h in hosts}
    for f in flows:
        for h in (f.src, f.dst):
            if h in touching:
                touching[h].append(f)
    result = {}
    for h, fs in touching.items():
        ids = {f.id for f in fs}
        needed = {d for f in fs for d in f.deps if d in ids}
        result[h] = tuple(f.id for f in fs if f.id not in needed)
    return result


def _ring(ring, size_bytes, phases, channels, chunks, prefix, tags, name="ring", meta=None):
    """Ring reduce-scatter / all-gather / all-reduce (see the module docstring) as a columnar
    schedule (an all-reduce over 1,024 ranks is two million flows).

    ``phases`` lists ``(phase name, piece offset)``; each phase is n-1 steps, and rank i
    sends piece ``(i - s + offset) mod n`` of the loop in step s to rank i + 1, after what it
    received in step s - 1 and its own previous send on the channel. Flows come channel by
    channel, chunk by chunk, step by step, rank by rank.
    """
    n = len(ring)
    pieces = np.array(split_bytes(size_bytes, channels * chunks * n), dtype=np.int64)
    n_steps = len(phases) * (n - 1)
    flow = np.arange(channels * chunks * n_steps * n, dtype=np.int64)
    i = flow % n
    step = (flow // n) % n_steps
    loop = flow // (n * n_steps)            # channel * chunks + chunk
    chunk, channel = loop % chunks, loop // chunks
    phase = step // (n - 1)
    offsets = np.array([offset for _, offset in phases], dtype=np.int64)
    piece = (i - step + offsets[phase]) % n
    later, first_of_chunk = step > 0, (step == 0) & (chunk > 0)
    count = np.where(later, 2, np.where(first_of_chunk, 1, 0))
    dep_ptr = np.zeros(len(flow) + 1, dtype=np.int64)
    np.cumsum(count, out=dep_ptr[1:])
    dep_idx = np.empty(dep_ptr[-1], dtype=np.int64)
    at = dep_ptr[:-1]
    # What it received in the previous step, then its own previous send on the channel.
    dep_idx[at[later]] = (flow - n - i + (i - 1) % n)[later]
    dep_idx[at[later] + 1] = (flow - n)[later]
    dep_idx[at[first_of_chunk]] = (flow - n)[first_of_chunk]
    cols = Columns(hosts=tuple(ring), src=i.astype(np.int32), dst=((i + 1) % n).astype(np.int32),
                   bytes=pieces[loop * n + piece], start_s=np.broadcast_to(0.0, flow.shape),
                   delay_s=np.broadcast_to(0.0, flow.shape), dep_ptr=dep_ptr, dep_idx=dep_idx)
    return ColumnarSchedule(
        cols, name=name, meta=meta, id_format=prefix + "-c{channel}-k{chunk}-s{step}-{src}-{dst}",
        tags=tags, tag_columns={"phase": (tuple(p for p, _ in phases), phase), "step": step,
                                "channel": channel, "chunk": chunk, "piece": piece})


RING_PHASES = {
    "allreduce": (("reduce_scatter", 0), ("all_gather", 0)),
    "reducescatter": (("reduce_scatter", -1),),
    "allgather": (("all_gather", 0),),
}


def btree(n, rank):
    """Parent and children of ``rank`` in NCCL's binary tree over ``n`` ranks (root 0).

    The in-order tree of NCCL's ``ncclGetBtree``: a rank's lowest set bit gives its level,
    so leaves and inner nodes alternate.

    Returns
    -------
    tuple
        ``(parent or -1, [children])``.

    Examples
    --------
    >>> btree(14, 12)
    (8, [10, 13])
    """
    bit = 1
    while bit < n and not bit & rank:
        bit <<= 1
    if rank == 0:
        return -1, ([bit >> 1] if n > 1 else [])
    parent = (rank ^ bit) | (bit << 1)
    if parent >= n:
        parent = rank ^ bit
    low = bit >> 1
    children = [rank - low] if low else []
    while low and rank + low >= n:
        low >>= 1
    if low:
        children.append(rank + low)
    return parent, children


def double_binary_tree(n):
    """NCCL's two complementary trees (``ncclGetDtree``) as ``[tree0, tree1]``.

    Each tree is a list indexed by rank of ``(parent or -1, [children])``. The second tree
    mirrors the first (rank r -> n-1-r) for even n and shifts it by one rank for odd n, so
    most leaves of one tree are inner nodes of the other.
    """
    first = [btree(n, r) for r in range(n)]
    if n % 2:
        to, frm = (lambda x: (x + 1) % n), (lambda r: (r - 1) % n)
    else:
        to, frm = (lambda x: n - 1 - x), (lambda r: n - 1 - r)
    second = []
    for r in range(n):
        parent, children = first[frm(r)]
        second.append((-1 if parent < 0 else to(parent), [to(c) for c in children]))
    return [first, second]


def _tree(ranks, size_bytes, chunks, prefix, tags):
    n = len(ranks)
    halves = split_bytes(size_bytes, 2)
    flows = []
    for t, tree in enumerate(double_binary_tree(n)):
        pieces = split_bytes(halves[t], chunks)
        root = next(r for r in range(n) if tree[r][0] < 0)
        up_prev, down_prev = [None] * n, {}
        up = [[None] * chunks for _ in range(n)]
        order = list(nx.topological_sort(nx.DiGraph(
            [(ch, r) for r in range(n) for ch in tree[r][1]])))
        for c in range(chunks):
            ctags = {**tags, "tree": t, "chunk": c}
            for r in order:                       # leaves first
                parent, children = tree[r]
                if parent < 0:
                    continue
                f = _flow(prefix, f"t{t}-k{c}-up", ranks[r], ranks[parent], pieces[c],
                          [up[ch][c] for ch in children] + [up_prev[r]],
                          {**ctags, "phase": "reduce"})
                flows.append(f)
                up[r][c] = up_prev[r] = f.id
            down_into = {root: [up[ch][c] for ch in tree[root][1]]}
            for r in reversed(order):             # root first
                for ch in tree[r][1]:
                    f = _flow(prefix, f"t{t}-k{c}-down", ranks[r], ranks[ch], pieces[c],
                              down_into[r] + [down_prev.get((r, ch))],
                              {**ctags, "phase": "broadcast"})
                    flows.append(f)
                    down_prev[(r, ch)] = f.id
                    down_into[ch] = [f.id]
    return flows


def _hd(ranks, size_bytes, prefix, tags):
    n = len(ranks)
    m = 1 << (n.bit_length() - 1)
    rem = n - m
    flows = []
    received, last = [None] * n, [None] * n

    def send(name, i, j, nbytes, phase, step):
        f = _flow(prefix, name, ranks[i], ranks[j], nbytes, (received[i], last[i]),
                  {**tags, "phase": phase, "step": step})
        flows.append(f)
        last[i] = f.id
        return f

    for j in range(rem):
        received[2 * j + 1] = send("fold", 2 * j, 2 * j + 1, size_bytes, "fold", 0).id
    real = [2 * v + 1 if v < rem else v + rem for v in range(m)]
    pieces = split_bytes(size_bytes, m)
    blocks = [[(0, m)] for _ in range(m)]    # block owned by virtual rank v after each step
    p = m.bit_length() - 1

    def exchange(k, dist, phase, block_of):
        step = []
        for v in range(m):
            lo, hi = block_of(v)
            step.append(send(f"{phase}-s{k}", real[v], real[v ^ dist],
                             sum(pieces[lo:hi]), phase, k))
        for v in range(m):
            received[real[v]] = step[v ^ dist].id

    for k in range(p):
        dist = m >> (k + 1)

        def sent_half(v, dist=dist):
            lo, hi = blocks[v][-1]
            mid = (lo + hi) // 2
            return (lo, mid) if v & dist else (mid, hi)

        exchange(k, dist, "reduce_scatter", sent_half)
        for v in range(m):
            lo, hi = blocks[v][-1]
            mid = (lo + hi) // 2
            blocks[v].append((mid, hi) if v & dist else (lo, mid))
    for k in range(p):
        exchange(p + k, 1 << k, "all_gather", lambda v, k=k: blocks[v][p - k])
    for j in range(rem):
        send("unfold", 2 * j + 1, 2 * j, size_bytes, "unfold", 2 * p + 1)
    return flows


def collective_flows(collective, hosts, size_bytes, algorithm=None, prefix=None, tags=None,
                     entry=None, channels=1, chunks=1):
    """The flows of one collective, ready to embed in a larger DAG.

    Parameters
    ----------
    collective : {"allreduce", "allgather", "reducescatter", "alltoall"}
    hosts : sequence of str
        Ranks in rank (ring) order, at least 2, distinct.
    size_bytes : int
        NCCL-tests' S (see the module docstring).
    algorithm : str, optional
        ``allreduce``: ``"ring"`` (default), ``"tree"``, ``"hd"``; ``allgather`` and
        ``reducescatter``: ``"ring"``; ``alltoall``: ``"all"`` (default) or ``"shift"``.
    prefix : str, optional
        Flow id prefix, default ``<collective>-<algorithm>``.
    tags : dict, optional
        Extra tags for every flow.
    entry : dict, optional
        Host -> ``(start_s, deps)``: a rank's first sends start no earlier than ``start_s``
        and after ``deps`` (flow ids outside the collective) completed.
    channels : int
        Parallel rings (ring) or flows in flight per sender (``alltoall`` ``"shift"``).
    chunks : int
        Pipelined loops (ring) or chunks per tree (tree); must be 1 otherwise.

    Returns
    -------
    list of Flow

    Raises
    ------
    ValueError
        Naming the bad parameter.
    """
    hosts = _check_hosts(hosts)
    if collective not in ALGORITHMS:
        raise ValueError(f"collective: must be one of {tuple(ALGORITHMS)}, got {collective!r}")
    algorithm = ALGORITHMS[collective][0] if algorithm is None else algorithm
    if algorithm not in ALGORITHMS[collective]:
        raise ValueError(f"algorithm: {collective} supports {ALGORITHMS[collective]}, "
                         f"got {algorithm!r}")
    size_bytes = _check_positive_int("size_bytes", size_bytes)
    channels = _check_positive_int("channels", channels)
    chunks = _check_positive_int("chunks", chunks)
    if chunks > 1 and algorithm not in ("ring", "tree"):
        raise ValueError(f"chunks: only applies to ring and tree algorithms, not {algorithm!r}")
    if channels > 1 and algorithm not in ("ring", "shift"):
        raise ValueError(f"channels: only applies to ring and alltoall 'shift', "
                         f"not {algorithm!r}")
    prefix = prefix or f"{collective}-{algorithm}"
    tags = {"collective": collective, "algorithm": algorithm, **(tags or {})}
    if algorithm == "ring":
        flows = list(_ring(hosts, size_bytes, RING_PHASES[collective], channels, chunks,
                           prefix, tags).flows)
    elif algorithm == "tree":
        flows = _tree(hosts, size_bytes, chunks, prefix, tags)
    elif algorithm == "hd":
        flows = _hd(hosts, size_bytes, prefix, tags)
    else:
        n = len(hosts)
        pieces = split_bytes(size_bytes, n)
        matrix = np.tile(np.array(pieces, dtype=np.int64), (n, 1))
        flows = _renamed(_alltoall_flows(hosts, matrix, algorithm,
                                         channels if algorithm == "shift" else None,
                                         {**tags, "phase": "alltoall"}), prefix)
    return _apply_entry(flows, entry)


def _renamed(flows, prefix):
    """traffic/moe.py names all-to-all flows ``a2a-<src>-<dst>``; give them ``prefix``."""
    new = {f.id: f"{prefix}-{f.src}-{f.dst}" for f in flows}
    return [Flow(id=new[f.id], src=f.src, dst=f.dst, bytes=f.bytes,
                 deps=tuple(new[d] for d in f.deps), start_s=f.start_s, tags=f.tags,
                 delay_s=f.delay_s) for f in flows]


def _meta(hosts, collective, algorithm, size_bytes, seed, **params):
    n = len(hosts)
    return {"collective": collective, "algorithm": algorithm, "size_bytes": size_bytes,
            "ranks": n, "hosts": list(hosts), "seed": seed, **params,
            "busbw_factor": busbw_factor(collective, n)}


def _schedule(flows, hosts, collective, algorithm, size_bytes, seed, **params):
    meta = _meta(hosts, collective, algorithm, size_bytes, seed, **params)
    return Schedule(flows, name=f"{collective}-{algorithm}", meta=meta).validate(hosts)


def _ring_schedule(collective, hosts, size_bytes, channels, chunks, seed):
    """A ring collective as a columnar schedule, checked as :func:`collective_flows`
    checks it."""
    hosts = _check_hosts(hosts)
    size_bytes = _check_positive_int("size_bytes", size_bytes)
    channels = _check_positive_int("channels", channels)
    chunks = _check_positive_int("chunks", chunks)
    meta = _meta(hosts, collective, "ring", size_bytes, seed, channels=channels, chunks=chunks)
    tags = {"collective": collective, "algorithm": "ring"}
    return _ring(hosts, size_bytes, RING_PHASES[collective], channels, chunks,
                 f"{collective}-ring", tags, name=f"{collective}-ring",
                 meta=meta).validate(hosts)


def ring_allreduce(hosts, size_bytes=64 * 2**20, channels=1, chunks=1, seed=0):
    """Ring all-reduce: reduce-scatter then all-gather, 2(n-1) steps per loop.

    Parameters
    ----------
    hosts : sequence of str
        Ranks in ring order.
    size_bytes : int
        The buffer S; every rank sends ``2(n-1)/n * S`` bytes (exactly, if S is a multiple
        of ``n * channels * chunks``).
    channels : int
        Parallel rings, each with ``S / channels``.
    chunks : int
        Loops per channel, pipelined through the ring.
    seed : int
        Recorded in meta; the algorithm is deterministic.

    Returns
    -------
    Schedule
        Flows ``allreduce-ring-c<c>-k<k>-s<step>-<src>-<dst>`` tagged ``phase``
        (``reduce_scatter``/``all_gather``), ``step``, ``channel``, ``chunk`` and ``piece``
        (which n-th of the loop's data the flow carries).

    Examples
    --------
    >>> s = ring_allreduce(["h1", "h2", "h3", "h4"], size_bytes=400)
    >>> len(s), sum(f.bytes for f in s.sending("h1"))   # 2 * 3 / 4 * 400
    (24, 600)
    """
    return _ring_schedule("allreduce", hosts, size_bytes, channels, chunks, seed)


def tree_allreduce(hosts, size_bytes=64 * 2**20, chunks=4, seed=0):
    """Double binary tree all-reduce (NCCL): each tree reduces up and broadcasts down half.

    Parameters
    ----------
    hosts : sequence of str
        Ranks; rank r is ``hosts[r]``.
    size_bytes : int
        The buffer S.
    chunks : int
        Pipelined chunks per tree.
    seed : int
        Recorded in meta.

    Returns
    -------
    Schedule
        Flows ``allreduce-tree-t<tree>-k<chunk>-{up,down}-<src>-<dst>`` tagged ``tree``,
        ``chunk`` and ``phase`` (``reduce``/``broadcast``).
    """
    flows = collective_flows("allreduce", hosts, size_bytes, "tree", chunks=chunks)
    return _schedule(flows, hosts, "allreduce", "tree", size_bytes, seed, chunks=chunks)


def hd_allreduce(hosts, size_bytes=64 * 2**20, seed=0):
    """Recursive halving-doubling all-reduce (Rabenseifner), any number of ranks.

    With a power-of-two n every rank sends ``2(n-1)/n * S``; otherwise the remainder ranks
    fold in first and receive the result last (see the module docstring).

    Parameters
    ----------
    hosts : sequence of str
        Ranks.
    size_bytes : int
        The buffer S.
    seed : int
        Recorded in meta; the algorithm is deterministic.

    Returns
    -------
    Schedule
        Flows ``allreduce-hd-<phase>[-s<step>]-<src>-<dst>`` tagged ``phase``
        (``fold``, ``reduce_scatter``, ``all_gather``, ``unfold``) and ``step``.
    """
    flows = collective_flows("allreduce", hosts, size_bytes, "hd")
    n = len(hosts)
    return _schedule(flows, hosts, "allreduce", "hd", size_bytes, seed,
                     core_ranks=1 << (n.bit_length() - 1))


def ring_allgather(hosts, size_bytes=64 * 2**20, channels=1, chunks=1, seed=0):
    """Ring all-gather of an S-byte result (``S / n`` from each rank), n-1 steps.

    Parameters
    ----------
    hosts : sequence of str
        Ranks in ring order.
    size_bytes : int
        The result S; every rank sends ``(n-1)/n * S`` bytes.
    channels : int
        Parallel rings, each with ``S / channels``.
    chunks : int
        Loops per channel, pipelined through the ring.
    seed : int
        Recorded in meta; the algorithm is deterministic.
    """
    return _ring_schedule("allgather", hosts, size_bytes, channels, chunks, seed)


def ring_reducescatter(hosts, size_bytes=64 * 2**20, channels=1, chunks=1, seed=0):
    """Ring reduce-scatter of an S-byte buffer (``S / n`` kept by each rank), n-1 steps.

    Parameters
    ----------
    hosts : sequence of str
        Ranks in ring order.
    size_bytes : int
        The buffer S; every rank sends ``(n-1)/n * S`` bytes.
    channels : int
        Parallel rings, each with ``S / channels``.
    chunks : int
        Loops per channel, pipelined through the ring.
    seed : int
        Recorded in meta; the algorithm is deterministic.
    """
    return _ring_schedule("reducescatter", hosts, size_bytes, channels, chunks, seed)


def alltoall(hosts, size_bytes=64 * 2**20, schedule="all", channels=None, seed=0):
    """Uniform all-to-all: every rank sends ``S / n`` to every other rank.

    Parameters
    ----------
    hosts : sequence of str
        Ranks.
    size_bytes : int
        The buffer S of every rank.
    schedule : {"all", "shift"}
        All pairs at once, or pairwise shift in n-1 rounds with ``channels`` (default 1)
        flows in flight per sender.
    channels : int, optional
        Flows in flight per sender for ``"shift"``; not allowed with ``"all"``.
    seed : int
        Recorded in meta; the algorithm is deterministic.

    Returns
    -------
    Schedule
        Flows ``alltoall-<schedule>-<src>-<dst>`` tagged ``round``.
    """
    if channels is not None and schedule != "shift":
        raise ValueError("channels: only applies to schedule='shift'")
    channels = 1 if channels is None else channels
    flows = collective_flows("alltoall", hosts, size_bytes, schedule, channels=channels)
    return _schedule(flows, hosts, "alltoall", schedule, size_bytes, seed, channels=channels)


# -- hierarchical collectives for rail-optimized fabrics ------------------------------------

def rail_groups(hosts, gpus_per_server=None, g=None):
    """Hosts by server and rail: ``{server: {rail: host}}``, both sorted.

    Parameters
    ----------
    hosts : sequence of str
    gpus_per_server : int, optional
        Without ``g``: hosts are numbered server by server (topologies/rail.py), so host
        ``k`` (0-based) is GPU ``k % gpus_per_server + 1`` of server
        ``k // gpus_per_server + 1``.
    g : networkx.Graph, optional
        A fabric whose hosts carry ``server`` and ``rail`` tags; takes precedence.

    Raises
    ------
    ValueError
        If neither is given, a host lacks the tags, or servers do not all have the same
        rails.
    """
    hosts = _check_hosts(hosts)
    groups = {}
    if g is not None:
        for h in hosts:
            data = g.nodes[h] if h in g else {}
            if "server" not in data or "rail" not in data:
                raise ValueError(f"g: host {h!r} has no server/rail tags "
                                 "(not a rail-optimized fabric?)")
            groups.setdefault(data["server"], {})[data["rail"]] = h
    elif gpus_per_server is not None:
        gps = _check_positive_int("gpus_per_server", gpus_per_server)
        if len(hosts) % gps:
            raise ValueError(f"gpus_per_server: {len(hosts)} hosts are not whole servers of "
                             f"{gps} GPUs")
        for k, h in enumerate(hosts):
            groups.setdefault(k // gps + 1, {})[k % gps + 1] = h
    else:
        raise ValueError("give g (a rail fabric) or gpus_per_server to find servers and rails")
    rails = {tuple(sorted(r)) for r in groups.values()}
    if len(rails) != 1:
        raise ValueError(f"servers have different rails: {sorted(rails)}")
    return {s: dict(sorted(groups[s].items())) for s in sorted(groups)}


def _nvlink_s(nbytes, nvlink_gbps):
    if not nvlink_gbps > 0:
        raise ValueError(f"nvlink_gbps: must be > 0, got {nvlink_gbps!r}")
    return nbytes * 8 / (nvlink_gbps * 1e9)


HIERARCHICAL_NVLINK = {   # NVLink phase before and after the rail phase
    "allreduce": ("reduce_scatter", "all_gather"),
    "reducescatter": ("reduce_scatter", None),
    "allgather": (None, "all_gather"),
}


def hierarchical(hosts, size_bytes=64 * 2**20, collective="allreduce", gpus_per_server=None,
                 g=None, nvlink_gbps=NVLINK_GBPS, channels=1, chunks=1, seed=0):
    """A ring collective split into NVLink phases inside servers and rail rings across them.

    Parameters
    ----------
    hosts : sequence of str
        Every GPU (host) of the job.
    size_bytes : int
        NCCL-tests' S of the whole job.
    collective : {"allreduce", "allgather", "reducescatter"}
    gpus_per_server, g
        How hosts map to servers and rails, see :func:`rail_groups`.
    nvlink_gbps : float
        NVLink rate per GPU and direction, Gbit/s; an NVLink phase moving ``(G-1)/G`` of
        its data takes ``bytes * 8 / nvlink_gbps``.
    channels, chunks : int
        Of every rail ring.
    seed : int
        Recorded in meta.

    Returns
    -------
    Schedule
        One ring per rail over the same-rail GPUs of all servers, moving ``S / G`` (G GPUs
        per server), flows ``<collective>-hier-r<rail>-...`` tagged ``rail``; their first
        sends start at ``meta["nvlink_before_s"]``; ``meta["nvlink_after_s"]`` is the NVLink
        phase after the last fabric flow (not part of the schedule).

    Raises
    ------
    ValueError
        If there is a single server (nothing crosses the fabric) or a parameter is bad.
    """
    if collective not in HIERARCHICAL_NVLINK:
        raise ValueError(f"collective: must be one of {tuple(HIERARCHICAL_NVLINK)}, "
                         f"got {collective!r}")
    groups = rail_groups(hosts, gpus_per_server, g)
    if len(groups) < 2:
        raise ValueError("hierarchical collectives need at least 2 servers "
                         "(one server's traffic never reaches the fabric)")
    size_bytes = _check_positive_int("size_bytes", size_bytes)
    rails = list(next(iter(groups.values())))
    gpus = len(rails)
    shards = split_bytes(size_bytes, gpus)
    nv_bytes = (gpus - 1) * size_bytes / gpus
    before, after = (_nvlink_s(nv_bytes, nvlink_gbps) if phase else 0.0
                     for phase in HIERARCHICAL_NVLINK[collective])
    flows = []
    for rail, shard in zip(rails, shards):
        ring = [groups[s][rail] for s in groups]
        flows += collective_flows(
            collective, ring, shard, "ring", prefix=f"{collective}-hier-r{rail}",
            tags={"rail": rail, "algorithm": "hierarchical"}, channels=channels, chunks=chunks,
            entry={h: (before, ()) for h in ring})
    return _schedule(flows, list(hosts), collective, "hierarchical", size_bytes, seed,
                     servers=len(groups), gpus_per_server=gpus, rail_bytes=shards,
                     nvlink_gbps=nvlink_gbps, nvlink_before_s=before, nvlink_after_s=after,
                     channels=channels, chunks=chunks)


def hierarchical_alltoall(hosts, size_bytes=64 * 2**20, gpus_per_server=None, g=None,
                          nvlink_gbps=NVLINK_GBPS, schedule="all", channels=None, seed=0):
    """All-to-all on a rail fabric the PXN way: NVLink to the right rail, then one hop.

    GPU (s, r) has ``S / n`` for every GPU. Data for a GPU on another server and rail r'
    first moves over NVLink to GPU (s, r'), so GPU (s, r') sends GPU (s', r') one flow of
    ``G * S / n`` bytes (G GPUs per server) over its rail; data within a server never
    reaches the fabric. The fabric flows start after the NVLink phase,
    ``(G-1)/G * S / nvlink_gbps``.

    Parameters
    ----------
    hosts : sequence of str
        Ranks.
    size_bytes : int
        The buffer S of every GPU.
    gpus_per_server, g
        How hosts map to servers and rails, see :func:`rail_groups`.
    nvlink_gbps : float
        NVLink rate per GPU and direction, Gbit/s.
    schedule : {"all", "shift"}
        Every rail's flows at once, or pairwise shift rounds among the rail's servers.
    channels : int, optional
        Flows in flight per sender for ``"shift"``; not allowed with ``"all"``.
    seed : int
        Recorded in meta; the algorithm is deterministic.

    Returns
    -------
    Schedule
        Flows ``alltoall-pxn-<src>-<dst>`` tagged ``rail`` and ``round`` (the shift offset
        among the rail's servers).
    """
    groups = rail_groups(hosts, gpus_per_server, g)
    if len(groups) < 2:
        raise ValueError("hierarchical collectives need at least 2 servers "
                         "(one server's traffic never reaches the fabric)")
    size_bytes = _check_positive_int("size_bytes", size_bytes)
    if channels is not None and schedule != "shift":
        raise ValueError("channels: only applies to schedule='shift'")
    channels = 1 if channels is None else channels
    rails = list(next(iter(groups.values())))
    gpus, n = len(rails), len(hosts)
    pieces = split_bytes(size_bytes, n)
    start = _nvlink_s((gpus - 1) * size_bytes / gpus, nvlink_gbps)
    flows = []
    for rail in rails:
        ring = [groups[s][rail] for s in groups]
        # Flow (s, rail) -> (s', rail) carries what every GPU of s has for (s', rail).
        dst_index = {h: k for k, h in enumerate(hosts)}
        matrix = np.tile(np.array([gpus * pieces[dst_index[d]] for d in ring]), (len(ring), 1))
        flows += _apply_entry(_renamed(_alltoall_flows(
            ring, matrix, schedule, channels if schedule == "shift" else None,
            {"collective": "alltoall", "algorithm": "pxn", "phase": "alltoall",
             "rail": rail}), "alltoall-pxn"), {h: (start, ()) for h in ring})
    return _schedule(flows, list(hosts), "alltoall", "pxn", size_bytes, seed,
                     servers=len(groups), gpus_per_server=gpus, nvlink_gbps=nvlink_gbps,
                     nvlink_before_s=start, nvlink_after_s=0.0, schedule=schedule,
                     channels=channels)
