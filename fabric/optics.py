"""Transceiver classes and optical reach: which class each link needs, and what a fabric uses.

Every link of the topology model (fabric/model.py) carries a ``transceiver`` class, one of
:data:`CLASSES`, from passive copper in a rack to amplified long haul between sites. A
topology may name a link's class; otherwise :func:`choose` gives the shortest-reach class of
the link's medium that covers its length. A link longer than its class reaches cannot carry
light (or signal) to the far end, so :func:`check` refuses it. :func:`fabric_optics` counts
what a fabric needs: kilometres of cable per medium and transceivers per class (two per link,
one at each end), for the results of every run.

Pure data and arithmetic: no networkx import, nothing about Mininet or the controller. Errors
are :class:`ReachError`, which the model turns into its TopologyError naming the link.
"""

from collections import namedtuple

TransceiverClass = namedtuple("TransceiverClass", "name medium reach_km rates_gbps standards")
TransceiverClass.__doc__ = """One transceiver class.

name : str
    Short name used in topologies and results (``"DR"``).
medium : {"optical", "copper"}
    The medium of the links it serves.
reach_km : float
    Longest link it is specified for, in km.
rates_gbps : tuple of float
    Port rates in Gbit/s it is built for. Informative only: a model link may stand for a
    bundle of ports (an oversubscribed leaf's 533 Gbit/s uplink), so rates are not checked.
standards : str
    The IEEE 802.3 PMDs, OIF agreements or MSAs the class stands for.
"""

# Reaches are the specified ones (OM4 multimode, single-mode fiber), shortest first; at a
# given rate a real part may reach less (400GBASE-LR4-6 reaches 6 km, 100G-per-lane DAC 2 m).
CLASSES = (
    TransceiverClass("DAC", "copper", 0.003, (100.0, 200.0, 400.0, 800.0),
                     "passive direct-attach copper: IEEE 802.3 100GBASE-CR4 (802.3bj), "
                     "50/100/200GBASE-CR (802.3cd), 100/200/400GBASE-CR1/CR2/CR4 (802.3ck)"),
    TransceiverClass("AEC", "copper", 0.007, (100.0, 200.0, 400.0, 800.0),
                     "active (retimed) electrical cable, vendor parts on the 802.3ck lanes"),
    TransceiverClass("AOC", "optical", 0.03, (100.0, 200.0, 400.0, 800.0),
                     "active optical cable: multimode fiber with fixed ends (QSFP/OSFP MSAs)"),
    TransceiverClass("SR", "optical", 0.1, (100.0, 200.0, 400.0, 800.0),
                     "multimode short reach on OM4: 100GBASE-SR4 (802.3bm), 400GBASE-SR8 and "
                     "SR4.2 (802.3cm), 100GBASE-SR1 and 400GBASE-SR4 (802.3db)"),
    TransceiverClass("DR", "optical", 0.5, (100.0, 400.0, 800.0),
                     "single-mode parallel: 100GBASE-DR (802.3cd), 400GBASE-DR4 (802.3bs), "
                     "800GBASE-DR8 (802.3df)"),
    TransceiverClass("FR", "optical", 2.0, (100.0, 400.0, 800.0),
                     "single-mode CWDM: 100GBASE-FR1 and 400GBASE-FR4 (802.3cu), "
                     "400GBASE-FR8 (802.3bs)"),
    TransceiverClass("LR", "optical", 10.0, (100.0, 400.0),
                     "single-mode long reach: 100GBASE-LR4 (802.3ba), 100GBASE-LR1 (802.3cu), "
                     "400GBASE-LR8 (802.3bs)"),
    TransceiverClass("ER", "optical", 40.0, (100.0, 400.0),
                     "single-mode extended reach: 100GBASE-ER4 (802.3ba), "
                     "400GBASE-ER8 (802.3cn)"),
    TransceiverClass("ZR", "optical", 120.0, (400.0, 800.0),
                     "coherent DWDM: 400GBASE-ZR (802.3cw, 80 km), OIF 400ZR implementation "
                     "agreement (80-120 km amplified point to point), OIF 800ZR"),
    TransceiverClass("LH", "optical", 3000.0, (100.0, 200.0, 400.0),
                     "long haul: coherent DWDM over a line system with in-line amplifiers "
                     "(EDFA spans of about 80 km), e.g. OpenZR+ MSA pluggables or line cards"),
)

