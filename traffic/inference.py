"""Inference serving traffic as flow schedules, and request-level metrics from flow records.

Generators and metrics only: :func:`inference` returns a validated
:class:`~traffic.schedule.Schedule` reproducible from its arguments (``seed`` included), and
:func:`request_metrics` / :func:`inference_summary` read flow records. Nothing here opens a
socket, reads a clock or decides routes; the fabric graph is only read to place requests.

Serving model
-------------
Requests arrive open loop (their times do not depend on earlier answers): Poisson at
``rate_rps``, or bursty, a two-state Markov-modulated Poisson process that alternates between
``rate_rps`` and ``burst_rate_rps`` with exponential sojourns of mean ``burst_off_s`` and
``burst_on_s`` (``rate_rps = 0`` is an on/off source). Prompt and output lengths are
lognormal with the given means and shape ``length_sigma`` (0: fixed), in
``[1, max_tokens]``. Text travels at ``bytes_per_token`` plus ``overhead_bytes`` per message.

A batcher closes a batch when it holds ``max_batch`` requests or ``max_wait_s`` after its
first request arrived, whichever is first. A model server runs one batch at a time: prefill
of all prompts (``prefill_s_per_token`` per prompt token), which yields every request's first
token, then decode steps of ``decode_step_s`` each; a request is complete after its last
output token, the batch when its longest request is.

- ``placement="gateway"``: ``hosts[0]`` is a gateway that batches, the next ``servers`` hosts
  are model servers, the rest clients. Flows per request: ``request`` (client -> gateway),
  ``first_token`` and ``response`` (gateway -> client); per batch: ``batch`` (gateway ->
  server, once the batch closed and all its requests arrived), ``first_tokens`` (server ->
  gateway after prefill) and per request ``completion`` (server -> gateway after its decode).
  Each batch goes to the server that is free first on the compute-only timeline.
- ``disaggregated=True`` (gateway only): the first ``prefill_servers`` servers prefill, the
  others decode. After prefill a ``kv_cache`` flow of :func:`kv_cache_bytes` for the batch's
  prompt tokens goes from the prefill to the decode server, which sends the completions.
- ``placement="nearest"`` or ``"best"`` (edge fabrics, needs ``g``): hosts carry ``site``;
  the first ``servers_per_site`` hosts of every edge site and every host of the data center
  (site 0, ``dc_speedup`` times faster) serve, the other hosts are clients. Each request goes
  straight to a server chosen on the graph (:func:`place_requests`); the server batches
  itself; flows per request are ``request``, ``first_token`` and ``response``.

Timing follows traffic/training.py: ``start_s`` is the compute-only timeline (arrival, batch
close, server queueing), ``deps`` the data a flow needs and ``delay_s`` the compute after
it (prefill, decode).

Request metrics
---------------
Every per-request flow carries the tag ``request`` (an int). For request r: arrival = the
``start_s`` of its ``request`` flow (the open-loop arrival); time to first token (TTFT) =
end of its ``first_token`` flow - arrival; end-to-end latency = end of its ``response`` flow
(``first_token`` if it has a single output token) - arrival. Goodput counts the requests that
meet both SLOs per second of the run (first arrival to last completion).
"""

import math

import networkx as nx
import numpy as np

from fabric.model import hosts as fabric_hosts
from traffic.metrics import _check_time_scale, flow_table, percentiles
from traffic.moe import _check_hosts, _check_positive_int
from traffic.schedule import Flow, Schedule
from traffic.training import _check_time

ARRIVALS = ("poisson", "bursty")
PLACEMENTS = ("gateway", "nearest", "best")
# Attention geometry (layers, KV heads, head dim) from the models' published configs.
MODELS = {
    "llama-3-8b": (32, 8, 128),
    "llama-3-70b": (80, 8, 128),
    "mixtral-8x7b": (32, 8, 128),
    "qwen2-7b": (28, 4, 128),
}


