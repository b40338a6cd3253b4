"""Routing policies: how the core chooses paths, selectable by name and switchable at runtime.

A policy is a small object the routing core consults at a few moments, through one typed
interface (:class:`Policy`): ``place`` a newly learned flow, ``adapt`` after a statistics
round, ``repair`` flows whose pinned path a topology change broke, ``reset`` to start afresh;
its class flags say what per-destination groups to build (one next hop or all, weighted or
not) and whether to learn individual flows. It reads and changes the fabric only through the
:class:`Fabric` protocol (the routing core implements it; the flow-level simulator drives the
same core parts), the pure algorithms of controllers/placement.py and, for collective
intents, controllers/intents.py. It must not import Ryu, send messages or read a clock.

Adding a policy: subclass :class:`Policy`, set its class flags, override the hooks it needs,
add it to :data:`POLICY_CLASSES`, and give its thresholds defaults in :class:`PolicyConfig`.
"""

import collections
import dataclasses
import numbers
import typing

import numpy as np

from controllers.intents import (Intent, IntentError, assign, check_intent_id,
                                 parse_flows)
from controllers.heap import paused
from controllers.placement import estimate_demands, first_fit
from controllers.paths import path_links
from controllers.rules import PRIO_INTENT_FLOW, PRIO_INTENT_PAIR, host_pair_match


class PolicyError(ValueError):
    """An unknown routing policy or option was asked for, or an action the policy lacks."""


