"""Training traffic: MoE layers and whole training iterations, as flow schedules.

Generators only: every public generator returns a validated
:class:`~traffic.schedule.Schedule` and is reproducible from its arguments (``seed``
included). Nothing here opens a socket, reads a clock or decides routes; a fabric graph is
only read (host ``leaf`` tags) when topology-aware expert placement asks for it. Collectives
come from traffic/collectives.py and expert popularity from traffic/moe.py.

Timing model: compute on the flows it delays
--------------------------------------------
An executor knows flows only (``start_s``, ``deps``, ``delay_s``, see traffic/schedule.py), so
compute is written on the flows that wait for it. Every host runs a program of compute ops,
one after another; an op waits for its input flows, computes for ``compute_s``, then emits
its output flows. Each emitted flow gets

- ``start_s``: when it would start if the network were infinitely fast (the compute-only
  timeline of all hosts' programs);
- ``deps`` and ``delay_s``: the op's input flows and its compute time; an op without input
  flows inherits the inputs of the host's last op that had some, with the compute of every op
  since then as ``delay_s``.

The executor starts a flow at ``max(start_s, inputs received + delay_s)``: exact with an
infinitely fast network (``Schedule.ideal_times()`` reproduces ``start_s``); with a slower
one the compute after each flow's own inputs is kept, but a host's ops are not pushed back
by earlier ops' waiting beyond that, so compute is never counted twice and what is measured
is the network. Where a flow waits for inputs of different kinds (a gradient bucket waits for
the backward pass and for the previous bucket's all-reduce, as on NCCL's single stream) it
depends on all of them with ``delay_s = 0`` and keeps its compute-only ``start_s``.

Layout and phases of :func:`training_iteration`
-----------------------------------------------
Megatron's rank order: host ``s * dp + d`` is pipeline stage ``s`` of data-parallel replica
``d`` (``dp = len(hosts) / pp``), so a stage's replicas are neighbours. Per microbatch, stage
``s`` sends its activations to stage ``s + 1`` (forward) and activation gradients to ``s - 1``
(backward), in GPipe or 1F1B order. MoE layers (expert parallelism over a stage's replicas)
add per layer a dispatch all-to-all, the expert computation and a combine all-to-all in the
forward pass, and their gradients in reverse in the backward pass. The dense gradients of a
stage, ``grad_bytes``, are all-reduced across its replicas in ``buckets`` buckets that become
ready one by one during the last microbatch's backward pass (PyTorch DDP overlap; the
accumulation microbatches before it do not communicate), one collective after another.

MoE gating model
----------------
Each host (one GShard group) routes ``tokens`` tokens; each token picks ``top_k`` distinct
experts (Gumbel-top-k sampling) with the host's expert probabilities: a global Zipf
popularity (``skew``; uniform for None or 0) mixed with a per-leaf one, ``(1 -
leaf_affinity) * global + leaf_affinity * leaf`` (tokens of data shards under one leaf
prefer the same experts). ``capacity_factor`` bounds what one host sends to one expert at
``ceil(capacity_factor * tokens * top_k / n_experts)`` tokens; tokens beyond it are dropped
(they skip the expert, as in GShard and Switch). A token copy is ``hidden * dtype_bytes``
bytes; copies to an expert on the sending host stay there. Combine mirrors dispatch.
Placement: ``"round_robin"`` (expert ``e`` on host ``e % n``) or ``"topology"``: experts go,
most expected traffic first, to a host under the leaf that sends them the most traffic, while
that leaf has free expert slots (EPLB-style, from the expected rather than measured load).
"""

import math

import numpy as np

from traffic import collectives
from traffic.moe import _check_hosts, _check_positive_int, expert_popularity
from traffic.schedule import Flow, Schedule

PLACEMENTS = ("round_robin", "topology")
PP_SCHEDULES = ("1f1b", "gpipe")


