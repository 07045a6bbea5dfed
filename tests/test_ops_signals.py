"""worker.ops.signals: the one signal helper every long-running command uses."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from worker.ops.signals import stop_event


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.usefixtures("restore_handlers")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_set_the_event(signum: signal.Signals) -> None:
    stop = stop_event()
    assert not stop.is_set()
    os.kill(os.getpid(), signum)
    assert stop.wait(5)


@pytest.mark.usefixtures("restore_handlers")
def test_sigint_left_out_still_raises_keyboard_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever an earlier test installed
    stop = stop_event((signal.SIGTERM,))
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
        signal.sigtimedwait([], 0)  # give the interpreter a point to run the handler
    assert not stop.is_set()
