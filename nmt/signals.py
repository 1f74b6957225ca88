"""Signal handling for long jobs: the one place that installs (and restores) handlers.

Ctrl-C and `kill` (SIGTERM) either unwind the job like a KeyboardInterrupt (preprocess: its work
dir is removed on the way out) or ask it to stop at the next safe point (training: save, then
stop). Handlers are installed only on the main thread; elsewhere the block runs without them.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def handling(signals: tuple[int, ...], handler: Callable):
    """Run the block with `handler` for `signals`, then restore the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def ignore_interrupts() -> None:
    """For worker processes: Ctrl-C reaches the whole process group, and the main process
    alone handles it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def sigterm_as_interrupt():
    """`kill` unwinds like Ctrl-C."""
    return handling((signal.SIGTERM,), _raise_interrupt)


class StopRequest:
    """Ctrl-C or SIGTERM asks the loop to stop at its next safe point; a second one aborts at
    once. Use as a context manager around the loop; `requested` / `signum` say what came."""

    def __init__(self):
        self.signum: int | None = None
        self._handling = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        self._handling = handling(STOP_SIGNALS, self._handle)
        self._handling.__enter__()
        return self

    def __exit__(self, *exc):
        return self._handling.__exit__(*exc)
