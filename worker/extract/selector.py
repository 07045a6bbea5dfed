"""A source's CSS selectors (issue 16): the body chosen by ``selector``, elements removed by ``strip``. Pure.

lxml's cssselect, on the tree the extraction parses anyway: selecting costs about 1 ms a page
on the corpus, where selectolax (faster at selecting) would need a second parse of its own and
its HTML handed back to lxml for trafilatura (``bench/rules.py``). Selectors are compiled once
per process (cached).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cssselect import SelectorError
from lxml.cssselect import CSSSelector
from lxml.html import fromstring, tostring

__all__ = ["SelectorInvalid", "check_selector", "select_body", "strip_elements"]

MAX_SELECTOR_LENGTH = 500
# A selector that picks one of these on a small page picks the whole of any page.
_PROBE = "<html><body><div><p>x</p></div></body></html>"
_WHOLE = ("html", "body")


class SelectorInvalid(ValueError):
    """A CSS selector that cannot be used; the message says why."""


@lru_cache(maxsize=2048)
def _compiled(css: str) -> CSSSelector:
    return CSSSelector(css)


def check_selector(css: Any, *, body: bool) -> str:
    """``css`` if it is a CSS selector lxml can run; raises SelectorInvalid. A ``body`` selector
    that picks the whole page (``html``, ``body``, ``*``, ``:root``) is refused: it would choose nothing."""
    if not isinstance(css, str) or not css.strip() or len(css) > MAX_SELECTOR_LENGTH:
        raise SelectorInvalid(f"must be a CSS selector of 1-{MAX_SELECTOR_LENGTH} characters")
    return _checked(css, body)


@lru_cache(maxsize=4096)  # every process reads every source's selectors whenever the sources change
def _checked(css: str, body: bool) -> str:
    try:
        selector = _compiled(css.strip())
    except (SelectorError, ValueError, TypeError) as exc:
        raise SelectorInvalid(f"{css!r} is not a CSS selector lxml can run: {exc}") from None
    if body and any(element.tag in _WHOLE for element in selector(fromstring(_PROBE))):
        raise SelectorInvalid(f"{css!r} selects the whole page, not its article")
    return css.strip()


def strip_elements(tree: Any, selectors: tuple[str, ...]) -> dict[str, int]:
    """Remove what each selector matches from ``tree`` (in place; the root is never removed);
    returns how many elements each removed."""
    removed: dict[str, int] = {}
    for css in selectors:
        count = 0
        for element in _compiled(css)(tree):
            parent = element.getparent()
            if parent is not None:
                # keep the tail: it is the parent's text, not the removed element's
                element.drop_tree() if hasattr(element, "drop_tree") else parent.remove(element)
                count += 1
        removed[css] = count
    return removed


def select_body(tree: Any, css: str) -> tuple[str, str | None]:
    """(outcome, HTML of the matched elements): ``matched``, ``missed`` or ``whole page`` (html/body
    matched: ignored, the normal chain runs). Nested matches are taken once, at their outermost."""
    elements = _compiled(css)(tree)
    if not elements:
        return "missed", None
    if any(element.tag in _WHOLE or element.getparent() is None for element in elements):
        return "whole page", None
    chosen = set(elements)
    outermost = [e for e in elements if not any(a in chosen for a in e.iterancestors())]
    html = "".join(tostring(e, encoding="unicode", with_tail=False) for e in outermost)
    return "matched", html
