"""Checks for topology builder parameters, shared by every builder.

Parameters arrive from Python callers, experiment spec files and ``mn --topo`` strings, so a
count may come as ``True`` or ``4.0`` and a rate as ``"400"``. Each check raises
:class:`fabric.model.TopologyError` naming the parameter and the value it got, and returns the
value in canonical form (``int`` for counts, ``float`` for rates and lengths). This module only
checks values: it builds nothing.
"""

import math
import numbers

from fabric.model import TopologyError
from fabric.optics import BY_NAME


def is_integer(value):
    """True for ints (including numpy ints) but not bools."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def count(name, value):
    """``value`` as an int >= 1; bools and floats are rejected."""
    if not (is_integer(value) and value >= 1):
        raise TopologyError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def positive(name, value):
    """``value`` as a finite float > 0 (a rate in Gbit/s or a ratio)."""
    if not (_is_number(value) and value > 0):
        raise TopologyError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def nonnegative(name, value):
    """``value`` as a finite float >= 0 (a length in km)."""
    if not (_is_number(value) and value >= 0):
        raise TopologyError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def choice(name, value, options):
    """``value`` itself, if it is one of ``options``."""
    if value not in options:
        raise TopologyError(f"{name} must be one of {', '.join(map(repr, options))}, got {value!r}")
    return value


def transceiver(name, value):
    """``value`` itself if it is None (each link's class is then chosen by its length) or the
    name of a transceiver class of fabric/optics.py."""
    if value is None:
        return None
    return choice(name, value, tuple(BY_NAME))