def kv_cache_bytes(tokens, layers, kv_heads, head_dim, dtype_bytes=2):
    """Bytes of the KV cache of ``tokens`` tokens: ``layers * kv_heads * head_dim * tokens *
    dtype_bytes * 2`` (a key and a value per head).

    Examples
    --------
    >>> kv_cache_bytes(1, *MODELS["llama-3-8b"])   # 128 KiB per token
    131072
    """
    return int(layers) * int(kv_heads) * int(head_dim) * int(tokens) * int(dtype_bytes) * 2


def arrival_times(n_requests, rng, arrival="poisson", rate_rps=100.0, burst_rate_rps=None,
                  burst_on_s=0.05, burst_off_s=0.2):
    """Open-loop arrival times (seconds, sorted) of ``n_requests`` requests.

    Parameters
    ----------
    n_requests : int
    rng : numpy.random.Generator
    arrival : {"poisson", "bursty"}
        ``"bursty"``: two-state MMPP starting in the ``rate_rps`` state (see the module
        docstring).
    rate_rps : float
        Poisson rate, or the rate outside bursts (may be 0 for on/off).
    burst_rate_rps : float, optional
        Rate during bursts; required for ``"bursty"``.
    burst_on_s, burst_off_s : float
        Mean time in the burst and in the quiet state.

    Returns
    -------
    numpy.ndarray
    """
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival: must be one of {ARRIVALS}, got {arrival!r}")
    rate = _check_time("rate_rps", rate_rps)
    if arrival == "poisson":
        if not rate > 0:
            raise ValueError("rate_rps: must be > 0 for Poisson arrivals")
        return np.cumsum(rng.exponential(1.0 / rate, size=n_requests))
    if burst_rate_rps is None:
        raise ValueError("burst_rate_rps: required for bursty arrivals")
    rates = (rate, _check_time("burst_rate_rps", burst_rate_rps))
    means = (_check_time("burst_off_s", burst_off_s), _check_time("burst_on_s", burst_on_s))
    if not max(rates) > 0 or not min(means) > 0:
        raise ValueError("bursty arrivals need a rate > 0 and sojourn times > 0")
    times, t, state = [], 0.0, 0
    while len(times) < n_requests:
        end = t + rng.exponential(means[state])
        while rates[state] > 0 and len(times) < n_requests:
            t += rng.exponential(1.0 / rates[state])
            if t > end:
                break
            times.append(t)
        t, state = end, 1 - state
    return np.array(times)


def token_lengths(n, mean, sigma, max_tokens, rng):
    """``n`` lognormal token counts with mean ``mean`` and shape ``sigma``, in [1, max]."""
    mean = _check_positive_int("tokens mean", mean)
    if sigma == 0:
        values = np.full(n, float(mean))
    else:
        values = rng.lognormal(math.log(mean) - sigma ** 2 / 2, sigma, size=n)
    return np.clip(np.rint(values), 1, max_tokens).astype(int)


def dynamic_batches(arrival_s, max_batch, max_wait_s):
    """Group requests into batches as a dynamic batcher does.

    A batch opens with the first request not yet batched and closes when it holds
    ``max_batch`` requests (at the last one's arrival) or ``max_wait_s`` after it opened.

    Parameters
    ----------
    arrival_s : sequence of float
        Arrival times, sorted.
    max_batch : int
    max_wait_s : float

    Returns
    -------
    list of tuple
        ``(request indices, close time)`` in order.

    Examples
    --------
    >>> dynamic_batches([0.0, 0.1, 0.2, 1.0], max_batch=2, max_wait_s=0.5)
    [([0, 1], 0.1), ([2], 0.7), ([3], 1.5)]
    """
    batches, i, n = [], 0, len(arrival_s)
    while i < n:
        opened = arrival_s[i]
        members = [i]
        i += 1
        while i < n and len(members) < max_batch and arrival_s[i] <= opened + max_wait_s:
            members.append(i)
            i += 1
        close = arrival_s[members[-1]] if len(members) == max_batch else opened + max_wait_s
        batches.append((members, float(close)))
    return batches


