"""Mixture-of-Experts all-to-all and permutation traffic, as flow schedules.

Generators only: each function returns a validated :class:`~traffic.schedule.Schedule` and is
reproducible from its arguments (``seed`` included). Nothing here opens a socket, reads a
topology or times anything; executing the schedule is the agents' job and judging it the
metrics'.

MoE dispatch model
------------------
Every host holds ``tokens_per_host`` tokens and ``experts_per_host`` experts; expert ``e``
lives on host ``e % n`` (round robin). Every token goes to ``top_k`` distinct experts and
carries ``hidden * dtype_bytes`` bytes to each of them; a token whose expert is on its own host
moves nothing. The combine phase is the same matrix transposed and is not generated here.
"""

import math

import numpy as np

from traffic.schedule import ColumnarSchedule, Columns, Flow, Schedule

SCHEDULES = ("all", "shift")
PERMUTATIONS = ("random", "stride")


def _check_hosts(hosts):
    hosts = list(hosts)
    if len(hosts) < 2:
        raise ValueError(f"hosts: need at least 2 hosts, got {len(hosts)}")
    if len(set(hosts)) != len(hosts):
        raise ValueError("hosts: host names must be distinct")
    return hosts


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}: must be an int > 0, got {value!r}")
    return int(value)


def expert_popularity(n_experts, skew, rng):
    """Zipf popularity of ``n_experts`` experts with a random rank order.

    Parameters
    ----------
    n_experts : int
    skew : float
        Zipf exponent; ``p_e`` is proportional to ``1 / rank_e ** skew`` (0 = uniform).
    rng : numpy.random.Generator
        Draws the rank permutation, so the hottest expert depends on the seed.

    Returns
    -------
    numpy.ndarray
        Probabilities indexed by expert id, summing to 1.
    """
    ranks = rng.permutation(n_experts) + 1
    weights = 1.0 / ranks.astype(float) ** skew
    return weights / weights.sum()


def routed_tokens(n, tokens_per_host, top_k, experts_per_host, popularity, rng):
    """Sample top-k routing and count tokens per (source host, expert host).

    Each token picks ``top_k`` distinct experts without replacement with probabilities
    ``popularity`` (Gumbel-top-k: the k largest ``log p + Gumbel noise``).

    Parameters
    ----------
    n : int
        Hosts; expert ``e`` lives on host ``e % n``.
    tokens_per_host, top_k, experts_per_host : int
    popularity : numpy.ndarray
        Probability of each of the ``n * experts_per_host`` experts.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray
        ``n x n`` int64 matrix; entry ``[i, j]`` counts token copies from host ``i`` to experts
        on host ``j`` (the diagonal is the traffic that stays on its host).
    """
    n_experts = n * experts_per_host
    log_p = np.log(popularity)
    counts = np.zeros((n, n), dtype=np.int64)
    for i in range(n):  # one host at a time bounds memory at tokens_per_host x n_experts
        keys = log_p + rng.gumbel(size=(tokens_per_host, n_experts))
        chosen = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
        counts[i] = np.bincount((chosen % n).ravel(), minlength=n)
    return counts


