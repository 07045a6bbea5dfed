"""The one way a feedstream process learns it should stop: a signal sets an Event.

Long-running commands wait on the Event (or poll it between steps) and then shut
down cleanly; nothing else installs signal handlers, except RQ's own worker pool.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_event(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> threading.Event:
    """An Event that each of ``signals`` sets; install from the main thread.

    Leave SIGINT out for a command that lets Ctrl-C raise KeyboardInterrupt instead.
    """
    stop = threading.Event()

    def _set(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in signals:
        signal.signal(signum, _set)
    return stop


def wait_for_stop(signals: tuple[signal.Signals, ...] = STOP_SIGNALS) -> None:
    """Block until one of ``signals`` arrives (SIGTERM or Ctrl-C by default)."""
    stop_event(signals).wait()