def path_latency_s(g, src, dst, link_load=None):
    """One-way latency from ``src`` to ``dst``: propagation plus a load-dependent queue.

    Each link costs its ``delay_us`` plus an M/M/1 queueing term ``mtu_us * rho / (1 -
    rho)`` where ``rho`` is its utilisation in ``link_load`` and ``mtu_us`` the time to send
    1500 bytes at its capacity (a saturated link, rho >= 1, costs an hour). The path is the
    cheapest by that cost (networkx Dijkstra).

    Parameters
    ----------
    g : networkx.Graph
    src, dst : str
    link_load : dict, optional
        ``(u, v)`` (either order) or ``"u-v"`` -> utilisation in [0, 1].
    """
    load = _loads(link_load)

    def cost(u, v, d):
        rho = load.get(frozenset((u, v)), 0.0)
        mtu_us = 1500 * 8 / (d["capacity_gbps"] * 1e3)
        queue = 3.6e9 if rho >= 1 else mtu_us * rho / (1 - rho)
        return d["delay_us"] + queue

    return nx.shortest_path_length(g, src, dst, weight=cost) / 1e6


def _loads(link_load):
    out = {}
    for key, rho in (link_load or {}).items():
        ends = key.split("-") if isinstance(key, str) else key
        if len(ends) != 2:
            raise ValueError(f"link_load: key {key!r} must be (u, v) or 'u-v'")
        out[frozenset(ends)] = float(rho)
    return out


def place_requests(g, requests, servers, policy="nearest", speed=None, link_load=None,
                   prefill_s_per_token=5e-5, decode_step_s=0.02, max_batch=8):
    """Choose a server for every request on the fabric graph.

    ``"nearest"``: the lowest round-trip latency (:func:`path_latency_s`). ``"best"``:
    in arrival order, the lowest estimated completion: round trip + wait for the server's
    backlog so far + the request's own service; each assignment adds its share of work
    (prefill, and decode amortised over ``max_batch``) to the server's backlog. Ties go to
    the lower latency, then to the first server.

    Parameters
    ----------
    g : networkx.Graph
    requests : sequence of tuple
        ``(client, arrival_s, prompt_tokens, output_tokens)`` in arrival order.
    servers : sequence of str
    policy : {"nearest", "best"}
    speed : dict, optional
        Server -> speed-up of its compute (default 1).
    link_load : dict, optional
        See :func:`path_latency_s`.

    Returns
    -------
    list of str
        The server of each request.
    """
    if policy not in ("nearest", "best"):
        raise ValueError(f"placement: must be 'nearest' or 'best', got {policy!r}")
    speed = speed or {}
    rtt = {}
    for client in dict.fromkeys(r[0] for r in requests):
        for s in servers:
            rtt[client, s] = 2 * path_latency_s(g, client, s, link_load)
    backlog = {s: 0.0 for s in servers}
    chosen = []
    for client, t, prompt, output in requests:
        def cost(s):
            own = (prompt * prefill_s_per_token + output * decode_step_s) / speed.get(s, 1.0)
            wait = max(0.0, backlog[s] - t) if policy == "best" else 0.0
            return (rtt[client, s] + (wait + own if policy == "best" else 0.0),
                    rtt[client, s])
        best = min(servers, key=cost)
        share = (prompt * prefill_s_per_token + output * decode_step_s / max_batch)
        backlog[best] = max(backlog[best], t) + share / speed.get(best, 1.0)
        chosen.append(best)
    return chosen


