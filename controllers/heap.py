"""The routing core and Python's cyclic garbage collector.

The core keeps hundreds of thousands of long-lived objects: every switch's rules and groups,
and a record and rules per learned flow. None of them form reference cycles (they are freed by
reference counting when replaced or forgotten), yet the collector walks all of them again and
again: a full collection comes each time the objects that survived younger collections grow by
a quarter of the older ones, so each long-lived object is scanned about five times while the
state grows, and those scans read memory scattered over the whole heap. At k=16 a full
collection of 10,000 learned flows took 30-80 ms and was the whole difference between flow set-up
there and at k=4 (controllers/core.py ``_learn_flow``, ``make bench-core``).

Two tools, both acting on the whole process:

- :func:`paused`: no collection while a large batch of acyclic objects is made (a fabric's
  rules, an intent of a million flows), optionally moving the batch out of the collector's
  sight afterwards (``gc.freeze``);
- :class:`Settler`: after every ``every`` new long-lived records (learned flows), one collection
  of what is not frozen, then a freeze. The collection finds the cyclic garbage made since the
  last freeze, so only objects alive at that moment are frozen; the scan covers recent objects
  alone, once each.

A frozen object is still freed by reference counting when nothing refers to it; it is only
never freed if it later becomes part of a reference cycle. The core's own records are kept
acyclic for this (tests/test_parts.py checks that forgotten flows leave the frozen set).
"""

import contextlib
import gc

SETTLE_EVERY = 2048


@contextlib.contextmanager
def paused(freeze=False):
    """Hold the cyclic collector off for the block; with ``freeze``, move everything alive
    at its end out of the collector's sight (``gc.freeze``), collected or not."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()


class Settler:
    """Collects and freezes after every ``every`` calls of :meth:`grew`.

    Parameters
    ----------
    every : int
        New long-lived records between two settlements (>= 1).
    """

    def __init__(self, every=SETTLE_EVERY):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        self.every = every
        self.pending = 0
        self.settled = 0

    def grew(self, count=1):
        """``count`` new long-lived records were made; settle once ``every`` have."""
        self.pending += count
        if self.pending >= self.every:
            self.settle()

    def settle(self):
        """One collection of the objects not frozen, then freeze the survivors. Does nothing
        while the collector is held off (inside :func:`paused`): that block decides."""
        self.pending = 0
        if not gc.isenabled():
            return
        gc.collect()
        gc.freeze()
        self.settled += 1