def _check_time(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
    return float(value)


# -- MoE gating -----------------------------------------------------------------------------

def leaf_groups(hosts, g=None, hosts_per_leaf=None):
    """Leaf of every host: ``g``'s ``leaf`` tags, or blocks of ``hosts_per_leaf`` in order.

    Returns
    -------
    list
        One leaf label per host, or None if neither ``g`` nor ``hosts_per_leaf`` is given.

    Raises
    ------
    ValueError
        If a host of ``hosts`` has no ``leaf`` tag in ``g``.
    """
    if g is not None:
        missing = [h for h in hosts if h not in g or "leaf" not in g.nodes[h]]
        if missing:
            raise ValueError(f"g: host(s) {', '.join(missing)} have no leaf tag")
        return [g.nodes[h]["leaf"] for h in hosts]
    if hosts_per_leaf is not None:
        per = _check_positive_int("hosts_per_leaf", hosts_per_leaf)
        return [k // per for k in range(len(hosts))]
    return None


def expert_probabilities(leaves, n_experts, skew, leaf_affinity, rng):
    """Per host, the probability of each expert (see the module docstring).

    Parameters
    ----------
    leaves : list
        Leaf label per host (one label for all when leaves are unknown).
    n_experts : int
    skew : float or None
        Zipf exponent; None or 0 for uniform.
    leaf_affinity : float
        Weight of the per-leaf popularity, in [0, 1].
    rng : numpy.random.Generator
        Draws the global rank order first, then one per leaf in order of first appearance.

    Returns
    -------
    numpy.ndarray
        ``len(leaves) x n_experts``, rows summing to 1.
    """
    glob = expert_popularity(n_experts, skew or 0.0, rng)
    per_leaf = {leaf: expert_popularity(n_experts, skew or 0.0, rng)
                for leaf in dict.fromkeys(leaves)}
    return np.array([(1 - leaf_affinity) * glob + leaf_affinity * per_leaf[leaf]
                     for leaf in leaves])


def place_experts(n_hosts, experts_per_host, placement="round_robin", expected=None,
                  leaves=None):
    """Host index of every expert.

    Parameters
    ----------
    n_hosts, experts_per_host : int
    placement : {"round_robin", "topology"}
    expected : numpy.ndarray, optional
        ``n_hosts x n_experts`` expected token copies from each host to each expert; needed
        for ``"topology"``.
    leaves : list, optional
        Leaf label per host; needed for ``"topology"``.

    Returns
    -------
    numpy.ndarray
        Host index per expert; every host holds exactly ``experts_per_host`` experts.
    """
    n_experts = n_hosts * experts_per_host
    if placement == "round_robin":
        return np.arange(n_experts) % n_hosts
    if placement != "topology":
        raise ValueError(f"placement: must be one of {PLACEMENTS}, got {placement!r}")
    if leaves is None or expected is None:
        raise ValueError("placement: 'topology' needs the fabric (g) or hosts_per_leaf")
    labels = list(dict.fromkeys(leaves))
    members = {leaf: [i for i, x in enumerate(leaves) if x == leaf] for leaf in labels}
    by_leaf = np.array([expected[members[leaf]].sum(axis=0) for leaf in labels])
    free = [experts_per_host] * n_hosts
    host = np.full(n_experts, -1)
    order = sorted(((-by_leaf[a, e], a, e) for a in range(len(labels))
                    for e in range(n_experts)))
    for _, a, e in order:
        if host[e] >= 0:
            continue
        candidates = [i for i in members[labels[a]] if free[i]]
        if candidates:
            i = max(candidates, key=lambda i: (free[i], -i))
            host[e] = i
            free[i] -= 1
    return host


def gate(n_hosts, tokens, top_k, probabilities, expert_host, capacity_factor, rng):
    """Sample one layer's routing of every host's tokens.

    Parameters
    ----------
    n_hosts, tokens, top_k : int
    probabilities : numpy.ndarray
        ``n_hosts x n_experts`` (see :func:`expert_probabilities`).
    expert_host : numpy.ndarray
        Host index of each expert (see :func:`place_experts`).
    capacity_factor : float or None
        Per-host, per-expert capacity ``ceil(capacity_factor * tokens * top_k / n_experts)``
        token copies; None for no limit.
    rng : numpy.random.Generator

    Returns
    -------
    tuple
        ``(copies, dropped)``: ``copies`` the ``n_hosts x n_hosts`` int64 matrix of token
        copies kept from host i to experts on host j (diagonal included), ``dropped`` the
        token copies dropped per host.
    """
    n_experts = probabilities.shape[1]
    capacity = (None if capacity_factor is None
                else math.ceil(capacity_factor * tokens * top_k / n_experts))
    copies = np.zeros((n_hosts, n_hosts), dtype=np.int64)
    dropped = np.zeros(n_hosts, dtype=np.int64)
    for i in range(n_hosts):
        keys = np.log(probabilities[i]) + rng.gumbel(size=(tokens, n_experts))
        chosen = np.argpartition(-keys, top_k - 1, axis=1)[:, :top_k]
        per_expert = np.bincount(chosen.ravel(), minlength=n_experts)
        if capacity is not None:
            dropped[i] = int(np.maximum(per_expert - capacity, 0).sum())
            per_expert = np.minimum(per_expert, capacity)
        copies[i] = np.bincount(expert_host, weights=per_expert, minlength=n_hosts)
    return copies, dropped


class _MoE:
    """Checked MoE parameters plus the placement, shared by every layer of a schedule."""

    def __init__(self, hosts, tokens, hidden, dtype_bytes, top_k, experts_per_host,
                 capacity_factor, skew, leaf_affinity, placement, g, hosts_per_leaf, rng):
        n = self.n_hosts = len(hosts)
        self.tokens = _check_positive_int("tokens", tokens)
        self.bytes_per_token = (_check_positive_int("hidden", hidden)
                                * _check_positive_int("dtype_bytes", dtype_bytes))
        self.top_k = _check_positive_int("top_k", top_k)
        self.n_experts = n * _check_positive_int("experts_per_host", experts_per_host)
        if self.top_k > self.n_experts:
            raise ValueError(f"top_k: {top_k} exceeds the number of experts ({self.n_experts})")
        if capacity_factor is not None and (
                isinstance(capacity_factor, bool)
                or not isinstance(capacity_factor, (int, float)) or not capacity_factor > 0):
            raise ValueError(f"capacity_factor: must be None or a number > 0, "
                             f"got {capacity_factor!r}")
        self.capacity_factor = capacity_factor
        if skew is not None and (isinstance(skew, bool) or not isinstance(skew, (int, float))
                                 or not math.isfinite(skew) or skew < 0):
            raise ValueError(f"skew: must be None or a finite number >= 0, got {skew!r}")
        if isinstance(leaf_affinity, bool) or not isinstance(leaf_affinity, (int, float)) \
                or not 0 <= leaf_affinity <= 1:
            raise ValueError(f"leaf_affinity: must be a number in [0, 1], got {leaf_affinity!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement: must be one of {PLACEMENTS}, got {placement!r}")
        leaves = leaf_groups(hosts, g, hosts_per_leaf)
        self.probabilities = expert_probabilities(leaves or [0] * n, self.n_experts, skew,
                                                  leaf_affinity, rng)
        expected = self.tokens * self.top_k * self.probabilities
        self.expert_host = place_experts(n, experts_per_host, placement, expected, leaves)
        self.rng = rng
        self.dropped = 0
        self.local_copies = 0

    def layer_bytes(self):
        """Sample one layer: the bytes matrix of its dispatch (combine is its transpose)."""
        copies, dropped = gate(self.n_hosts, self.tokens, self.top_k, self.probabilities,
                               self.expert_host, self.capacity_factor, self.rng)
        self.dropped += int(dropped.sum())
        self.local_copies += int(np.trace(copies))
        return copies * self.bytes_per_token


# -- compute programs -----------------------------------------------------------------------

class _Program:
    """Per-host sequences of compute ops turned into flows (see "Timing model").

    An op is ``(inputs, compute_s, outputs, mark)``: ``inputs`` flow ids, ``outputs``
    ``(id, dst, bytes, tags)`` of the flows it emits from its host, ``mark`` an optional
    key under which :meth:`run` records ``(op start, op end, deps)`` for later use.
    """

    def __init__(self, hosts):
        self.ops = {h: [] for h in hosts}

    def op(self, host, inputs, compute_s, outputs=(), mark=None):
        self.ops[host].append((tuple(inputs), compute_s, tuple(outputs), mark))

    def run(self):
        """Schedule every op on the compute-only timeline; return (flows, marks)."""
        ready = {}                       # flow id -> compute-only arrival time
        free = {h: 0.0 for h in self.ops}
        anchor = {h: ((), 0.0) for h in self.ops}
        nxt = {h: 0 for h in self.ops}
        flows, marks = [], {}
        progress = True
        while progress:
            progress = False
            for h, ops in self.ops.items():
                while nxt[h] < len(ops) and all(i in ready for i in ops[nxt[h]][0]):
                    inputs, compute_s, outputs, mark = ops[nxt[h]]
                    nxt[h] += 1
                    progress = True
                    start = max([free[h]] + [ready[i] for i in inputs])
                    end = free[h] = start + compute_s
                    if inputs:
                        anchor[h] = (inputs, compute_s)
                    else:
                        anchor[h] = (anchor[h][0], anchor[h][1] + compute_s)
                    deps, delay = anchor[h]
                    if mark is not None:
                        marks[mark] = (start, end, deps)
                    for fid, dst, nbytes, tags in outputs:
                        flows.append(Flow(fid, h, dst, int(nbytes), deps=deps, start_s=end,
                                          tags=tags, delay_s=delay))
                        ready[fid] = end
        stuck = {h: ops[nxt[h]][0] for h, ops in self.ops.items() if nxt[h] < len(ops)}
        if stuck:   # a generator bug, never a user error
            raise RuntimeError(f"compute program deadlocks: waiting for {stuck}")
        return flows, marks


def _moe_layer_ops(prog, group, matrix, key, layer, gap_s, expert_s, inputs, phases, tags):
    """Ops of one MoE layer on every host of ``group``; returns the flows into each host.

    ``matrix``: bytes from each host to the experts on each host. ``inputs[h]``: flows host
    h waits for before the layer. ``phases``: the names of the flows out to the experts and
    back (``dispatch``/``combine`` forward, ``combine_grad``/``dispatch_grad`` backward,
    which move the same bytes as the forward pass of the same tokens).
    """
    into = {h: [] for h in group}
    back = {h: [] for h in group}
    out_tags = {**tags, "collective": "alltoall", "layer": layer}
    for i, h in enumerate(group):
        outputs = []
        for j, d in enumerate(group):
            if i != j and matrix[i, j]:
                fid = f"{key}-l{layer}-{phases[0]}-{h}-{d}"
                outputs.append((fid, d, matrix[i, j], {**out_tags, "phase": phases[0]}))
                into[d].append(fid)
        prog.op(h, inputs[h], gap_s, outputs)
    for j, d in enumerate(group):
        outputs = []
        for i, h in enumerate(group):
            if i != j and matrix[i, j]:
                fid = f"{key}-l{layer}-{phases[1]}-{d}-{h}"
                outputs.append((fid, h, matrix[i, j], {**out_tags, "phase": phases[1]}))
                back[h].append(fid)
        prog.op(d, into[d], expert_s, outputs)
    return back


def _meta_moe(moe, layers_sampled):
    copies = moe.tokens * moe.top_k * moe.n_hosts * layers_sampled
    return {"bytes_per_token": moe.bytes_per_token, "n_experts": moe.n_experts,
            "expert_host": [int(x) for x in moe.expert_host],
            "dropped_copies": moe.dropped, "local_copies": moe.local_copies,
            "drop_fraction": moe.dropped / copies if copies else 0.0}


def moe_layers(hosts, layers=1, tokens_per_host=4096, hidden=4096, dtype_bytes=2, top_k=2,
               experts_per_host=1, capacity_factor=None, skew=None, leaf_affinity=0.0,
               placement="round_robin", g=None, hosts_per_leaf=None, gap_s=0.0,
               expert_s=0.0, seed=0):
    """The forward pass of ``layers`` MoE layers: dispatch, expert compute, combine.

    Parameters
    ----------
    hosts : sequence of str
        The expert-parallel group, at least 2 hosts.
    layers : int
    tokens_per_host, hidden, dtype_bytes, top_k, experts_per_host
        As in :func:`traffic.moe.moe_alltoall`.
    capacity_factor : float, optional
        See the module docstring; None keeps every token.
    skew : float, optional
        Zipf exponent of expert popularity; None or 0 for uniform.
    leaf_affinity : float
        Weight of per-leaf popularity in [0, 1] (needs leaves to matter).
    placement : {"round_robin", "topology"}
    g : networkx.Graph, optional
        Fabric whose hosts carry ``leaf`` tags (for leaves and ``"topology"``).
    hosts_per_leaf : int, optional
        Leaves without ``g``: consecutive blocks of this many hosts.
    gap_s : float
        Compute before each layer's dispatch (attention and the gate), nominal seconds.
    expert_s : float
        Expert compute between a host's last dispatch arrival and its combine sends.
    seed : int
        Seeds popularity ranks and routing (``numpy.random.default_rng(seed)``).

    Returns
    -------
    Schedule
        Flows ``moe-l<layer>-{dispatch,combine}-<src>-<dst>`` tagged ``collective="alltoall"``,
        ``phase``, ``layer``. A combine flow from expert host j waits for every dispatch flow
        into j plus ``expert_s``; layer l+1's dispatch from host i waits for every combine
        flow into i plus ``gap_s``. ``meta`` records every parameter, the placement
        (``expert_host``), ``dropped_copies``, ``drop_fraction`` and ``local_copies``.
    """
    hosts = _check_hosts(hosts)
    layers = _check_positive_int("layers", layers)
    gap_s, expert_s = _check_time("gap_s", gap_s), _check_time("expert_s", expert_s)
    rng = np.random.default_rng(seed)
    moe = _MoE(hosts, tokens_per_host, hidden, dtype_bytes, top_k, experts_per_host,
               capacity_factor, skew, leaf_affinity, placement, g, hosts_per_leaf, rng)
    prog = _Program(hosts)
    inputs = {h: [] for h in hosts}
    for layer in range(layers):
        inputs = _moe_layer_ops(prog, hosts, moe.layer_bytes(), "moe", layer, gap_s, expert_s,
                                inputs, ("dispatch", "combine"), {"workload": "moe"})
    flows, _ = prog.run()
    meta = {"workload": "moe", "collective": "alltoall", "hosts": hosts, "layers": layers,
            "tokens_per_host": tokens_per_host, "hidden": hidden, "dtype_bytes": dtype_bytes,
            "top_k": top_k, "experts_per_host": experts_per_host,
            "capacity_factor": capacity_factor, "skew": skew, "leaf_affinity": leaf_affinity,
            "placement": placement, "hosts_per_leaf": hosts_per_leaf, "gap_s": gap_s,
            "expert_s": expert_s, "seed": seed, **_meta_moe(moe, layers)}
    return Schedule(flows, name="moe-layers", meta=meta).validate(hosts)


# -- training iteration ---------------------------------------------------------------------

def pipeline_order(schedule, stages, stage, microbatches):
    """The order of forward (``"F"``) and backward (``"B"``) microbatches on one stage.

    ``"gpipe"``: every forward, then every backward. ``"1f1b"`` (PipeDream-Flush, Megatron):
    ``stages - stage - 1`` warm-up forwards, then one forward and one backward alternately,
    then the remaining backwards.

    Examples
    --------
    >>> pipeline_order("1f1b", 3, 1, 3)
    [('F', 0), ('F', 1), ('B', 0), ('F', 2), ('B', 1), ('B', 2)]
    """
    if schedule == "gpipe":
        return [("F", m) for m in range(microbatches)] + [("B", m) for m in range(microbatches)]
    if schedule != "1f1b":
        raise ValueError(f"pp_schedule: must be one of {PP_SCHEDULES}, got {schedule!r}")
    warm = min(stages - stage - 1, microbatches)
    order = [("F", m) for m in range(warm)]
    for m in range(warm, microbatches):
        order += [("F", m), ("B", m - warm)]
    return order + [("B", m) for m in range(microbatches - warm, microbatches)]


def training_iteration(hosts, pp=1, microbatches=1, pp_schedule="1f1b",
                       activation_bytes=16 * 2**20, forward_s=0.01, backward_s=0.02,
                       grad_bytes=256 * 2**20, buckets=4, allreduce="ring", channels=1,
                       moe_layers=0, tokens=4096, hidden=4096, dtype_bytes=2, top_k=2,
                       experts_per_host=1, capacity_factor=None, skew=None, leaf_affinity=0.0,
                       placement="round_robin", g=None, hosts_per_leaf=None, expert_s=0.0,
                       seed=0):
    """One training iteration with data, pipeline and expert parallelism.

    See the module docstring for the layout, phases and timing model.

    Parameters
    ----------
    hosts : sequence of str
        ``pp * dp`` hosts in Megatron rank order.
    pp : int
        Pipeline stages; ``len(hosts)`` must be a multiple.
    microbatches : int
        Microbatches per iteration (gradient accumulation steps).
    pp_schedule : {"1f1b", "gpipe"}
    activation_bytes : int
        Activations of one microbatch between two stages (the same size flows back as
        activation gradients).
    forward_s, backward_s : float
        Dense compute of one microbatch on one stage, nominal seconds (with MoE layers, split
        evenly before each layer's dispatch).
    grad_bytes : int
        Dense gradient bytes of one stage, all-reduced across its ``dp`` replicas.
    buckets : int
        Gradient buckets (DDP ``bucket_cap_mb`` expressed as a count).
    allreduce : {"ring", "tree", "hd"}
        Algorithm of each bucket's all-reduce.
    channels : int
        Ring channels (``"ring"`` only).
    moe_layers : int
        MoE layers per stage; their experts are spread over the stage's replicas.
    tokens, hidden, dtype_bytes, top_k, experts_per_host, capacity_factor, skew,
    leaf_affinity, placement, g, hosts_per_leaf
        MoE gating per host and microbatch, as in :func:`moe_layers`.
    expert_s : float
        Expert forward compute; its backward is twice as long.
    seed : int

    Returns
    -------
    Schedule
        Flows tagged ``workload="training"``, ``phase`` (``activation``,
        ``activation_grad``, ``dispatch``, ``combine``, ``combine_grad``, ``dispatch_grad``,
        ``reduce_scatter``/``all_gather``/..., of the gradient all-reduce),
        ``microbatch``, ``stage``, ``layer``, ``bucket``. ``meta["iteration_compute_s"]``
        is the compute-only iteration time.

    Raises
    ------
    ValueError
        Naming the bad parameter.
    """
    hosts = _check_hosts(hosts)
    n = len(hosts)
    pp = _check_positive_int("pp", pp)
    if n % pp:
        raise ValueError(f"pp: {n} hosts are not a whole number of {pp}-stage pipelines")
    dp = n // pp
    microbatches = _check_positive_int("microbatches", microbatches)
    activation_bytes = _check_positive_int("activation_bytes", activation_bytes)
    grad_bytes = _check_positive_int("grad_bytes", grad_bytes)
    buckets = _check_positive_int("buckets", buckets)
    if isinstance(moe_layers, bool) or not isinstance(moe_layers, (int, np.integer)) \
            or moe_layers < 0:
        raise ValueError(f"moe_layers: must be an int >= 0, got {moe_layers!r}")
    forward_s = _check_time("forward_s", forward_s)
    backward_s = _check_time("backward_s", backward_s)
    expert_s = _check_time("expert_s", expert_s)
    if allreduce not in collectives.ALGORITHMS["allreduce"]:
        raise ValueError(f"allreduce: must be one of {collectives.ALGORITHMS['allreduce']}, "
                         f"got {allreduce!r}")
    grid = [hosts[s * dp:(s + 1) * dp] for s in range(pp)]
    rng = np.random.default_rng(seed)
    moes = [_MoE(grid[s], tokens, hidden, dtype_bytes, top_k, experts_per_host,
                 capacity_factor, skew, leaf_affinity, placement, g, hosts_per_leaf, rng)
            if moe_layers and dp > 1 else None for s in range(pp)]
    base = {"workload": "training"}
    prog = _Program(hosts)
    routing = {}      # (stage, microbatch, layer) -> dispatch bytes, reused by the backward

    def act(kind, m, s_from, s_to, d):
        return f"pp-m{m}-{kind}-{grid[s_from][d]}-{grid[s_to][d]}"

    # Ops are issued stage by stage in each stage's pipeline order; within a step every
    # replica of the stage issues its op before the MoE exchange that joins them.
    steps = [pipeline_order(pp_schedule, pp, s, microbatches) for s in range(pp)]
    for s in range(pp):
        group = grid[s]
        for kind, m in steps[s]:
            tags = {**base, "stage": s, "microbatch": m}
            if kind == "F":
                inputs = {h: [act("fwd", m, s - 1, s, d)] if s else []
                          for d, h in enumerate(group)}
                ends = [("fwd", s + 1, "activation")] if s < pp - 1 else []
                layer_phases, dense_s = ("dispatch", "combine"), forward_s
                layer_order, layer_expert_s = range(moe_layers), expert_s
            else:
                inputs = {h: [act("bwd", m, s + 1, s, d)] if s < pp - 1 else []
                          for d, h in enumerate(group)}
                ends = [("bwd", s - 1, "activation_grad")] if s else []
                layer_phases, dense_s = ("combine_grad", "dispatch_grad"), backward_s
                layer_order, layer_expert_s = reversed(range(moe_layers)), 2 * expert_s
            mark = ("last_bwd", s) if (kind, m) == ("B", microbatches - 1) else None
            if moes[s] is None:
                for d, h in enumerate(group):
                    prog.op(h, inputs[h], dense_s + layer_expert_s * moe_layers,
                            [(act(e[0], m, s, e[1], d), grid[e[1]][d], activation_bytes,
                              {**tags, "collective": "p2p", "phase": e[2]}) for e in ends],
                            mark=mark + (h,) if mark else None)
                continue
            first = True
            for layer in layer_order:
                if first and mark:
                    for h in group:   # the mark records where the last backward begins
                        prog.op(h, inputs[h], 0.0, mark=mark + (h,))
                    inputs = {h: [] for h in group}
                first = False
                if kind == "F":
                    routing[(s, m, layer)] = moes[s].layer_bytes()
                inputs = _moe_layer_ops(prog, group, routing[(s, m, layer)],
                                        f"moe-m{m}-s{s}-{kind}", layer, dense_s / moe_layers,
                                        layer_expert_s, inputs, layer_phases, tags)
            for d, h in enumerate(group):
                prog.op(h, inputs[h], 0.0,
                        [(act(e[0], m, s, e[1], d), grid[e[1]][d], activation_bytes,
                          {**tags, "collective": "p2p", "phase": e[2]}) for e in ends])
    flows, marks = prog.run()

    if dp > 1:
        sizes = collectives.split_bytes(grad_bytes, buckets)
        backward_total = backward_s + 2 * expert_s * moe_layers
        for s in range(pp):
            group = grid[s]
            prev = {h: () for h in group}
            for k, size in enumerate(sizes):
                entry = {}
                for h in group:
                    start, _, deps = marks[("last_bwd", s, h)]
                    ready = start + backward_total * (k + 1) / buckets
                    entry[h] = (ready, tuple(deps) + prev[h])
                bucket = collectives.collective_flows(
                    "allreduce", group, size, allreduce, prefix=f"dp-s{s}-b{k}",
                    tags={**base, "stage": s, "bucket": k}, entry=entry,
                    channels=channels if allreduce == "ring" else 1)
                flows += bucket
                prev = collectives.exits(bucket, group)
    compute_s = max((f.start_s for f in flows), default=0.0)
    meta = {"workload": "training", "collective": "training", "hosts": hosts, "pp": pp,
            "dp": dp, "microbatches": microbatches, "pp_schedule": pp_schedule,
            "activation_bytes": activation_bytes, "forward_s": forward_s,
            "backward_s": backward_s, "grad_bytes": grad_bytes, "buckets": buckets,
            "allreduce": allreduce, "channels": channels, "moe_layers": moe_layers,
            "expert_s": expert_s, "seed": seed, "iteration_compute_s": compute_s}
    if any(moes):
        meta.update(tokens=tokens, hidden=hidden, dtype_bytes=dtype_bytes, top_k=top_k,
                    experts_per_host=experts_per_host, capacity_factor=capacity_factor,
                    skew=skew, leaf_affinity=leaf_affinity, placement=placement,
                    hosts_per_leaf=hosts_per_leaf,
                    dropped_copies=sum(m.dropped for m in moes if m),
                    local_copies=sum(m.local_copies for m in moes if m))
    return Schedule(flows, name="training-iteration", meta=meta).validate(hosts)
