"""Stage: an article page's HTML -> the article's fields (pure: text in, data out).

Import from here; the modules inside are this stage's own business.
"""

from worker.extract.article import (
    clean_paragraphs,
    decode_html,
    detect_language,
    extract_article,
    text_from_html_fragment,
    warm_up,
)

__all__ = ["clean_paragraphs", "decode_html", "detect_language", "extract_article", "text_from_html_fragment",
           "warm_up"]