def _roles(hosts, placement, g, servers, servers_per_site, dc_speedup):
    """(gateway or None, servers, clients, speed) for the placement."""
    if placement == "gateway":
        servers = _check_positive_int("servers", servers)
        if len(hosts) < servers + 2:
            raise ValueError(f"servers: {len(hosts)} hosts cannot hold a gateway, {servers} "
                             "servers and a client")
        return hosts[0], hosts[1:1 + servers], hosts[1 + servers:], {}
    if g is None:
        raise ValueError(f"placement: {placement!r} needs the fabric graph g (edge topology)")
    per_site = _check_positive_int("servers_per_site", servers_per_site)
    site = {}
    for h in hosts:
        if h not in g or "site" not in g.nodes[h]:
            raise ValueError(f"g: host {h!r} has no site tag (not an edge topology?)")
        site.setdefault(g.nodes[h]["site"], []).append(h)
    order = {h: k for k, h in enumerate(fabric_hosts(g))}
    serving, speed = [], {}
    for s, members in sorted(site.items()):
        members.sort(key=order.get)
        chosen = members if s == 0 else members[:per_site]
        serving += chosen
        speed.update({h: (dc_speedup if s == 0 else 1.0) for h in chosen})
    clients = [h for h in hosts if h not in speed]
    if not clients:
        raise ValueError("no client hosts left: lower servers_per_site or add hosts per site")
    return None, serving, clients, speed


class _Server:
    """Compute-only timeline of one model server: one batch at a time."""

    def __init__(self, speed):
        self.speed = speed
        self.free_s = 0.0


