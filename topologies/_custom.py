"""Mininet ``--custom`` support: turn topology builders into Mininet Topo constructors.

Every builder module ends with ``topos = mininet_topos(name=builder)`` so that
``mn --custom topologies/fattree.py --topo fattree,4`` works. ``mn`` execs such a file in a
namespace without ``__file__`` and copies every top-level name of it into its own globals;
names it treats specially (``hosts``, ``switches``, ``controllers``, ``links``, ``tests``,
``validate``) must therefore never be defined at the top level of a builder module.

This module must not import Mininet or fabric.emulate at import time: building the topology
model needs neither, and neither is importable without Mininet installed.
"""

import inspect


def mininet_topos(**builders):
    """Return ``{name: constructor}``, each constructor building a Mininet Topo.

    A constructor takes the builder's own parameters (``mn`` passes numbers as ints or
    floats), builds the fabric with it and converts it with :func:`fabric.emulate.mininet_topo`.
    """
    return {name: _topo_constructor(name, builder) for name, builder in builders.items()}


def _topo_constructor(name, builder):
    def constructor(*args, **params):
        from fabric.emulate import mininet_topo  # imports Mininet; only when a Topo is wanted

        return mininet_topo(builder(*args, **params))

    constructor.__name__ = constructor.__qualname__ = f"{name}_topo"
    constructor.__doc__ = (f"Mininet Topo of ``{builder.__name__}(...)``, "
                           f"for ``mn --topo {name},...``.")
    constructor.__signature__ = inspect.signature(builder)
    return constructor
