"""OpenFlow renderer: what every switch must hold, kept incrementally, and the diff to send.

The one part of the routing core that knows rules and groups; only the Ryu app (through the
core's ``flush``) needs it: the flow-level simulator runs the topology state, path service,
load model and policies without it. From the path service's next hops, the hosts and the
pins of learned flows and intents it keeps every switch's table (``tables``) and, on
:meth:`Renderer.flush`, returns only what changed since the last flush, ordered so no rule
ever points at a missing group.

Forwarding (per destination switch, not per host pair)
------------------------------------------------------
For every destination switch D (one with hosts) and every other switch S that reaches it, a
SELECT group over S's next hops toward D (only the first, by dpid, for the ``shortest``
policy), and D outputs to the host port (one rule per host there). What sends a packet to D's
group on S is one masked rule for all the hosts of D whose MAC is a locator MAC of D
(``eth_dst`` = D's prefix, controllers/locator.py: the topology model gives every host one),
plus one rule per host of D that has another MAC (a vendor MAC, or a locator of another
switch: a host that moved). A host elsewhere holding a locator of D would be matched by D's
prefix, so while there is one, D gets per-host rules only: rules of one priority never
overlap. With locator MACs a switch holds one rule per destination switch instead of one per
host (the hosts per edge switch times fewer: 16 at k=32). Group ids come from
:class:`GroupIds`, the same on every switch, so a destination's rules are objects shared by
every switch. What changes with the topology is only the groups, which are per destination
switch: a link event rewrites groups and detour rules, never the host rules, unless a switch
stops reaching D.

Local protection (``fast_failover``)
------------------------------------
The action toward a next hop N is a FAST_FAILOVER group: N first, then S's other next hops
toward D in rotation, so a dead port moves traffic to another equal-cost hop before the
controller hears of it. Where S has a single next hop P (down the tree in a Clos fabric), the
alternate is a neighbour A that still reaches D without crossing S-P:

- a loop-free alternate if there is one (S is not one of A's next hops toward D);
- otherwise an upstream A that sends the packet back up another way: A gets *U-turn* rules
  (in_port from S, eth_dst D's prefix or a host of D -> A's next hops toward D other than S),
  and A qualifies only if none of those next hops has a shortest path to D through S. S gets
  *bounce* rules for packets that came from A (-> P, else back out of the in-port), because a
  plain output to A would be an output to the in-port, which a switch silently drops.

Detour rules sit above every pin without changing normal forwarding (see controllers/rules.py
for the priorities). Alternates rotate with the destination's dpid so detours spread. Where no
neighbour qualifies the hop stays unprotected until the controller recomputes.

Incremental work
----------------
The unit of work is one (destination, switch) pair: its SELECT group, the FAST_FAILOVER groups
it uses and its detour rules. It depends on the switch's next hops toward D and, for a
single-next-hop switch, on its neighbours' next hops, so after a link change only the pairs
whose next hops changed and their single-next-hop neighbours are redone (a destination whose
distances moved is redone whole). Groups shared by several pairs (FAST_FAILOVER groups keyed by
their ports) are reference-counted per switch. Per-flow rules and pins are kept per owner (a
learned flow, an intent) and redone only for owners that changed or whose path crosses a pair
that was redone.

It must not decide paths (policies do), import Ryu or read a clock.
"""

import collections
import hashlib
import itertools
from itertools import repeat

from controllers.heap import paused
from controllers.locator import locator_dpid, switch_prefix
from controllers.rules import (
    COOKIE, COOKIE_FLOW, ETH_TYPE_ARP, ETH_TYPE_IPV4, ETH_TYPE_IPV6, ETH_TYPE_LLDP,
    IP_PROTO_TCP, IP_PROTO_UDP, PORT_IN_PORT, PRIO_CONTROL, PRIO_DETOUR, PRIO_HOST_ROUTE,
    PRIO_LEARN, PRIO_RELEARN, PRIO_TABLE_MISS, Bucket, ClearSwitch, FlowMod, FlowRule, Group,
    GroupMod, Output, ToController, ToGroup, match)
from controllers.meters import ControlMeters

# The interning cache is dropped at a full rebuild once it holds more objects than this, so it
# cannot grow without bound across topology changes (unchanged objects then compare by value).
INTERN_LIMIT = 2_000_000


def base_rules():
    """Rules every switch gets: LLDP and ARP to the controller (each through its meter, see
    controllers/meters.py), IPv6 and the rest dropped."""
    return [
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_LLDP),
                 (ControlMeters.control_meter("lldp"), ToController())),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_ARP),
                 (ControlMeters.control_meter("arp"), ToController())),
        FlowRule(PRIO_CONTROL, match(eth_type=ETH_TYPE_IPV6), ()),
        FlowRule(PRIO_TABLE_MISS, (), ()),
    ]


BASE_RULES = tuple(base_rules())


# Group ids are drawn from [1, GROUP_ID_SPACE]: below OpenFlow's reserved ids (OFPG_MAX is
# 0xffffff00), so any id a hash gives is one a switch accepts.
GROUP_ID_SPACE = 0xFFFFFF00 - 1


def group_id_of(key, salt=0):
    """The group id a key means, the same in every controller process: a hash of the key's
    text (its kind, destination or ports are ints and strings, whose ``repr`` does not change
    between runs, unlike Python's salted ``hash``).

    Examples
    --------
    >>> group_id_of(("select", 7)) == group_id_of(("select", 7))
    True
    >>> 1 <= group_id_of(("ff", (1, 2))) <= GROUP_ID_SPACE
    True
    """
    text = repr((key, salt)).encode() if salt else repr(key).encode()
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big") % GROUP_ID_SPACE + 1