def inference(hosts, n_requests=200, arrival="poisson", rate_rps=100.0, burst_rate_rps=None,
              burst_on_s=0.05, burst_off_s=0.2, prompt_tokens=512, output_tokens=128,
              length_sigma=0.5, max_tokens=4096, bytes_per_token=4, overhead_bytes=256,
              max_batch=8, max_wait_s=0.01, servers=2, prefill_s_per_token=5e-5,
              decode_step_s=0.02, disaggregated=False, prefill_servers=1, model="llama-3-8b",
              kv_dtype_bytes=2, placement="gateway", g=None, servers_per_site=1,
              dc_speedup=2.0, link_load=None, seed=0):
    """An inference serving scenario (see the module docstring).

    Parameters
    ----------
    hosts : sequence of str
    n_requests : int
    arrival, rate_rps, burst_rate_rps, burst_on_s, burst_off_s
        See :func:`arrival_times`.
    prompt_tokens, output_tokens : int
        Mean lengths; ``length_sigma`` the lognormal shape, ``max_tokens`` the cap.
    bytes_per_token, overhead_bytes : int
        Wire size of text: ``tokens * bytes_per_token + overhead_bytes`` per message.
    max_batch, max_wait_s
        Dynamic batching (:func:`dynamic_batches`).
    servers : int
        Model servers behind the gateway (``placement="gateway"``).
    prefill_s_per_token, decode_step_s : float
        Server compute, nominal seconds.
    disaggregated : bool
        Prefill/decode disaggregation (gateway only), ``prefill_servers`` of the servers
        prefill; the KV cache of ``model`` (a key of :data:`MODELS`) in ``kv_dtype_bytes``
        moves to a decode server.
    placement : {"gateway", "nearest", "best"}
    g : networkx.Graph, optional
        Edge fabric for ``"nearest"``/``"best"``; ``servers_per_site``, ``dc_speedup`` and
        ``link_load`` (see :func:`place_requests`) shape the choice.
    seed : int
        Seeds arrivals, lengths and clients.

    Returns
    -------
    Schedule
        ``meta`` records every parameter, the roles, and per request its arrival, client,
        server, prompt and output tokens (``meta["requests"]``).
    """
    hosts = _check_hosts(hosts)
    n = _check_positive_int("n_requests", n_requests)
    if placement not in PLACEMENTS:
        raise ValueError(f"placement: must be one of {PLACEMENTS}, got {placement!r}")
    max_batch = _check_positive_int("max_batch", max_batch)
    max_wait_s = _check_time("max_wait_s", max_wait_s)
    prefill = _check_time("prefill_s_per_token", prefill_s_per_token)
    decode = _check_time("decode_step_s", decode_step_s)
    token_b = _check_positive_int("bytes_per_token", bytes_per_token)
    overhead = _check_time("overhead_bytes", overhead_bytes)
    if model not in MODELS:
        raise ValueError(f"model: must be one of {sorted(MODELS)}, got {model!r}")
    rng = np.random.default_rng(seed)
    arrivals = arrival_times(n, rng, arrival, rate_rps, burst_rate_rps, burst_on_s,
                             burst_off_s)
    max_tokens = _check_positive_int("max_tokens", max_tokens)
    prompts = token_lengths(n, prompt_tokens, length_sigma, max_tokens, rng)
    outputs = token_lengths(n, output_tokens, length_sigma, max_tokens, rng)
    gateway, serving, clients, speed = _roles(hosts, placement, g, servers, servers_per_site,
                                              dc_speedup)
    client = [clients[k] for k in rng.integers(len(clients), size=n)]

    def text(tokens):
        return int(tokens * token_b + overhead)

    def rtag(r, phase):
        return {"workload": "inference", "request": r, "phase": phase}

    if gateway is not None:
        first_hop = [gateway] * n
    else:
        if disaggregated:
            raise ValueError("disaggregated: only with placement='gateway'")
        first_hop = place_requests(
            g, [(client[r], float(arrivals[r]), int(prompts[r]), int(outputs[r]))
                for r in range(n)], serving, placement, speed, link_load, prefill, decode,
            max_batch)
    flows = [Flow(f"inf-r{r}-request", client[r], first_hop[r], text(prompts[r]),
                  start_s=float(arrivals[r]),
                  tags={**rtag(r, "request"), "prompt_tokens": int(prompts[r]),
                        "output_tokens": int(outputs[r])}) for r in range(n)]
    server_of = [None] * n

    def serve(members, close_s, srv, first_to, inputs, kv_to=None):
        """Append the flows of one batch that ``srv`` serves once ``inputs`` arrived.

        ``first_to`` sends the first tokens to the clients; ``kv_to`` is the decode server
        of a disaggregated batch.
        """
        node = pool[srv]
        start = max(close_s, node.free_s)
        prefill_s = prefill * sum(int(prompts[r]) for r in members) / node.speed
        first_at = start + prefill_s
        btag = {"workload": "inference", "requests": tuple(members)}
        firsts = {}
        if gateway is not None:
            fid = f"inf-b{batch_no}-first_tokens"
            flows.append(Flow(fid, srv, gateway, text(len(members)), deps=inputs,
                              start_s=first_at, delay_s=prefill_s,
                              tags={**btag, "phase": "first_tokens", "batch": batch_no}))
            firsts = {r: ((fid,), first_at, 0.0) for r in members}
        else:
            firsts = {r: (inputs, first_at, prefill_s) for r in members}
        for r in members:
            deps, at, delay = firsts[r]
            flows.append(Flow(f"inf-r{r}-first_token", first_to, client[r], text(1),
                              deps=deps, start_s=at, delay_s=delay,
                              tags=rtag(r, "first_token")))
        decoder, dec_inputs, dec_start, dec_offset = srv, inputs, start, prefill_s
        if kv_to is not None:
            decoder = kv_to
            kv_id = f"inf-b{batch_no}-kv_cache"
            layers, kv_heads, head_dim = MODELS[model]
            flows.append(Flow(kv_id, srv, decoder,
                              kv_cache_bytes(sum(int(prompts[r]) for r in members), layers,
                                             kv_heads, head_dim, kv_dtype_bytes),
                              deps=inputs, start_s=first_at, delay_s=prefill_s,
                              tags={**btag, "phase": "kv_cache", "batch": batch_no}))
            node.free_s = first_at
            node = pool[decoder]
            dec_inputs, dec_start, dec_offset = (kv_id,), max(first_at, node.free_s), 0.0
        longest = 0.0
        for r in members:
            server_of[r] = decoder if kv_to is None else [srv, decoder]
            steps = int(outputs[r]) - 1
            if steps == 0:
                continue
            delay = dec_offset + decode * steps / node.speed
            longest = max(longest, decode * steps / node.speed)
            at = dec_start + delay
            if gateway is not None:
                cid = f"inf-r{r}-completion"
                flows.append(Flow(cid, decoder, gateway, text(steps), deps=dec_inputs,
                                  start_s=at, delay_s=delay, tags=rtag(r, "completion")))
                flows.append(Flow(f"inf-r{r}-response", gateway, client[r], text(steps),
                                  deps=(cid,), start_s=at, tags=rtag(r, "response")))
            else:
                flows.append(Flow(f"inf-r{r}-response", decoder, client[r], text(steps),
                                  deps=dec_inputs, start_s=at, delay_s=delay,
                                  tags=rtag(r, "response")))
        node.free_s = dec_start + dec_offset + longest

    pool = {s: _Server(speed.get(s, 1.0)) for s in serving}
    batch_no = 0
    if gateway is not None:
        if disaggregated:
            prefill_servers = _check_positive_int("prefill_servers", prefill_servers)
            if prefill_servers >= len(serving):
                raise ValueError(f"prefill_servers: {prefill_servers} leaves no decode server "
                                 f"among {len(serving)} servers")
            prefillers, decoders = serving[:prefill_servers], serving[prefill_servers:]
        else:
            prefillers, decoders = serving, None
        for members, close_s in dynamic_batches(arrivals, max_batch, max_wait_s):
            srv = min(prefillers, key=lambda s: pool[s].free_s)
            bid = f"inf-b{batch_no}-batch"
            flows.append(Flow(bid, gateway, srv, sum(text(prompts[r]) for r in members),
                              deps=[f"inf-r{r}-request" for r in members], start_s=close_s,
                              tags={"workload": "inference", "phase": "batch",
                                    "batch": batch_no, "requests": tuple(members)}))
            kv_to = min(decoders, key=lambda s: pool[s].free_s) if decoders else None
            serve(members, close_s, srv, gateway, (bid,), kv_to)
            batch_no += 1
    else:
        for srv in serving:
            mine = [r for r in range(n) if first_hop[r] == srv]
            for members, close_s in dynamic_batches([arrivals[r] for r in mine], max_batch,
                                                    max_wait_s):
                members = [mine[k] for k in members]
                serve(members, close_s, srv, srv,
                      tuple(f"inf-r{r}-request" for r in members))
                batch_no += 1
    meta = {"workload": "inference", "hosts": hosts, "n_requests": n, "arrival": arrival,
            "rate_rps": rate_rps, "burst_rate_rps": burst_rate_rps, "burst_on_s": burst_on_s,
            "burst_off_s": burst_off_s, "prompt_tokens": prompt_tokens,
            "output_tokens": output_tokens, "length_sigma": length_sigma,
            "max_tokens": max_tokens, "bytes_per_token": token_b,
            "overhead_bytes": overhead_bytes, "max_batch": max_batch, "max_wait_s": max_wait_s,
            "servers": serving, "gateway": gateway, "clients": clients,
            "prefill_s_per_token": prefill, "decode_step_s": decode,
            "disaggregated": disaggregated, "prefill_servers": prefill_servers,
            "model": model, "kv_dtype_bytes": kv_dtype_bytes, "placement": placement,
            "servers_per_site": servers_per_site, "dc_speedup": dc_speedup, "seed": seed,
            "batches": batch_no,
            "requests": [{"arrival_s": float(arrivals[r]), "client": client[r],
                          "server": server_of[r], "prompt_tokens": int(prompts[r]),
                          "output_tokens": int(outputs[r])} for r in range(n)]}
    return Schedule(flows, name=f"inference-{placement}", meta=meta).validate(hosts)


