"""The experiment specs that ship with aifabric, found the same way in a checkout and in an
installed package.

In a checkout they are ``experiments/*.yaml``; ``pip install .`` puts the same files inside
the package as ``fabric/experiments/`` (pyproject.toml maps that package directory to
``experiments/``), since an installed package has no checkout around it. So ``aifabric run
demo`` (or ``demo.yaml``, or ``experiments/demo.yaml`` from a directory that has no such
file) runs the bundled demo from any directory, and the commands whose default spec is a
bundled one (``aifabric chaos``, the benchmarks) find it wherever they are installed.

This module only finds files; reading and checking a spec is fabric/spec.py's job.
"""

import os

# The packages pyproject.toml installs (tests/test_package.py checks that they agree).
PACKAGES = ("fabric", "controllers", "traffic", "topologies", "bench")
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
# The directory holding the packages: the checkout, or site-packages once installed.
ROOT = os.path.dirname(PACKAGE_DIR)


def experiments_dir():
    """The directory of the bundled specs: the installed package's copy if there is one,
    else the checkout's ``experiments/``."""
    installed = os.path.join(PACKAGE_DIR, "experiments")
    return installed if os.path.isdir(installed) else os.path.join(ROOT, "experiments")


def is_checkout():
    """Whether the packages run from a source checkout (``pip install -e .`` or no install),
    rather than from an installed copy."""
    return os.path.isfile(os.path.join(ROOT, "pyproject.toml"))


def names():
    """The bundled specs' names (``demo``, ``chaos``, ...), sorted."""
    return sorted(f[:-len(".yaml")] for f in os.listdir(experiments_dir())
                  if f.endswith(".yaml"))


def spec_path(name):
    """The path of the bundled spec ``name`` (``demo`` or ``demo.yaml``)."""
    return os.path.join(experiments_dir(), name if name.endswith(".yaml") else f"{name}.yaml")


def resolve(arg):
    """The spec file a command-line argument names.

    A file that exists is taken as it is. Otherwise a bare name (``demo``, ``demo.yaml``)
    or a path into an ``experiments/`` directory that is not here
    (``experiments/demo.yaml``) names the bundled spec, if there is one. Anything else is
    returned unchanged, for the spec reader to report.

    Examples
    --------
    >>> os.path.basename(resolve("demo"))
    'demo.yaml'
    >>> resolve("no/such/spec.yaml")
    'no/such/spec.yaml'
    """
    if os.path.exists(arg):
        return arg
    head, tail = os.path.split(os.path.normpath(arg))
    if head in ("", "experiments") and tail:
        bundled = spec_path(tail)
        if os.path.isfile(bundled):
            return bundled
    return arg