class GroupIds:
    """Group ids by meaning, unique across kinds and stable across controller restarts.

    A key such as ``("select", dst_dpid)`` or ``("ff", ports)`` gets the id
    :func:`group_id_of` derives from it, used on every switch that needs that group; identical
    keys mean identical groups, so no switch ever holds two groups under one id, and an id is
    never reused for another meaning (a rule still pointing at it during an update cannot
    reach the wrong group). Because the id follows from the key and not from the order in
    which groups were first needed, a restarted controller finds on the switches the very ids
    it wants, and reconciles them with no group mod (controllers/driver.py). Two keys whose
    hashes collide (about one fabric in a hundred with ten thousand groups) are told apart by
    salting the later one's hash: only that group's id then depends on order (``collisions``
    counts them).
    """

    def __init__(self):
        self._ids = {}
        self._keys = {}
        self.collisions = 0

    def __call__(self, key):
        gid = self._ids.get(key)
        if gid is None:
            salt = 0
            gid = group_id_of(key)
            while gid in self._keys:
                salt += 1
                self.collisions += 1
                gid = group_id_of(key, salt)
            self._ids[key] = gid
            self._keys[gid] = key
        return gid


def _owned(entry):
    """The ``(dpid, rule)`` pairs of an owner's entry in :attr:`Renderer._owners`."""
    return zip(entry[::2], entry[1::2])


def _tuple_new(cls):
    """A fast constructor of a named tuple class from one tuple of its fields."""
    def make(fields, _new=tuple.__new__):
        return _new(cls, fields)
    return make


def _action_arg(action):
    """The field of an Output or ToGroup action (what identifies it within its type)."""
    return getattr(action, "port", None) if type(action) is not ToGroup else action.group_id


def _group_level(group):
    """0 for a group that only outputs, 1 for one that chains to groups (add those last)."""
    return int(any(isinstance(a, ToGroup) for b in group.buckets for a in b.actions))


class HopSet:
    """The actions a switch uses toward a set of next-hop ports, and the groups they need."""

    __slots__ = ("key", "actions", "buckets", "groups")

    def __init__(self, key, actions, buckets, groups):
        self.key, self.actions, self.buckets, self.groups = key, actions, buckets, groups


class Table:
    """What one switch holds (after the next flush): flows by key, groups by id."""

    __slots__ = ("flows", "groups", "group_refs")

    def __init__(self):
        self.flows = {r.key: r for r in BASE_RULES}
        self.groups = {}
        self.group_refs = collections.Counter()

    def __getitem__(self, name):  # table["flows"], table["groups"], as a dict of both
        return getattr(self, name)


