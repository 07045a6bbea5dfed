"""What malformed input can raise inside trafilatura, lxml and htmldate: the extraction stage catches these."""

from __future__ import annotations

import lxml.etree

# Exceptions that malformed input can provoke inside trafilatura/lxml/htmldate.
# Deliberately not bare ``Exception``: a job-timeout exception raised by the worker
# (RQ's JobTimeoutException derives from Exception) must pass through, or a stuck
# job would silently run on past its deadline.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes UnicodeError
    TypeError,
    LookupError,
    AttributeError,
    ArithmeticError,
    AssertionError,
    RuntimeError,  # includes RecursionError (deeply nested markup)
    lxml.etree.Error,
)

__all__ = ["INPUT_ERRORS"]
