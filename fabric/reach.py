"""All-pairs reachability through the emulated fabric, with fping from every host at once.

Each round every host pings, in parallel with the others, the hosts it has not reached yet;
later rounds retry only the failures. The answer says which pairs were never reached and how
many failed the first round (a busy userspace switch can drop the first packet of a new flow
while it sets the flow up, so first-round loss is reported rather than hidden).
"""

import re

from fabric.model import hosts

_LINE = re.compile(r"^(\S+)\s*:\s*xmt/rcv/%loss = (\d+)/(\d+)/")


def all_pairs(g, em, rounds=3, interval_ms=20, timeout_ms=2000):
    """Ping every ordered host pair of fabric ``g`` in emulation ``em``.

    Returns
    -------
    dict
        ``pairs`` (ordered pairs tried), ``unreachable`` (list of [src, dst] never answered),
        ``first_round_lost`` (pairs that failed the first round), ``rounds`` used.
    """
    hs = hosts(g)
    by_ip = {g.nodes[h]["ip"]: h for h in hs}
    pending = {h: [o for o in hs if o != h] for h in hs}
    first_lost = None
    used = 0
    for _ in range(rounds):
        active = {h: ts for h, ts in pending.items() if ts}
        if not active:
            break
        used += 1
        for h, targets in active.items():
            ips = " ".join(g.nodes[t]["ip"] for t in targets)
            em.host(h).sendCmd(f"fping -q -c1 -t{timeout_ms} -i{interval_ms} {ips} 2>&1")
        for h in active:
            reached = set()
            for line in em.host(h).waitOutput().splitlines():
                m = _LINE.match(line.strip())
                if m and int(m.group(3)) > 0:
                    reached.add(by_ip.get(m.group(1)))
            pending[h] = [t for t in pending[h] if t not in reached]
        if first_lost is None:
            first_lost = sum(len(t) for t in pending.values())
    return {
        "pairs": len(hs) * (len(hs) - 1),
        "unreachable": sorted([h, t] for h, ts in pending.items() for t in ts),
        "first_round_lost": first_lost or 0,
        "rounds": used,
    }