# -- metrics ---------------------------------------------------------------------------------

def request_metrics(schedule, records, time_scale=1.0):
    """Per request: arrival, TTFT and end-to-end latency from the flow records.

    Pass the schedule that was executed (after any ``scale_times``), so that its
    ``start_s`` and the records share one clock; results are multiplied by ``time_scale``
    into nominal seconds.

    Returns
    -------
    list of dict
        Sorted by request: ``request``, ``arrival_s``, ``ttft_s``, ``e2e_s`` (None when the
        flow that defines it did not complete), ``output_tokens``.

    Raises
    ------
    ValueError
        If the records contradict the schedule (see :func:`traffic.metrics.flow_table`) or a
        request has no ``request`` or ``first_token`` flow.
    """
    scale = _check_time_scale(time_scale)
    per = {}
    starts = {f.id: f.start_s for f in schedule.flows}
    for row in flow_table(schedule, records, scale):
        r, phase = row["tags"].get("request"), row["tags"].get("phase")
        if r is None or phase not in ("request", "first_token", "response"):
            continue
        entry = per.setdefault(r, {})
        entry[phase] = row
        if phase == "request":
            entry["arrival"] = starts[row["id"]]
    result = []
    for r in sorted(per):
        entry = per[r]
        if "request" not in entry or "first_token" not in entry:
            raise ValueError(f"request {r!r}: needs a 'request' and a 'first_token' flow")
        arrival = entry["arrival"]
        last = entry.get("response", entry["first_token"])

        def since(row):
            return None if row["end_s"] is None else (row["end_s"] - arrival) * scale

        result.append({"request": r, "arrival_s": arrival * scale,
                       "ttft_s": since(entry["first_token"]), "e2e_s": since(last),
                       "output_tokens": entry["request"]["tags"].get("output_tokens")})
    return result


