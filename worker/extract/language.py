"""The language of a text (py3langid), with its model loaded once per process."""

from __future__ import annotations

import threading
from typing import Any

from worker.extract.guard import INPUT_ERRORS
from worker.text import language_code

__all__ = ["detect_language", "warm_up"]

_LANGID_MIN_CHARS = 200  # below this, py3langid guesses
_LANGID_SAMPLE_CHARS = 3000
_LANGID_MIN_CONFIDENCE = 0.9
_langid_lock = threading.Lock()
_langid_identifier = None


def warm_up() -> None:
    """Load the language model now; a parent process calls it before forking its workers so they share it."""
    _language_identifier()


def _language_identifier() -> Any:
    global _langid_identifier
    with _langid_lock:  # the model takes ~0.2-0.6 s to load; load it once, on first need
        if _langid_identifier is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            _langid_identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    return _langid_identifier


def detect_language(text: str) -> str | None:
    """2-letter code of the text's language (py3langid), or None when unsure or under 200 characters."""
    if len(text) < _LANGID_MIN_CHARS:
        return None
    try:
        code, confidence = _language_identifier().classify(text[:_LANGID_SAMPLE_CHARS])
    except INPUT_ERRORS:
        return None
    return language_code(code) if confidence >= _LANGID_MIN_CONFIDENCE else None