def _alltoall_schedule(hosts, pair_bytes, schedule, channels, tags, meta):
    """The all-to-all as a columnar schedule, started all at once or in pairwise-shift rounds.

    Round ``r`` (1..n-1) is host ``i`` -> host ``(i + r) % n``, flows in round order then
    sender order. With ``shift``, a sender's k-th flow (counting only the flows it really has,
    in round order) depends on its (k - channels)-th, so at most ``channels`` of its flows are
    in flight. ``pair_bytes`` is an int (every pair) or an ``n x n`` matrix (a sampled one);
    pairs that carry nothing have no flow.
    """
    n = len(hosts)
    src = np.tile(np.arange(n, dtype=np.int32), n - 1)
    rounds = np.repeat(np.arange(1, n, dtype=np.int32), n)
    dst = (src + rounds) % n
    if np.ndim(pair_bytes) == 0:
        nbytes = np.full(len(src), int(pair_bytes), dtype=np.int64)
    else:
        nbytes = np.asarray(pair_bytes, dtype=np.int64)[src, dst]
    keep = nbytes > 0
    if not keep.all():
        src, dst, rounds, nbytes = src[keep], dst[keep], rounds[keep], nbytes[keep]
    count = len(src)
    if schedule == "shift":
        if keep.all():   # every sender has one flow per round: its k-th is round k + 1
            flow = np.arange(channels * n, count, dtype=np.int64)
            dep_idx = flow - channels * n
        else:
            by_sender = np.argsort(src, kind="stable")
            first = np.searchsorted(src[by_sender], src[by_sender])
            later = np.arange(count) - first >= channels
            flow = by_sender[later]
            dep_idx = by_sender[np.flatnonzero(later) - channels]
            order = np.argsort(flow)
            flow, dep_idx = flow[order], dep_idx[order]
        has = np.zeros(count, dtype=np.int8)
        has[flow] = 1
    else:
        dep_idx, has = np.zeros(0, dtype=np.int64), np.zeros(count, dtype=np.int8)
    dep_ptr = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(has, out=dep_ptr[1:])
    # Every flow starts as soon as its dependency allows: one zero for all of them.
    zero = np.broadcast_to(np.zeros(1), (count,))
    cols = Columns(hosts=tuple(hosts), src=src, dst=dst.astype(np.int32, copy=False),
                   bytes=nbytes, start_s=zero, delay_s=zero, dep_ptr=dep_ptr,
                   dep_idx=dep_idx.astype(np.int64, copy=False))
    return ColumnarSchedule(cols, name="moe-alltoall", meta=meta, id_format="a2a-{src}-{dst}",
                            tags=tags, tag_columns={"round": rounds})


def _alltoall_flows(hosts, matrix, schedule, channels, tags):
    """The flows of :func:`_alltoall_schedule` for a bytes matrix, as a list."""
    return list(_alltoall_schedule(hosts, matrix, schedule, channels, tags, {}).flows)


def moe_alltoall(hosts, tokens_per_host=4096, hidden=4096, dtype_bytes=2, top_k=2,
                 experts_per_host=1, skew=None, seed=0, schedule="all", channels=None):
    """The dispatch all-to-all of one MoE layer.

    Parameters
    ----------
    hosts : sequence of str
        Ranks, in rank order (at least 2).
    tokens_per_host : int
        Tokens each host routes.
    hidden, dtype_bytes : int
        A token is ``hidden * dtype_bytes`` bytes.
    top_k : int
        Distinct experts per token; at most ``len(hosts) * experts_per_host``.
    experts_per_host : int
        Experts per host; expert ``e`` lives on ``hosts[e % n]``.
    skew : float or None
        Zipf exponent of expert popularity. ``None`` or 0: exactly uniform, every off-host pair
        carries ``tokens_per_host * top_k / n`` tokens (bytes rounded to an int). Otherwise
        routing is sampled with ``numpy.random.default_rng(seed)``.
    seed : int
        Seed of the popularity rank order and of the routing sample.
    schedule : {"all", "shift"}
        ``"all"``: every flow starts at once. ``"shift"``: pairwise shift in n-1 rounds
        (round r: host i -> host (i + r) % n) with ``channels`` flows in flight per sender,
        expressed only with dependencies.
    channels : int, optional
        Flows in flight per sender for ``"shift"`` (default 1); not allowed with ``"all"``.

    Returns
    -------
    Schedule
        Flows ``a2a-<src>-<dst>`` tagged ``collective="alltoall"``, ``workload="moe"``,
        ``phase="dispatch"`` and ``round`` (the shift offset ``(j - i) % n``); pairs that carry
        nothing have no flow. ``meta`` records every parameter, ``bytes_per_token``,
        ``n_experts``; uniform: ``tokens_per_pair``; skewed: ``hot_expert``, ``hot_host`` and
        ``local_tokens`` (per host, token copies whose expert is on that host).

    Raises
    ------
    ValueError
        Naming the bad parameter.

    Examples
    --------
    >>> s = moe_alltoall(["h1", "h2", "h3", "h4"], tokens_per_host=8, hidden=4, dtype_bytes=1)
    >>> s.flow("a2a-h1-h2").bytes   # 8 tokens * 2 experts / 4 hosts * 4 bytes
    16
    """
    hosts = _check_hosts(hosts)
    n = len(hosts)
    tokens_per_host = _check_positive_int("tokens_per_host", tokens_per_host)
    hidden = _check_positive_int("hidden", hidden)
    dtype_bytes = _check_positive_int("dtype_bytes", dtype_bytes)
    top_k = _check_positive_int("top_k", top_k)
    experts_per_host = _check_positive_int("experts_per_host", experts_per_host)
    n_experts = n * experts_per_host
    if top_k > n_experts:
        raise ValueError(f"top_k: {top_k} exceeds the number of experts ({n_experts})")
    if skew is not None and (isinstance(skew, bool) or not isinstance(skew, (int, float))
                             or not math.isfinite(skew) or skew < 0):
        raise ValueError(f"skew: must be None or a finite number >= 0, got {skew!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: must be one of {SCHEDULES}, got {schedule!r}")
    if channels is not None and schedule != "shift":
        raise ValueError("channels: only applies to schedule='shift'")
    if schedule == "shift":
        channels = _check_positive_int("channels", 1 if channels is None else channels)
    bytes_per_token = hidden * dtype_bytes
    meta = {"workload": "moe", "collective": "alltoall", "phase": "dispatch", "n_hosts": n,
            "tokens_per_host": tokens_per_host, "hidden": hidden, "dtype_bytes": dtype_bytes,
            "bytes_per_token": bytes_per_token, "top_k": top_k,
            "experts_per_host": experts_per_host, "n_experts": n_experts, "skew": skew,
            "seed": seed, "schedule": schedule, "channels": channels}
    if not skew:
        # tokens_per_host * top_k / n tokens per pair, rounded half up in exact integer bytes.
        traffic = (2 * tokens_per_host * top_k * bytes_per_token + n) // (2 * n)
        meta["tokens_per_pair"] = tokens_per_host * top_k / n
    else:
        rng = np.random.default_rng(seed)
        popularity = expert_popularity(n_experts, skew, rng)
        hot = int(np.argmax(popularity))
        tokens = routed_tokens(n, tokens_per_host, top_k, experts_per_host, popularity, rng)
        meta.update(hot_expert=hot, hot_host=hosts[hot % n],
                    local_tokens=[int(t) for t in np.diag(tokens)])
        traffic = tokens * bytes_per_token
    tags = {"collective": "alltoall", "workload": "moe", "phase": "dispatch"}
    return _alltoall_schedule(hosts, traffic, schedule, channels, tags, meta).validate(hosts)