def inference_summary(schedule, records, time_scale=1.0, slo_ttft_s=None, slo_e2e_s=None):
    """Latency percentiles, throughput, goodput and SLO attainment of a serving run.

    Parameters
    ----------
    schedule, records, time_scale
        As :func:`request_metrics`.
    slo_ttft_s, slo_e2e_s : float, optional
        Nominal SLOs; a request meets them when it completed within both (a missing SLO is
        always met).

    Returns
    -------
    dict
        ``requests``, ``completed``; ``ttft_p50_s``, ``ttft_p95_s``, ``ttft_p99_s``,
        ``e2e_p50_s``, ``e2e_p95_s``, ``e2e_p99_s`` over completed requests;
        ``span_s`` (first arrival to last completion), ``throughput_rps``,
        ``goodput_rps`` and ``goodput_tokens_per_s`` (requests meeting the SLOs, and their
        output tokens, per second of span), ``slo_attainment`` (fraction of all requests
        meeting the SLOs). Seconds are nominal.
    """
    rows = request_metrics(schedule, records, time_scale)
    done = [r for r in rows if r["e2e_s"] is not None and r["ttft_s"] is not None]
    good = [r for r in done
            if (slo_ttft_s is None or r["ttft_s"] <= slo_ttft_s)
            and (slo_e2e_s is None or r["e2e_s"] <= slo_e2e_s)]
    span = (max(r["arrival_s"] + r["e2e_s"] for r in done) - min(r["arrival_s"] for r in rows)
            if done else None)
    rate = (lambda k: k / span) if span else (lambda k: None)
    out = {"requests": len(rows), "completed": len(done)}
    for name in ("ttft", "e2e"):
        stats = percentiles([r[f"{name}_s"] for r in done])
        out.update({f"{name}_{p}_s": v for p, v in stats.items()})
    out.update(span_s=span, throughput_rps=rate(len(done)), goodput_rps=rate(len(good)),
               goodput_tokens_per_s=rate(sum(r["output_tokens"] or 0 for r in good)),
               slo_attainment=len(good) / len(rows) if rows else None,
               slo_ttft_s=slo_ttft_s, slo_e2e_s=slo_e2e_s)
    return out