def _check(name, value, ok, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not ok(value):
        raise PolicyError(f"option {name} must be {what}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Thresholds of the adaptive policies, validated once and frozen.

    Attributes
    ----------
    util_tau_s : float
        Time constant (s) of the moving averages of link and flow rates.
    hot_util : float
        ``congestion``: a link above this utilization sheds pinned flows.
    move_margin : float
        ``congestion``: a flow moves only if its new path's peak utilization is lower than its
        current one's by this much (hysteresis against oscillation).
    min_dwell_s : float
        ``congestion``: a flow stays at least this long on a path it was moved to before it
        may move again.
    weight_step : int
        ``congestion``: WCMP bucket weights are multiples of this (in 1..100), so small load
        changes do not rewrite groups.
    weight_hysteresis : float
        ``congestion``: a group keeps its WCMP weights while new ones would shift less than
        this fraction of its traffic between buckets, so load estimates swinging around a
        step boundary from one statistics round to the next do not rewrite it.
    young_bytes : int
        A learned flow that has sent fewer bytes than this counts with its estimated demand
        (sender's NIC rate shared by its flows) instead of its measured rate, until the other
        direction of its connection starts (then it carries ACKs) or at most ``util_tau_s``
        after it was learned.
    elephant_fraction : float
        ``hedera``: a flow is an elephant above this fraction of its sender's NIC rate.
    flow_idle_s : float
        A learned flow that sent nothing for this long is forgotten and its rules removed.
    intent_search_nodes : int
        ``collective``: nodes the exact search of an assignment may visit.
    intent_exact_flows : int
        ``collective``: intents of at most this many flows get the exact search; larger ones
        the batched assignment (its local improvement is O(flows), the exact one's O(flows^2)
        per round: 1,000 flows already take seconds).
    intent_improve_ops : int
        ``collective``: link loads the batched assignment's improvement may examine (a count
        of operations: the core reads no clock; 10 million take about half a second).
    """

    util_tau_s: float = 2.0
    hot_util: float = 0.8
    move_margin: float = 0.1
    min_dwell_s: float = 5.0
    weight_step: int = 5
    weight_hysteresis: float = 0.1
    young_bytes: int = 65536
    elephant_fraction: float = 0.1
    flow_idle_s: float = 10.0
    intent_search_nodes: int = 200_000
    intent_exact_flows: int = 256
    intent_improve_ops: int = 10_000_000

    @classmethod
    def from_options(cls, options):
        """A config from keyword options; PolicyError names an unknown or bad option."""
        known = [f.name for f in dataclasses.fields(cls)]
        for name in options:
            if name not in known:
                raise PolicyError(f"unknown option {name!r}; known: {', '.join(known)}")
        config = cls(**options)
        _check("util_tau_s", config.util_tau_s, lambda v: v > 0, "> 0")
        _check("hot_util", config.hot_util, lambda v: 0 < v <= 1, "in (0, 1]")
        _check("move_margin", config.move_margin, lambda v: 0 <= v < 1, "in [0, 1)")
        _check("min_dwell_s", config.min_dwell_s, lambda v: v >= 0, ">= 0")
        _check("weight_step", config.weight_step,
               lambda v: v == int(v) and 1 <= v <= 100, "an integer in 1..100")
        _check("weight_hysteresis", config.weight_hysteresis, lambda v: 0 <= v < 1,
               "in [0, 1)")
        _check("young_bytes", config.young_bytes, lambda v: v >= 0, ">= 0")
        _check("elephant_fraction", config.elephant_fraction, lambda v: 0 < v <= 1, "in (0, 1]")
        _check("flow_idle_s", config.flow_idle_s, lambda v: v > 0, "> 0")
        for name in ("intent_search_nodes", "intent_exact_flows", "intent_improve_ops"):
            _check(name, getattr(config, name), lambda v: v == int(v) and v >= 0,
                   "an integer >= 0")
        return config


def _by_key(flow):
    return flow.key


class Fabric(typing.Protocol):
    """What a policy may read and change: the routing core's policy interface.

    Every cost here is per call, independent of the number of flows elsewhere: ``link_load``
    reads a link's projected load in O(1); ``flows_on`` costs O(flows on that link) (a
    per-link list of rows that pinning appends to).
    """

    flows: dict       # 5-tuple (equal to its FlowKey) -> controllers.loads.Flow
    hosts: dict       # mac -> controllers.topology.Host
    link_list: list   # directed switch links (u, v) by the index host_path_matrix gives

    def flow_paths(self, flow) -> list: ...
    def host_paths(self, src_mac, dst_mac) -> list: ...
    def host_path_matrix(self, src_mac, dst_mac): ...
    def k_paths(self, src_mac, dst_mac, k, max_extra_hops=2) -> list: ...
    def allows(self, path) -> bool: ...
    def allowed_paths(self, paths): ...
    def capacity(self, u, v) -> float: ...
    def nic_bps(self, mac) -> float: ...
    def flow_rate(self, flow, now) -> float: ...
    def link_load(self, u, v, now) -> float: ...
    def candidate_utils(self, flow, extra_bps, now) -> tuple: ...
    def flows_on(self, link) -> list: ...
    def switch_links(self) -> list: ...
    def projected_loads(self, now) -> dict: ...
    def host_by_ref(self, ref): ...
    def pin(self, flow, path, now) -> None: ...
    def unpin(self, flow) -> None: ...
    def reweight(self, now) -> None: ...


class Policy:
    """Base policy: destination-based forwarding only, nothing learned or pinned.

    Class flags: ``multipath`` (SELECT over every equal-cost next hop), ``learns_flows``
    (per-flow rules at a flow's first switch, learned from packet-ins, counted by flow
    statistics), ``weighted`` (SELECT bucket weights from link utilization),
    ``least_loaded`` (:meth:`place` is :class:`Congestion`'s least-loaded choice, which the
    core may make for a large batch of flows learned at once in one compiled loop,
    ``LoadModel.learn_least_loaded``; a subclass that changes :meth:`place` sets it false).
    """

    name = None
    multipath = True
    learns_flows = False
    weighted = False
    least_loaded = False

    def __init__(self, config):
        self.config = config
        # Bumped whenever what pins() yields changes, so the core redoes those rules only then.
        self.pins_version = 0

    def place(self, core: Fabric, flow, now):
        """A flow was just learned: pin it (``core.pin``) or leave it on the groups."""

    def adapt(self, core: Fabric, now):
        """Periodic decisions, called after each statistics round."""

    def repair(self, core: Fabric, flows, now):
        """``flows`` lost their pinned path (topology change); they follow the groups now."""

    def reset(self, core: Fabric, now):
        """Forget what this policy decided (the core has already forgotten learned flows)."""

    def on_routes(self, core, now):
        """Routes were rebuilt (topology, hosts or policy changed)."""

    def pins(self, core):
        """Extra pinned routes: ``(match, priority, path, src host, dst host)`` tuples."""
        return ()

    def pinned(self, core):
        """The same routes as :meth:`pins`, by what they match before it is made a match:
        ``(5-tuple or None for every packet of the host pair, src host, dst host, path)``."""
        return ()

    def pinned_tables(self, core):
        """The same routes as :meth:`pinned`, as columns: ``(table, path_of, paths)`` per
        intent in announcement order (controllers/intents.py ``FlowTable``; row i's path is
        ``paths[path_of[i]]``, none where -1): what a million pins are without a tuple each."""
        return ()

    def flushed(self):
        """A flush has carried every rule this policy asked for."""

    def gauges(self, core):
        """Policy-specific current counts for ``status``."""
        return {}


class Shortest(Policy):
    """One deterministic shortest path per destination: the next hop with the lowest dpid."""
    name = "shortest"
    multipath = False


class Ecmp(Policy):
    """SELECT groups hashing over every equal-cost next hop (the switch picks per flow)."""
    name = "ecmp"


class Congestion(Policy):
    """Utilization-aware: least-loaded placement, moves off hot links, WCMP weights.

    Every learned flow is pinned to the equal-cost path whose most utilized link would be
    least utilized with it (projected loads count flows placed but not yet measured). After a
    statistics round, flows on links above ``hot_util`` move, largest first, to a path whose
    peak is lower by ``move_margin``, if they have stayed ``min_dwell_s`` on the path they
    were moved to (a path chosen before the flow sent anything may be corrected at once); and
    SELECT weights follow path headroom, for traffic that is not pinned.
    """

    name = "congestion"
    learns_flows = True
    weighted = True
    least_loaded = True

    def place(self, core, flow, now):
        paths, util = core.candidate_utils(flow, core.flow_rate(flow, now), now)
        if not paths:
            return
        if util.shape[1] == 0:
            core.pin(flow, paths[0], now)
            return
        # Lowest peak, then lowest sum; the sort is stable, so ties keep the paths' order.
        # (The ufuncs' reductions: what util.sum and util.max call, without their wrappers,
        # at every flow set-up.)
        best = np.lexsort((np.add.reduce(util, axis=1), np.maximum.reduce(util, axis=1)))[0]
        core.pin(flow, paths[best], now)

    def repair(self, core, flows, now):
        for flow in flows:
            self.place(core, flow, now)

    @staticmethod
    def _utils(core, path, loads, extra):
        return [(loads.get(link, 0.0) + extra) / core.capacity(*link)
                for link in path_links(path)]

    def _best(self, core, paths, loads, demand):
        def score(path):
            utils = self._utils(core, path, loads, demand)
            return max(utils, default=0.0), sum(utils), path
        return min(paths, key=score)

    def adapt(self, core, now):
        cfg = self.config
        loads = core.projected_loads(now)

        def util(link):
            return loads.get(link, 0.0) / core.capacity(*link)

        hot = sorted((link for link in loads if util(link) > cfg.hot_util),
                     key=lambda link: (-util(link), link))
        for link in hot:
            movable = sorted(
                (f for f in core.flows_on(link)
                 if f.placed_at is None or now - f.placed_at >= cfg.min_dwell_s),
                key=lambda f: (-core.flow_rate(f, now), f.key))
            for flow in movable:
                if util(link) <= cfg.hot_util:
                    break
                rate = core.flow_rate(flow, now)
                if rate <= 0:
                    continue
                old = path_links(flow.path)
                before = max(util(x) for x in old)
                for x in old:
                    loads[x] -= rate
                others = [p for p in core.flow_paths(flow) if p != flow.path]
                best = self._best(core, others, loads, rate) if others else None
                if best is not None and max(self._utils(core, best, loads, rate)) \
                        + cfg.move_margin < before:
                    for x in path_links(best):
                        loads[x] = loads.get(x, 0.0) + rate
                    core.pin(flow, best, now)
                else:
                    for x in old:
                        loads[x] += rate
        core.reweight(now)


class Hedera(Policy):
    """Hedera (Al-Fares et al., NSDI 2010): elephants placed by Global First Fit, mice on ECMP.

    After each statistics round: a flow whose rate exceeds ``elephant_fraction`` of its
    sender's NIC rate is an elephant (it stays one until it falls below half of that); the
    natural demands of all elephants are estimated from the hosts' NIC rates
    (:func:`~controllers.placement.estimate_demands`); every elephant without a path takes
    the first of its equal-cost paths (sorted) whose links can all still hold its demand,
    given what placed elephants reserve. Elephants that fit nowhere, and mice, stay on ECMP.
    """

    name = "hedera"
    learns_flows = True

    def adapt(self, core, now):
        frac = self.config.elephant_fraction
        elephants = []
        for flow in sorted(core.flows.values(), key=_by_key):
            limit = frac * core.nic_bps(flow.src) * (0.5 if flow.elephant else 1.0)
            flow.elephant = (flow.rate_bps or 0.0) > limit
            if flow.elephant:
                elephants.append(flow)
            else:
                flow.demand_bps = None
                if flow.path is not None:
                    core.unpin(flow)
        demands = estimate_demands([(f.key, f.src, f.dst) for f in elephants], core.nic_bps)
        for flow in elephants:
            flow.demand_bps = demands[flow.key]
        self._fit(core, now)

    def repair(self, core, flows, now):
        self._fit(core, now)

    def _fit(self, core, now):
        elephants = [f for f in sorted(core.flows.values(), key=_by_key)
                     if f.elephant and f.demand_bps is not None]
        reserved = collections.defaultdict(float)
        for flow in elephants:
            if flow.path is not None:
                for link in path_links(flow.path):
                    reserved[link] += flow.demand_bps
        waiting = sorted((f for f in elephants if f.path is None),
                         key=lambda f: (-f.demand_bps, f.key))
        for flow in waiting:
            paths = core.flow_paths(flow)
            if len(paths) < 2:
                continue  # nothing to choose: the groups already take the only path
            links = [tuple(path_links(p)) for p in paths]
            chosen = first_fit(links, flow.demand_bps, reserved,
                               lambda link: core.capacity(*link))
            if chosen is not None:
                for link in chosen:
                    reserved[link] += flow.demand_bps
                core.pin(flow, paths[links.index(chosen)], now)

    def gauges(self, core):
        return {"elephants": sum(1 for f in core.flows.values() if f.elephant)}


class Collective(Congestion):
    """Announced collectives get a min-max path assignment; other traffic as ``congestion``.

    ``submit`` takes a collective's whole flow set before it starts (parsed and assigned by
    controllers/intents.py); the assignment minimizes the transmission time of the most
    loaded link (bytes / capacity, counting the intents still announced before it), exactly
    for small intents (:func:`~controllers.placement.min_max_assignment`), batched for large
    ones (:func:`~controllers.placement.batched_min_max_assignment`). Flows
    may name a *phase*: flows of one phase run at the same time and phases one after another
    (the rounds of a pairwise-shift all-to-all), so what is minimized is the most loaded link
    of any one phase; a balance of the totals alone could still put two flows of one round
    on a link while others idle. Its pins beat learned flows' rules. It is recomputed when a
    topology change breaks one of its paths; the traffic side withdraws it when the
    collective is over.

    A learned flow that an intent covers (its 5-tuple, or its host pair for an intent without
    5-tuples) is left to the intent: not pinned, so its rule at the first switch, which the
    intent's pin outranks and which therefore counts no bytes, never makes an estimated
    demand weigh on links the flow does not use.
    """

    name = "collective"
    least_loaded = False   # its place() leaves covered flows to their intents

    def __init__(self, config):
        super().__init__(config)
        self.intents = {}

    def reset(self, core, now):
        self.intents.clear()
        self.pins_version += 1

    def _covered(self, flow):
        return any(i.covers(flow.key, flow.src, flow.dst) for i in self.intents.values())

    def place(self, core, flow, now):
        if not self._covered(flow):
            super().place(core, flow, now)

    def repair(self, core, flows, now):
        super().repair(core, [f for f in flows if not self._covered(f)], now)

    # -- the intent API --------------------------------------------------------------------
    def submit(self, core, intent_id, flows, now):
        with paused():
            intent = Intent(check_intent_id(intent_id), parse_flows(flows, core.host_by_ref),
                            now)
            self.intents.pop(intent_id, None)
            self._assign(core, intent)
        self.intents[intent_id] = intent
        # Learned flows the intent now covers are left to it (one pass over learned flows,
        # none over announced ones). Those it no longer covers stay unpinned, as after a
        # withdrawal: they follow the groups.
        for flow in core.flows.values():
            if flow.path is not None and self._covered(flow):
                core.unpin(flow)

    def withdraw(self, core, intent_id):
        if self.intents.pop(intent_id, None) is None:
            raise IntentError(f"unknown intent {intent_id!r}")
        self.pins_version += 1

    def status(self, intent_id):
        intent = self.intents.get(intent_id)
        if intent is None:
            raise IntentError(f"unknown intent {intent_id!r}")
        return intent.status()

    def _assign(self, core, intent):
        # Other intents weigh by the bytes they put on each link, summed per link: linear in
        # intents times links, not in their flows.
        background = collections.defaultdict(float)
        for other in self.intents.values():
            if other.intent_id != intent.intent_id:
                for link, b in other.link_bytes.items():
                    background[link] += b
        cfg = self.config
        assign(core, intent, background, cfg.intent_search_nodes, cfg.intent_improve_ops,
               cfg.intent_exact_flows)
        self.pins_version += 1

    # -- hooks -----------------------------------------------------------------------------
    def on_routes(self, core, now):
        for intent in self.intents.values():
            if not intent.valid(core):
                with paused():
                    self._assign(core, intent)

    def pins(self, core):
        for key, src, dst, path in self.pinned(core):
            if key is None:
                yield host_pair_match(src.ip, dst.ip), PRIO_INTENT_PAIR, path, src, dst
            else:
                yield key.match(), PRIO_INTENT_FLOW, path, src, dst

    def pinned(self, core):
        for intent in self.intents.values():
            yield from intent.pinned()

    def pinned_tables(self, core):
        return [(i.table, i.path_of, i.paths) for i in self.intents.values()]

    def flushed(self):
        for intent in self.intents.values():
            intent.installed_version = intent.version

    def gauges(self, core):
        return {"intents": len(self.intents),
                "intent_flows": sum(len(i) for i in self.intents.values())}


POLICY_CLASSES = {cls.name: cls for cls in (Ecmp, Shortest, Congestion, Hedera, Collective)}
