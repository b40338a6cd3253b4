"""Progress of a long command: a rich progress bar on a terminal, plain lines otherwise.

Sweeps (cells), chaos runs (faults, soak runs) and benchmarks (runs) count their milestones
through one :class:`Progress`. Every milestone is one line in both modes, ``[3/8] what
finished``: on a terminal it is printed above the bar, elsewhere (CI, a pipe, a file) it is
the whole output, so a log holds the same milestones a user watched. What only a live view
needs (the bar, the elapsed time, what is running now) is drawn on a terminal only.

This module draws; it decides nothing about what counts as a milestone.
"""

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress as RichProgress,
                           TextColumn, TimeElapsedColumn)


class Progress:
    """Milestones of one long task, counted up to ``total``.

    Parameters
    ----------
    total : int
        How many milestones make the task.
    what : str
        What is counted (``cells``, ``faults``, ``runs``), the bar's label.
    done : int
        Milestones already reached before this command (cells done by an earlier sweep).
    stream : file, optional
        Where to write (default: ``sys.stdout``).
    console : rich.console.Console, optional
        The console to draw on; by default one on ``stream``. Whether it is a terminal
        (rich's judgement: a tty, or ``FORCE_COLOR`` set) decides between the bar and plain
        lines.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> with Progress(2, "runs", stream=out) as p:
    ...     p.advance("ecmp: efficiency 0.91")
    ...     p.advance("congestion: efficiency 0.95")
    >>> print(out.getvalue(), end="")
    [1/2] ecmp: efficiency 0.91
    [2/2] congestion: efficiency 0.95
    """

    def __init__(self, total, what, done=0, stream=None, console=None):
        self.total, self.what, self.count = total, what, done
        self.stream = stream or sys.stdout
        console = console or Console(file=self.stream)
        self._bar = None
        if console.is_terminal:
            self._bar = RichProgress(TextColumn("{task.description}"), BarColumn(),
                                     MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                     TimeElapsedColumn(), console=console)
            self._task = self._bar.add_task(what, total=total, completed=done, status="")

    @property
    def live(self):
        """Whether a bar is drawn (a terminal), rather than plain lines."""
        return self._bar is not None

    def __enter__(self):
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()

    def line(self, text):
        """Print one line (above the bar on a terminal)."""
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.stream, flush=True)

    def begin(self, text, status=None):
        """Something started: ``start <text>`` as a plain line; on a terminal the bar shows
        ``status`` (default ``text``) instead, since a start is no milestone."""
        if self._bar is not None:
            self._bar.update(self._task, status=text if status is None else status)
        else:
            self.line(f"start {text}")

    def status(self, text):
        """What the bar shows beside the count (what runs now); nothing in plain lines."""
        if self._bar is not None:
            self._bar.update(self._task, status=text)

    def advance(self, text, status=None):
        """One milestone reached: the count goes up and ``[n/total] <text>`` is printed;
        ``status`` replaces what the bar shows beside the count."""
        self.count += 1
        if self._bar is not None:
            fields = {} if status is None else {"status": status}
            self._bar.update(self._task, completed=self.count, **fields)
        self.line(f"[{self.count}/{self.total}] {text}")
