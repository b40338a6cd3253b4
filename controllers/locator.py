"""Locator MACs: host addresses that say which switch a host hangs off (PortLand-style).

A locator MAC is ``0a:DD:DD:DD:PP:PP``: the first byte marks the scheme (locally administered,
unicast, and unlike Mininet's default ``00:..`` and ``02:..`` addresses), the next three bytes
are the dpid of the host's switch and the last two its port there. The topology model
(fabric/model.py) gives every host such an address, so on every switch but its own one masked
rule per destination switch (``eth_dst=0a:DD:DD:DD:00:00/ff:ff:ff:ff:00:00``) covers all
the hosts of that switch (controllers/render.py), instead of one rule per host.

A host learned with any other address (a vendor MAC on a real fabric), or with a locator of
another switch (a host that moved), still gets routed: the renderer keeps per-host rules for it.

Pure functions on strings and ints; it must not import Ryu, read a clock or know the fabric.
"""

__all__ = ["LOCATOR_MASK", "LOCATOR_MARK", "MAX_LOCATOR_DPID", "MAX_LOCATOR_PORT",
           "locator_dpid", "locator_mac", "switch_prefix"]

# The first byte of every locator MAC (bit 1 set: locally administered; bit 0 clear: unicast).
LOCATOR_MARK = 0x0A
# The bits that name the switch: the mark and the dpid.
LOCATOR_MASK = "ff:ff:ff:ff:00:00"
MAX_LOCATOR_DPID = 2 ** 24 - 1
MAX_LOCATOR_PORT = 2 ** 16 - 1


def locator_mac(dpid, port):
    """The locator MAC of the host on port ``port`` of switch ``dpid``, or None if either does
    not fit (dpid 1..2**24-1, port 0..2**16-1).

    Examples
    --------
    >>> locator_mac(5, 3)
    '0a:00:00:05:00:03'
    >>> locator_mac(2 ** 24, 1) is None
    True
    """
    if not (0 < dpid <= MAX_LOCATOR_DPID and 0 <= port <= MAX_LOCATOR_PORT):
        return None
    return "%02x:%02x:%02x:%02x:%02x:%02x" % (
        LOCATOR_MARK, (dpid >> 16) & 0xFF, (dpid >> 8) & 0xFF, dpid & 0xFF,
        (port >> 8) & 0xFF, port & 0xFF)


def locator_dpid(mac):
    """The dpid a MAC names if it is a locator MAC, else None.

    Parameters
    ----------
    mac : str
        ``aa:bb:cc:dd:ee:ff`` (either case).

    Examples
    --------
    >>> locator_dpid("0a:00:01:00:00:07")
    256
    >>> locator_dpid("02:00:00:00:00:07") is None
    True
    """
    if len(mac) != 17 or int(mac[:2], 16) != LOCATOR_MARK:
        return None
    dpid = int(mac[3:5] + mac[6:8] + mac[9:11], 16)
    return dpid or None


def switch_prefix(dpid):
    """The masked ``eth_dst`` value, ``(value, mask)``, that matches every locator MAC of
    switch ``dpid`` (the form Ryu's ``OFPMatch`` takes for a masked field).

    Examples
    --------
    >>> switch_prefix(5)
    ('0a:00:00:05:00:00', 'ff:ff:ff:ff:00:00')
    """
    return (locator_mac(dpid, 0), LOCATOR_MASK)