class Renderer:
    """Every switch's rules and groups, kept current, with the diff since the last flush.

    Parameters
    ----------
    topo : controllers.topology.TopologyState
    paths : controllers.paths.PathService
    multipath : bool
        SELECT over every equal-cost next hop (else only the first by dpid).
    fast_failover : bool
        Protect every next hop with FAST_FAILOVER groups and detour rules.
    learn_flows : bool
        Send new IPv4 TCP/UDP flows from host ports to the controller (PRIO_LEARN rules).

    Every live port that has faced no switch since it came up and where no host is known
    sends IPv4 packets to the controller through its port's meter (a PRIO_RELEARN rule), so
    a host is learned from its traffic as from its ARP (``RoutingCore.packet_in_flow``); the
    rule goes once a host is known there.

    Attributes
    ----------
    tables : dict
        ``{dpid: Table}``; ``tables[d]["flows"]`` and ``["groups"]`` are what switch d holds
        once the messages of the last flush are applied.
    weights : dict
        ``{(dpid, dst): {next hop: weight}}`` for SELECT buckets (WCMP); missing ones weigh 1.
    renders : bool
        Does it make rules (class flag): a core whose renderer makes none skips building
        the per-flow rules it would hand over.
    """

    renders = True

    # (priority, match, actions, table_id, cookie) -> FlowRule, without the keyword handling
    # of the named tuple's own constructor (per-flow rules are made at every flow setup).
    _flow_rule = staticmethod(_tuple_new(FlowRule))

    def __init__(self, topo, paths, group_ids, multipath=True, fast_failover=True,
                 learn_flows=False):
        self.topo, self.paths, self.group_ids = topo, paths, group_ids
        self.multipath, self.fast_failover, self.learn_flows = (
            multipath, fast_failover, learn_flows)
        self.tables = {}
        self.weights = {}
        self.alternates = {}   # (dpid, dst) -> (alternate, needs U-turn rules)
        self._actions = {}     # (dst, dpid) -> (next hops, action toward each used one)
        self._hopsets = {}     # (dpid, ports, backup port) -> HopSet
        self._hopset_refs = {}  # (dpid, hop set key) -> units using it
        self._hopset_of = {}   # (dpid, next hops, alternate) -> HopSet, while ports stand
        self._nbrs = {}        # dpid -> sorted neighbours, while its adjacency stands
        self._intern = {}
        self._actions_of = {}  # action -> (action,), see _one_action
        self._select_gids = {}  # dst -> id of its SELECT group (group ids never change)
        self._ff_made = {}     # ports -> FAST_FAILOVER (group id, group) and action to it
        self._units = {}       # dst -> {dpid: tuple of (dpid, kind, key, obj)}
        self._reach = {}       # dst -> switches holding its host rules
        self._hosts_at = {}    # dst -> sorted hosts there
        self._remote_of = {}   # dst -> (routed by its prefix, hosts routed by their own MAC)
        self._by_locator = collections.defaultdict(set)  # dpid -> hosts' MACs locating there
        self._learn = {}       # (dpid, port) -> learn rules installed for that host port
        self._owners = {}      # owner -> (dpid, rule, dpid, rule, ...), see _owned
        self._key_owners = {}  # (dpid, key) -> owner, or a list of owners: the last wins
        # (dst, dpid) -> {owner: None} of the owners using it: a dict, which the collector
        # stops tracking once its owners are plain tuples (a set it tracks for good)
        self._pins_at = collections.defaultdict(dict)
        self._uses = {}        # owner -> (dst, dpid) units its pins use
        self._mac_at = {}      # mac -> (dpid, port) where its learn rules were put
        self._relearn = {}     # (dpid, port) -> relearn rule installed on that empty port
        self._dirty = {}       # (dpid, kind, key) -> what the switch held at the last flush
        self._bulk = False     # the tables are being built from scratch (no one holds them)
        self._before = None    # after a rebuild: what switches held, to diff whole tables
        self.stale_owners = set()   # owners whose pins crossed a unit that was redone
        self.units_rendered = 0
        self.flow_mods = self.group_mods = 0

    # -- the tables ------------------------------------------------------------------------
    def switch_enter(self, dpid):
        """A switch connected: it is wiped and gets the base rules (sent at once)."""
        self.tables[dpid] = Table()
        if self._before is not None:
            self._before[dpid] = Table()
        for key in [k for k in self._dirty if k[0] == dpid]:
            del self._dirty[key]
        for key in [k for k in self._learn if k[0] == dpid]:
            del self._learn[key]
        for key in [k for k in self._relearn if k[0] == dpid]:
            del self._relearn[key]
        return [ClearSwitch(dpid)] + [FlowMod(dpid, "add", r) for r in BASE_RULES]

    def switch_leave(self, dpid):
        self.tables.pop(dpid, None)
        for key in [k for k in self._dirty if k[0] == dpid]:
            del self._dirty[key]
        for key in [k for k in self._learn if k[0] == dpid]:
            del self._learn[key]
        for key in [k for k in self._relearn if k[0] == dpid]:
            del self._relearn[key]

    def holds(self, dpid, flows, groups):
        """Switch ``dpid`` was read back and holds these ``flows`` (FlowRules) and ``groups``
        (Groups): the next flush sends it exactly the difference to what it should hold, and
        nothing if there is none (a warm restart, or a resynchronisation after an error).

        Every key either side knows is marked changed, with what the switch holds as its
        value at the last flush; a rebuild in between takes the same values as the switch's
        whole table (see :meth:`_rebuild`).
        """
        table = self.tables.get(dpid)
        if table is None:
            return
        held_flows = {r.key: r for r in flows}
        held_groups = {g.group_id: g for g in groups}
        if self._before is not None:
            before = self._before[dpid] = Table()
            before.flows, before.groups = held_flows, held_groups
            return
        dirty = self._dirty
        # Whatever was sent to it since it was asked (a rule put and dropped again while it
        # waited to be reconciled: those messages were not sent) is no longer believed held.
        for key in [k for k in dirty if k[0] == dpid]:
            del dirty[key]
        for key in set(table.flows) | set(held_flows):
            dirty[(dpid, "f", key)] = held_flows.get(key)
        for gid in set(table.groups) | set(held_groups):
            dirty[(dpid, "g", gid)] = held_groups.get(gid)

    def _put(self, dpid, kind, key, obj):
        """Make switch ``dpid`` hold ``obj``: a flow rule ("f", by its key), a group ("g",
        by id), a hop set's groups ("h", reference-counted) or several flow rules ("F",
        ``obj`` a tuple of (key, rule) pairs)."""
        table = self.tables.get(dpid)
        if table is None:
            return
        if kind == "F":
            for k, rule in obj:
                self._put(dpid, "f", k, rule)
            return
        if kind == "h":
            refs = self._hopset_refs
            n = refs.get((dpid, key), 0)
            refs[(dpid, key)] = n + 1
            if not n:
                for gid, group in obj.groups:
                    self._put(dpid, "g", gid, group)
            return
        store = table.flows if kind == "f" else table.groups
        if kind == "g":
            refs = table.group_refs[key] = table.group_refs.get(key, 0) + 1
            if refs > 1 and store.get(key) == obj:
                return
        old = store.get(key)
        if old is obj:
            return
        if self._before is None:
            self._dirty.setdefault((dpid, kind, key), old)
        store[key] = obj

    def _put_fresh(self, units):
        """:meth:`_put` of new units' entries while the tables are built from scratch (no
        diff is kept: the flush compares whole tables)."""
        tables, refs = self.tables, self._hopset_refs
        for dpid, kind, key, obj in itertools.chain.from_iterable(units):
            table = tables.get(dpid)
            if table is None:
                continue
            if kind == "f":
                table.flows[key] = obj
                continue
            if kind == "F":
                table.flows.update(obj)
                continue
            if kind == "h":
                n = refs.get((dpid, key), 0)
                refs[(dpid, key)] = n + 1
                if n:
                    continue
                pairs = obj.groups
            else:
                pairs = ((key, obj),)
            groups, counts = table.groups, table.group_refs
            for gid, group in pairs:
                # get(), not Counter's += 1: a missing key would call Python code.
                n = counts[gid] = counts.get(gid, 0) + 1
                if n == 1 or groups.get(gid) != group:
                    groups[gid] = group

    def _drop(self, dpid, kind, key, obj):
        table = self.tables.get(dpid)
        if table is None:
            return
        if kind == "F":
            for k, rule in obj:
                self._drop(dpid, "f", k, rule)
            return
        if kind == "h":
            refs = self._hopset_refs
            n = refs.get((dpid, key), 0)
            if n > 1:
                refs[(dpid, key)] = n - 1
                return
            refs.pop((dpid, key), None)
            if n:
                for gid, group in obj.groups:
                    self._drop(dpid, "g", gid, group)
            return
        store = table.flows if kind == "f" else table.groups
        if kind == "g":
            refs = table.group_refs.get(key, 0)
            if refs > 1:
                table.group_refs[key] = refs - 1
                return
            table.group_refs.pop(key, None)
        old = store.get(key)
        if old is None or (kind == "f" and old is not obj and old != obj):
            return  # another part's rule took the key since
        if self._before is None:
            self._dirty.setdefault((dpid, kind, key), old)
        del store[key]

    @property
    def dirty(self):
        return bool(self._dirty) or self._before is not None

    def flush(self):
        """Messages for everything changed since the last flush, each switch's in safe order:
        groups added or modified (those that only output first), flow adds, flow deletions,
        group deletions last (those that chain first)."""
        if self._before is not None:
            with paused(freeze=True):
                msgs = self._flush_full()
        else:
            msgs = self._flush_dirty()
        self.flow_mods += msgs[1]
        self.group_mods += msgs[2]
        return msgs[0]

    def _flush_full(self):
        """The whole-table diff after a rebuild, in :meth:`_ordered`'s order, built in
        bulk: hundreds of thousands of messages after a fabric's first rebuild."""
        before, self._before = self._before, None
        self._dirty = {}
        new = tuple.__new__
        add_flows, del_flows = [], []
        empty = Table()
        for dpid, table in self.tables.items():
            old = before.get(dpid, empty)
            was, now = old.flows, table.flows
            if len(was) <= len(BASE_RULES):
                # A switch that held (next to) nothing: drop the few rules it keeps from
                # the list instead of hashing every key (tuple hashes are not cached).
                adds = list(now.values())
                for k, r in was.items():
                    if k in now and (now[k] is r or now[k] == r):
                        # Found by identity (no other rule has its key, so none equals it),
                        # near the front: a fresh table starts with the base rules.
                        adds.remove(now[k])
            else:
                adds = [r for k, r in now.items()
                        if k not in was or (was[k] is not r and was[k] != r)]
            add_flows.extend(map(new, repeat(FlowMod), zip(repeat(dpid), repeat("add"), adds)))
            dels = [r for k, r in was.items() if k not in now]
            del_flows.extend(map(new, repeat(FlowMod),
                                 zip(repeat(dpid), repeat("delete"), dels)))
        # Groups in (level, dpid, group id) order, levels ascending for adds and descending
        # for deletions: per switch in id order, each into its level's list (groups are
        # shared by many switches, so a group's level is worked out once).
        levels = {}

        def level(group):
            lv = levels.get(id(group))
            if lv is None:
                lv = levels[id(group)] = _group_level(group)
            return lv

        add_groups, del_groups = ([], []), ([], [])
        for dpid in sorted(self.tables):
            was = before.get(dpid, empty).groups
            now = self.tables[dpid].groups
            for gid, group in sorted(now.items()):
                prev = was.get(gid)
                if prev is not group and prev != group:
                    add_groups[level(group)].append(
                        new(GroupMod, (dpid, "add" if prev is None else "modify", group)))
            for gid, group in sorted(was.items()):
                if gid not in now:
                    del_groups[level(group)].append(new(GroupMod, (dpid, "delete", group)))
        msgs = add_groups[0] + add_groups[1]
        msgs.extend(add_flows)
        msgs.extend(del_flows)
        msgs.extend(del_groups[1])
        msgs.extend(del_groups[0])
        return (msgs, len(add_flows) + len(del_flows),
                len(add_groups[0]) + len(add_groups[1]) + len(del_groups[0]) + len(del_groups[1]))

    @staticmethod
    def _ordered(add_groups, add_flows, del_flows, del_groups):
        add_groups.sort(key=lambda m: (_group_level(m.group), m.dpid, m.group.group_id))
        del_groups.sort(key=lambda m: (-_group_level(m.group), m.dpid, m.group.group_id))
        return (add_groups + add_flows + del_flows + del_groups,
                len(add_flows) + len(del_flows), len(add_groups) + len(del_groups))

    def _flush_dirty(self):
        add_groups, add_flows, del_flows, del_groups = [], [], [], []
        for (dpid, kind, key), old in self._dirty.items():
            table = self.tables.get(dpid)
            if table is None:
                continue
            if kind == "f":
                new = table.flows.get(key)
                if new is old or new == old:
                    continue
                if new is None:
                    del_flows.append(FlowMod(dpid, "delete", old))
                else:
                    add_flows.append(FlowMod(dpid, "add", new))
            else:
                new = table.groups.get(key)
                if new is old or new == old:
                    continue
                if new is None:
                    del_groups.append(GroupMod(dpid, "delete", old))
                else:
                    add_groups.append(GroupMod(dpid, "add" if old is None else "modify", new))
        self._dirty = {}
        return self._ordered(add_groups, add_flows, del_flows, del_groups)

    # -- interning -------------------------------------------------------------------------
    def _one(self, key, make):
        obj = self._intern.get(key)
        if obj is None:
            obj = self._intern[key] = make()
        return obj

    def _rule(self, priority, fields, action):
        return self._one(("rule", priority, fields, action),
                         lambda: FlowRule(priority, fields, (action,)))

    def _learn_rule(self, port, proto):
        fields = match(in_port=port, eth_type=ETH_TYPE_IPV4, ip_proto=proto)
        return self._one(("learn", fields), lambda: FlowRule(
            PRIO_LEARN, fields, ControlMeters.learn_actions(port, ToController())))

    def _relearn_rule(self, port):
        fields = match(in_port=port, eth_type=ETH_TYPE_IPV4)
        return self._one(("relearn", fields), lambda: FlowRule(
            PRIO_RELEARN, fields, ControlMeters.learn_actions(port, ToController())))

    def _out(self, port):
        return self._one(("out", port), lambda: Output(port))

    def _to(self, gid):
        return self._one(("to", gid), lambda: ToGroup(gid))

    # -- routes ----------------------------------------------------------------------------
    def select_gid(self, dst):
        """Id of the group that leads toward destination switch ``dst`` (on any switch)."""
        gid = self._select_gids.get(dst)
        if gid is None:
            gid = self._select_gids[dst] = self.group_ids(("select", dst))  # stable for life
        return gid

    def rebuild(self):
        with paused(freeze=True):
            self._rebuild()

    def _rebuild(self):
        """Redo every route from scratch (after switches came or went, or the policy's flags
        changed); the diff is then taken table against table. Every owner's pins are lost:
        the core sets them again (:meth:`set_owner`)."""
        if len(self._intern) > INTERN_LIMIT:
            self._intern = {}
            self._actions_of = {}
            self._ff_made = {}
        if self._before is None:
            # What the switches hold: the tables as they are, less what was changed since
            # the last flush (those tables are not used again, so they are changed back).
            before = self.tables
            for (dpid, kind, key), old in self._dirty.items():
                table = before.get(dpid)
                if table is not None:
                    store = table.flows if kind == "f" else table.groups
                    if old is None:
                        store.pop(key, None)
                    else:
                        store[key] = old
            self._before = before
        self._dirty = {}
        self.tables = {d: Table() for d in self.tables}
        self.alternates, self._actions, self._hopset_refs = {}, {}, {}
        self._hopset_of, self._nbrs = {}, {}
        if len(self._hopsets) > INTERN_LIMIT // 16:
            self._hopsets = {}
        self._units, self._reach, self._hosts_at, self._learn, self._mac_at = {}, {}, {}, {}, {}
        self._relearn = {}
        self._remote_of = {}
        self._owners, self._uses, self._key_owners = {}, {}, {}
        self._pins_at.clear()
        self._by_locator.clear()
        for mac in self.topo.hosts:
            self._locate(mac)
        self._bulk = True
        for dst in self.paths.dests:
            hs = self._hosts_at[dst] = self.topo.hosts_at(dst)
            self._remote_of[dst] = self._remote(dst, hs)
            hops = self.paths.hops[dst]
            # What _render does for each switch, knowing no unit or pin exists yet.
            self.units_rendered += len(hops)
            if hs:
                make = self._make_unit
                units = {s: make(dst, s, next_hops) for s, next_hops in hops.items()
                         if next_hops}
                self._put_fresh(units.values())
                if units:
                    self._units[dst] = units
            self._update_reach(dst)
        self._sync_learn(None)
        self.ports_changed(self.topo.ports)
        self._bulk = False
        self.stale_owners.clear()

    def update(self, changed, pairs, hosts):
        """Redo what a change set touches.

        Parameters
        ----------
        changed : dict
            The path service's answer (``{dst: switches whose next hops changed, or None}``).
        pairs : iterable
            Switch pairs whose adjacency changed (their ports may differ for every
            destination).
        hosts : iterable
            MACs of hosts learned, moved or forgotten.
        """
        ends = {x for pair in pairs for x in pair}
        for x in ends:
            self._nbrs.pop(x, None)
        if ends:
            self._hopset_of = {k: h for k, h in self._hopset_of.items() if k[0] not in ends}
        redo = collections.defaultdict(set)    # dst -> switches, or None for all
        if hosts:
            places = set()
            for mac in hosts:
                old = self._mac_at.get(mac)
                if old is not None:
                    places.add(old[0])
                h = self.topo.hosts.get(mac)
                if h is not None:
                    places.add(h.dpid)
                # The switch its MAC names: a host there or elsewhere decides its prefix.
                located = self._locate(mac)
                if located is not None:
                    places.add(located)
            for dst in places:
                hs = self.topo.hosts_at(dst) if dst in self.topo.adj else []
                remote = self._remote(dst, hs)
                was = self._remote_of.get(dst, (False, ()))
                if self._hosts_at.get(dst, []) != hs or was != remote:
                    self._set_hosts(dst, hs, remote)
                    if was != remote:
                        # The routes and detours toward dst; a host that comes or goes under
                        # its prefix changes only the rules at dst itself.
                        redo[dst] = None
                    if hs:
                        self._remote_of[dst] = remote
                    else:
                        self._remote_of.pop(dst, None)
        for dst in set(self._reach) - set(self.paths.dests):
            redo[dst] = None
        for dst in self.paths.dests:
            if redo.get(dst, ()) is None:
                continue
            touched = changed.get(dst, set())
            if touched is None:
                redo[dst] = None
                continue
            seeds = set(touched) | ends
            if not seeds:
                continue
            hops = self.paths.hops[dst]
            units = redo[dst]
            for x in seeds:
                units.add(x)
                for n in self.topo.adj.get(x, ()):
                    if len(hops.get(n, ())) == 1:
                        units.add(n)
        for dst, units in redo.items():
            if units is None:
                units = set(self.paths.hops.get(dst, ())) | set(self._units.get(dst, ()))
            for s in sorted(units):
                self._render(dst, s)
            self._update_reach(dst)
        if hosts:
            self._sync_learn(hosts)
        if ends:
            self.ports_changed({x: self.topo.ports.get(x, ()) for x in ends})

    def _locate(self, mac):
        """Index ``mac`` under the switch its locator names (if it is a locator MAC), as it is
        known now (a forgotten host leaves the index); return that switch or None."""
        located = locator_dpid(mac)
        if located is not None:
            if mac in self.topo.hosts:
                self._by_locator[located].add(mac)
            else:
                macs = self._by_locator.get(located)
                if macs is not None:
                    macs.discard(mac)
                    if not macs:
                        del self._by_locator[located]
        return located

    def _remote(self, dst, hs):
        """How other switches route to the hosts ``hs`` of ``dst``: (whether by dst's prefix,
        the hosts that need a rule of their own). The prefix is used when some host of dst has
        a locator MAC of dst and no host elsewhere has one (it would match the prefix too)."""
        mine = [h for h in hs if locator_dpid(h.mac) == dst]
        if not mine or len(mine) != len(self._by_locator.get(dst, ())):
            return (False, tuple(hs))
        if len(mine) == len(hs):
            return (True, ())
        return (True, tuple(h for h in hs if locator_dpid(h.mac) != dst))

    def _set_hosts(self, dst, hs, remote):
        """Hosts at ``dst`` changed (or how they are reached): swap its host rules on every
        switch that reaches it."""
        old = self._hosts_at.get(dst, [])
        reach = self._reach.get(dst, set())
        old_rules = self._host_rules(dst, old, self._remote_of.get(dst, (False, ())))
        new_rules = self._host_rules(dst, hs, remote)
        for s in reach:
            for r in old_rules[s != dst]:
                self._drop(s, "f", r.key, r)
        if hs:
            self._hosts_at[dst] = list(hs)
        else:
            self._hosts_at.pop(dst, None)
        for s in reach:
            for r in new_rules[s != dst]:
                self._put(s, "f", r.key, r)

    def _host_rules(self, dst, hs, remote):
        """(rules at dst itself, rules on every other switch reaching dst) for hosts ``hs``
        reached as ``remote`` says (see :meth:`_remote`)."""
        gid = self.select_gid(dst)
        to_group = self._to(gid)
        one = self._one
        local = [one(("host", h.mac, "out", h.port), lambda h=h: FlowRule(
            PRIO_HOST_ROUTE, (("eth_dst", h.mac),), (self._out(h.port),))) for h in hs]
        by_prefix, own = remote
        rules = [one(("host", h.mac, "group", gid), lambda h=h: FlowRule(
            PRIO_HOST_ROUTE, (("eth_dst", h.mac),), (to_group,))) for h in own]
        if by_prefix:
            rules.append(one(("prefix", dst, "group", gid), lambda: FlowRule(
                PRIO_HOST_ROUTE, (("eth_dst", switch_prefix(dst)),), (to_group,))))
        return local, rules

    def _update_reach(self, dst):
        hs = self._hosts_at.get(dst, [])
        want = set()
        if hs and dst in self.paths.hops:
            want = set(self.paths.hops[dst]) | {dst}
        have = self._reach.get(dst, set())
        if want == have:
            return
        local, remote = self._host_rules(dst, hs, self._remote_of.get(dst, (False, ())))
        for s in have - want:
            for r in (local if s == dst else remote):
                self._drop(s, "f", r.key, r)
        if self._bulk:
            remote = {r.key: r for r in remote}
            tables = self.tables
            for s in want:
                table = tables.get(s)
                if table is not None:
                    table.flows.update(remote if s != dst else {r.key: r for r in local})
        else:
            for s in want - have:
                for r in (local if s == dst else remote):
                    self._put(s, "f", r.key, r)
        if want:
            self._reach[dst] = want
        else:
            self._reach.pop(dst, None)

    def _render(self, dst, s):
        """Redo the (dst, s) unit: apply the difference to the tables."""
        self.units_rendered += 1
        old = self._units.get(dst, {}).get(s, ())
        hops = self.paths.hops.get(dst, {}).get(s) if self._hosts_at.get(dst) else None
        new = self._make_unit(dst, s, hops) if hops else ()
        if old == new:
            return
        for dpid, kind, key, obj in old:
            self._drop(dpid, kind, key, obj)
        for dpid, kind, key, obj in new:
            self._put(dpid, kind, key, obj)
        if new:
            self._units.setdefault(dst, {})[s] = new
        else:
            self._actions.pop((dst, s), None)
            units = self._units.get(dst)
            if units is not None:
                units.pop(s, None)
                if not units:
                    del self._units[dst]
        for owner in self._pins_at.get((dst, s), ()):
            self.stale_owners.add(owner)

    def _make_unit(self, dst, s, hops):
        entries = []
        alt = None
        self.alternates.pop((s, dst), None)
        if self.fast_failover and len(hops) == 1:
            alt = self._protect(s, dst, hops[0], entries)
        hopset = self._hopset_of.get((s, hops, alt)) or self._hopset(s, hops, alt)
        entries.append((s, "h", hopset.key, hopset))
        actions = hopset.actions
        self._actions[(dst, s)] = (hops, actions)
        wmap = self.weights.get((s, dst)) if self.weights else None
        gid = self._select_gids.get(dst) or self.select_gid(dst)  # ids start at 1
        # The buckets follow from the hop set's key (and the weights): interned by those
        # plain numbers, not by the buckets, whose actions would each be hashed in Python.
        if wmap is None:
            group = self._intern.get(("select", gid, hopset.key))
            if group is None:  # one per destination and hop set: made in bulk
                group = self._intern[("select", gid, hopset.key)] = tuple.__new__(
                    Group, (gid, "select", hopset.buckets))
        else:
            weights = tuple(wmap.get(n, 1) for n in hops)
            group = self._intern.get(("select", gid, hopset.key, weights))
            if group is None:
                buckets = tuple(self._one(("bucket", a, w),
                                          lambda a=a, w=w: Bucket((a,), weight=w))
                                for a, w in zip(actions, weights))
                group = self._intern[("select", gid, hopset.key, weights)] = Group(
                    gid, "select", buckets)
        entries.append((s, "g", gid, group))
        return tuple(entries)

    def _hopset(self, s, hops, alt):
        """The actions toward the used next hops of ``s`` (FAST_FAILOVER groups with
        protection), shared by every destination with the same next-hop ports."""
        fast = self._hopset_of.get((s, hops, alt))
        if fast is not None:
            return fast
        adj = self.topo.adj[s]
        ports = tuple(adj[n] for n in hops)
        backup = None if alt is None else adj[alt[0]]
        key = (ports, backup, self.multipath, self.fast_failover)
        hopset = self._hopsets.get((s, key))
        if hopset is None:
            groups = []
            used = range(len(ports) if self.multipath else 1)
            if not self.fast_failover:
                actions = tuple(self._out(ports[i]) for i in used)
            elif len(ports) > 1:
                actions = tuple(self._ff(ports[i:] + ports[:i], groups) for i in used)
            else:
                actions = (self._ff(ports + (() if backup is None else (backup,)), groups),)
            buckets = tuple(self._one(("bucket", a, 1), lambda a=a: Bucket((a,))) for a in actions)
            hopset = self._hopsets[(s, key)] = HopSet(key, actions, buckets, tuple(groups))
        self._hopset_of[(s, hops, alt)] = hopset
        return hopset

    def _ff(self, ports, groups):
        """Action trying ``ports`` in order: a FAST_FAILOVER group, added to ``groups``."""
        if len(ports) == 1:
            return self._out(ports[0])
        made = self._ff_made.get(ports)
        if made is None:
            gid = self.group_ids(("ff", ports))
            group = self._one(("group", gid), lambda: Group(gid, "fast_failover", tuple(
                Bucket((Output(p),), watch_port=p) for p in ports)))
            made = self._ff_made[ports] = ((gid, group), self._to(gid))
        groups.append(made[0])
        return made[1]

    def _protect(self, s, dst, primary, entries):
        """Choose the alternate of single-next-hop switch ``s`` toward ``dst``; add its
        detour rules and groups to ``entries``; return the alternate (or None)."""
        dist, hops, adj = self.paths.dist[dst], self.paths.hops[dst], self.topo.adj
        nbrs = self._nbrs.get(s)
        if nbrs is None:
            nbrs = self._nbrs[s] = sorted(adj[s])
        cands = [a for a in nbrs if a != primary and a in dist]
        if not cands:
            return None
        start = dst % len(cands)
        cands = cands[start:] + cands[:start]
        # a is loop-free unless s is one of its next hops, i.e. unless a is one hop
        # farther from dst than s (hops follow the distances): one lookup per candidate,
        # in one comprehension (a Clos fabric has none going down, so all are looked at).
        farther = dist[s] + 1
        free = [a for a in cands if dist[a] != farther]
        if free:
            self.alternates[(s, dst)] = (free[0], False)
            return self.alternates[(s, dst)]
        for a in cands:
            rest = tuple(m for m in hops.get(a, ()) if m != s)
            # m reaches dst through s iff dist(m, s) + dist(s, dst) == dist(m, dst); m is a
            # neighbour of a, itself a neighbour of s, so dist(m, s) is 1 or 2.
            if rest and all(m == dst or (1 if s in adj[m] else 2) + dist[s] != dist[m]
                            for m in rest):
                break
        else:
            return None
        self.alternates[(s, dst)] = (a, True)
        groups = []
        back = self._ff(tuple(adj[a][m] for m in rest), groups)
        entries.extend((a, "g", gid, group) for gid, group in groups)
        bounce = self._bounce(s, adj[s][primary], adj[s][a], entries)
        entries.extend(self._detours(a, adj[a][s], back, dst))
        entries.extend(self._detours(s, adj[s][a], bounce, dst))
        return self.alternates[(s, dst)]

    def _detours(self, dpid, in_port, action, dst):
        """Detour rules on ``dpid`` for packets from ``in_port`` toward the hosts of ``dst``,
        as one unit entry of kind "F" (a tuple of (key, rule) pairs, one for dst's prefix and
        one per host routed by its own MAC, shared across switches; see :meth:`_put`)."""
        remote = self._remote_of.get(dst, (False, ()))
        by_prefix, own = remote
        # Keyed by the action's plain fields: hashing the action itself runs Python code.
        key = ("detours", in_port, type(action), _action_arg(action), dst, by_prefix, len(own))
        made = self._intern.get(key)
        if made is None or made[0] != remote:
            rule, acts = self._flow_rule, self._one_action(action)
            pairs = []
            for h in ((switch_prefix(dst),) if by_prefix else ()) + tuple(h.mac for h in own):
                fields = (("eth_dst", h), ("in_port", in_port))
                pairs.append(((0, PRIO_DETOUR, fields),
                              rule((PRIO_DETOUR, fields, acts, 0, COOKIE))))
            made = self._intern[key] = (remote, tuple(pairs))
        return [(dpid, "F", key, made[1])] if made[1] else []

    def _bounce(self, s, primary_port, from_port, entries):
        made = self._ff_made.get((primary_port, from_port, "bounce"))
        if made is None:
            gid = self.group_ids(("bounce", primary_port, from_port))
            group = self._one(("group", gid), lambda: Group(gid, "fast_failover", (
                Bucket((Output(primary_port),), watch_port=primary_port),
                Bucket((Output(PORT_IN_PORT),), watch_port=from_port))))
            made = self._ff_made[(primary_port, from_port, "bounce")] = (gid, group,
                                                                         self._to(gid))
        entries.append((s, "g", made[0], made[1]))
        return made[2]

    def reweight(self, weights):
        """New SELECT weights: redo the units whose weights changed."""
        changed = [k for k in set(weights) | set(self.weights)
                   if weights.get(k) != self.weights.get(k)]
        self.weights = weights
        for s, dst in sorted(changed):
            self._render(dst, s)

    # -- learning rules on host ports ------------------------------------------------------
    def _sync_learn(self, macs):
        """Learn rules on the host ports of these hosts (every host, for None)."""
        topo = self.topo
        if macs is None:
            check = {(h.dpid, h.port) for h in topo.hosts.values()} | set(self._learn)
            self._mac_at = {}
            macs = list(topo.hosts)
        else:
            check = {self._mac_at[m] for m in macs if m in self._mac_at}
        for mac in macs:
            h = topo.hosts.get(mac)
            if h is None:
                self._mac_at.pop(mac, None)
            else:
                self._mac_at[mac] = (h.dpid, h.port)
                check.add((h.dpid, h.port))
        for dpid, port in check:
            want = ()
            if self.learn_flows and dpid in self.tables and topo.has_hosts_at(dpid, port):
                # Through the port's own meter: a flooding host spends only its budget.
                want = tuple(self._learn_rule(port, proto)
                             for proto in (IP_PROTO_TCP, IP_PROTO_UDP))
            have = self._learn.get((dpid, port), ())
            if want == have:
                continue
            for r in have:
                self._drop(dpid, "f", r.key, r)
            for r in want:
                self._put(dpid, "f", r.key, r)
            if want:
                self._learn[(dpid, port)] = want
            else:
                self._learn.pop((dpid, port), None)
        self._sync_relearn(check)

    def ports_changed(self, ports):
        """Ports that came up or went down, or whose link appeared or vanished
        (``{dpid: ports}``): their relearn rules follow."""
        self._sync_relearn([(dpid, p) for dpid, ps in ports.items() for p in ps])

    def _sync_relearn(self, ports):
        """The relearn rule of each (dpid, port) of ``ports``, held exactly where the port is
        live, has faced no switch since it came up and has no host."""
        topo, relearn = self.topo, self._relearn
        for dpid, port in ports:
            want = None
            if dpid in self.tables and port in topo.ports.get(dpid, ()) and \
                    not topo.faces_switch(dpid, port) and not topo.has_hosts_at(dpid, port):
                # Through the port's own meter: a flooding host spends only its budget.
                want = self._relearn_rule(port)
            have = relearn.get((dpid, port))
            if want is have:
                continue
            if have is not None:
                self._drop(dpid, "f", have.key, have)
                del relearn[(dpid, port)]
            if want is not None:
                self._put(dpid, "f", want.key, want)
                relearn[(dpid, port)] = want

    # -- per-flow rules and pins -----------------------------------------------------------
    def set_owner(self, owner, pins):
        """Replace the per-flow rules of ``owner`` (a learned flow's key, an intent flow).

        Parameters
        ----------
        owner : hashable
        pins : iterable
            ``(fields, priority, src host, dst host, path or None, counted)`` tuples: the
            rules that carry a flow (or host pair) along ``path``, or for ``None`` one rule at
            its first switch sending it to its destination's group.
        """
        old = self._owners.pop(owner, None)
        new = []
        uses = set()
        for fields, priority, src, dst, path, counted in pins:
            new.extend(self._pin_rules(fields, priority, src, dst, path, counted, uses))
        if old is not None:
            for dpid, rule in _owned(old):
                self._release(owner, dpid, rule)
        for use in self._uses.pop(owner, ()):
            users = self._pins_at.get(use)
            if users is not None:
                users.pop(owner, None)
                if not users:
                    del self._pins_at[use]
        tables, key_owners = self.tables, self._key_owners
        for dpid, rule in new:
            # Claim the key (it has one owner but for overlapping pins: that owner is kept
            # as it is, a list only for several, and a rule is found again in its owner's
            # own entry, so a learned flow costs no objects here beyond its rules), then
            # _put the rule, inlined: this runs for every rule of every learned flow.
            key = rule.key
            had = key_owners.setdefault((dpid, key), owner)
            if had is not owner:
                if type(had) is list:
                    had.append(owner)
                else:
                    key_owners[(dpid, key)] = [had, owner]
            table = tables.get(dpid)
            if table is not None:
                store = table.flows
                prev = store.get(key)
                if prev is not rule:
                    if self._before is None:
                        self._dirty.setdefault((dpid, "f", key), prev)
                    store[key] = rule
        if new:
            # One flat tuple, not a pair of tuples: one object less for the collector to
            # track per owner (it tracks any tuple holding rules).
            self._owners[owner] = tuple(itertools.chain.from_iterable(new))
        if uses:
            self._uses[owner] = tuple(uses)  # of int pairs: the collector stops tracking it
            for use in uses:
                self._pins_at[use][owner] = None

    def _release(self, owner, dpid, rule):
        """``owner`` gives up its rule at (dpid, rule's key): the last owner left there
        gets its own rule back, or the rule goes. Called once the owner has left
        :attr:`_owners`."""
        key = rule.key
        where = (dpid, key)
        had = self._key_owners.get(where)
        if had is None:
            return
        if type(had) is list:
            left = [o for o in had if o != owner]
            self._key_owners[where] = left[0] if len(left) == 1 else left
        else:
            left = [] if had == owner else [had]
        if left:
            last = left[-1]
            kept = [r for d, r in _owned(self._owners.get(last, ()))
                    if d == dpid and r.key == key]
            if kept:
                self._put(dpid, "f", key, kept[-1])
                return
        self._key_owners.pop(where, None)
        self._drop(dpid, "f", key, rule)

    def _pin_rules(self, fields, priority, src, dst, path, counted, uses):
        d = dst.dpid
        rule, acts = self._flow_rule, self._one_action
        if path is None:
            if src.dpid == d:
                action = self._out(dst.port)
            elif src.dpid in self.paths.hops.get(d, {}):
                action = self._to(self.select_gid(d))
                uses.add((d, src.dpid))
            else:
                return []
            return [(src.dpid, rule((priority, fields, acts(action), 0, COOKIE_FLOW)))]
        out = []
        units = self._actions
        for i, s in enumerate(path):
            if i and s == d:
                break  # the destination's host rule delivers it
            if s == d:
                action = self._out(dst.port)
            else:
                n = path[i + 1]
                # The (d, s) unit's next hops and the action toward each (its groups).
                hops, actions = units.get((d, s), ((), ()))
                if n not in hops:
                    return []  # not a path any more: the core repairs it
                uses.add((d, s))
                if i and hops == (n,):
                    # The destination's route here has this one next hop and the same
                    # action: a rule would change nothing (every pin is a shortest path,
                    # and the rules it beats at this priority only match on host ports,
                    # where a path starts). Past the choice points of a Clos (the way down
                    # from the top) a pinned flow so costs no rule, no flow mod and no
                    # object. The use above re-renders it if s gains a second next hop.
                    continue
                j = hops.index(n)
                if j >= len(actions):
                    return []
                action = actions[j]
            cookie = COOKIE_FLOW if counted and i == 0 else COOKIE
            out.append((s, rule((priority, fields, acts(action), 0, cookie))))
        return out

    def _one_action(self, action):
        """The actions tuple ``(action,)``, one per action, shared by the rules using it."""
        acts = self._actions_of.get(action)
        if acts is None:
            acts = self._actions_of[action] = (action,)
        return acts

    # -- counts ----------------------------------------------------------------------------
    def rule_count(self):
        return sum(len(t.flows) for t in self.tables.values())

    def group_count(self):
        return sum(len(t.groups) for t in self.tables.values())


class NoRenderer(Renderer):
    """The renderer's interface with no OpenFlow behind it: what a core without switches uses.

    The flow-level simulator (fabric/twin.py) runs the routing core without rendering: it
    forwards flows from the path service's next hops, the SELECT weights kept here and the
    policies' pins, so it needs only ``weights`` and the settings the core writes. Every call
    that would make or send rules does nothing, every flush is empty and the tables stay
    empty.
    """

    renders = False

    @property
    def dirty(self):
        return False

    def switch_enter(self, dpid):
        return []

    def switch_leave(self, dpid):
        pass

    def holds(self, dpid, flows, groups):
        pass

    def rebuild(self):
        pass

    def update(self, changed, pairs, hosts):
        pass

    def ports_changed(self, ports):
        pass

    def reweight(self, weights):
        self.weights = weights

    def set_owner(self, owner, pins):
        pass

    def flush(self):
        return []