def permutation(hosts, bytes_per_flow, kind="random", stride=None, seed=0):
    """One flow per host to one other host, each host receiving exactly one.

    Parameters
    ----------
    hosts : sequence of str
        At least 2 hosts.
    bytes_per_flow : int
    kind : {"random", "stride"}
        ``"random"``: a derangement drawn with ``numpy.random.default_rng(seed)``.
        ``"stride"``: Hedera's stride pattern, host i -> host (i + stride) % n.
    stride : int, optional
        Default ``n // 2``; must not be a multiple of n. Only for ``"stride"``.
    seed : int

    Returns
    -------
    Schedule
        Flows ``perm-<src>-<dst>`` tagged ``collective="permutation"`` and ``kind``.

    Raises
    ------
    ValueError
        Naming the bad parameter.
    """
    hosts = _check_hosts(hosts)
    n = len(hosts)
    bytes_per_flow = _check_positive_int("bytes_per_flow", bytes_per_flow)
    if kind not in PERMUTATIONS:
        raise ValueError(f"kind: must be one of {PERMUTATIONS}, got {kind!r}")
    if kind == "random":
        if stride is not None:
            raise ValueError("stride: only applies to kind='stride'")
        rng = np.random.default_rng(seed)
        while True:  # rejection sampling: about 1/e of permutations are derangements
            dst = rng.permutation(n)
            if not np.any(dst == np.arange(n)):
                break
    else:
        stride = n // 2 if stride is None else stride
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) \
                or stride % n == 0:
            raise ValueError(f"stride: must be an int that is not a multiple of {n}, "
                             f"got {stride!r}")
        stride = int(stride)
        dst = (np.arange(n) + stride) % n
    flows = [Flow(id=f"perm-{hosts[i]}-{hosts[j]}", src=hosts[i], dst=hosts[j],
                  bytes=bytes_per_flow, tags={"collective": "permutation", "kind": kind})
             for i, j in enumerate(int(j) for j in dst)]
    meta = {"collective": "permutation", "kind": kind, "stride": stride, "seed": seed,
            "n_hosts": n, "bytes_per_flow": bytes_per_flow}
    return Schedule(flows, name=f"permutation-{kind}", meta=meta).validate(hosts)