BY_NAME = {c.name: c for c in CLASSES}


class ReachError(ValueError):
    """A link cannot be given the transceiver class asked for (or any class)."""


def _km(length_km):
    return f"{length_km:g} km"


def choose(medium, length_km):
    """The shortest-reach class of ``medium`` that covers ``length_km``.

    Parameters
    ----------
    medium : {"optical", "copper"}
        The link's medium.
    length_km : float
        The link's length in km, >= 0.

    Returns
    -------
    TransceiverClass

    Raises
    ------
    ReachError
        If no class of ``medium`` reaches that far, or ``medium`` has no classes.

    Examples
    --------
    >>> choose("optical", 0.2).name, choose("optical", 80).name, choose("copper", 0.002).name
    ('DR', 'ZR', 'DAC')
    """
    fits = [c for c in CLASSES if c.medium == medium]
    if not fits:
        raise ReachError(f"no transceiver class for medium {medium!r}")
    for c in fits:
        if length_km <= c.reach_km:
            return c
    longest = fits[-1]
    raise ReachError(f"{_km(length_km)} of {medium} is beyond the {_km(longest.reach_km)} reach "
                     f"of the longest {medium} transceiver class {longest.name}")


def check(name, medium, length_km):
    """The class called ``name``, if it serves ``medium`` and reaches ``length_km``.

    Parameters
    ----------
    name : str
        A class name of :data:`CLASSES`.
    medium : {"optical", "copper"}
        The link's medium.
    length_km : float
        The link's length in km, >= 0.

    Returns
    -------
    TransceiverClass

    Raises
    ------
    ReachError
        If ``name`` is not a class, is a class of the other medium, or reaches less than
        ``length_km``; the message names the class, the length and the reach.

    Examples
    --------
    >>> check("LR", "optical", 8.0).reach_km
    10.0
    """
    c = BY_NAME.get(name)
    if c is None:
        raise ReachError(f"unknown transceiver class {name!r}, expected one of "
                         f"{', '.join(BY_NAME)}")
    if c.medium != medium:
        raise ReachError(f"transceiver class {name} is for {c.medium} links, this one is {medium}")
    if length_km > c.reach_km:
        raise ReachError(f"{_km(length_km)} is beyond the {_km(c.reach_km)} reach of "
                         f"transceiver class {name}")
    return c


def fabric_optics(g):
    """Cable kilometres and transceiver counts of fabric ``g``, for results files.

    Parameters
    ----------
    g : networkx.Graph
        A fabric whose links carry ``medium``, ``length_km`` and ``transceiver``.

    Returns
    -------
    dict
        ``length_km_total`` and ``length_km_by_medium`` (the optical entry is the fiber);
        ``links_by_class``; ``transceivers_total`` and ``transceivers_by_class`` (two per
        link, one at each end); ``length_km_by_class``. Every class and medium of the tables
        is a key, in table order, so fabrics compare key by key.

    Examples
    --------
    >>> from topologies.edge import edge
    >>> o = fabric_optics(edge(sites=2, site_km=[20, 80]))
    >>> o["length_km_by_medium"]["optical"], o["transceivers_by_class"]["ZR"]
    (100.0, 2)
    """
    links = {c.name: 0 for c in CLASSES}
    km_by_class = {c.name: 0.0 for c in CLASSES}
    km_by_medium = {m: 0.0 for m in dict.fromkeys(c.medium for c in CLASSES)}
    for _, _, d in g.edges(data=True):
        links[d["transceiver"]] += 1
        km_by_class[d["transceiver"]] += d["length_km"]
        km_by_medium[d["medium"]] += d["length_km"]
    return {
        "length_km_total": sum(km_by_medium.values()),
        "length_km_by_medium": km_by_medium,
        "links_by_class": links,
        "transceivers_total": 2 * sum(links.values()),
        "transceivers_by_class": {name: 2 * n for name, n in links.items()},
        "length_km_by_class": km_by_class,
    }
