"""Stage: an article page's HTML -> the article's fields (pure: text in, data out).

Import from here; the modules inside are this stage's own business:
``charset`` (bytes -> str), ``article`` (the orchestration), ``candidates`` (which
body wins), ``cleanup`` (rules over paragraphs), ``hints`` and ``pagemeta`` (what the
page says about itself), ``language``, ``markdown``, ``fragment`` (a feed's own HTML).
"""

from worker.extract.article import extract_article
from worker.extract.charset import decode_html
from worker.extract.cleanup import clean_paragraphs
from worker.extract.fragment import text_from_html_fragment
from worker.extract.language import detect_language, warm_up

__all__ = ["clean_paragraphs", "decode_html", "detect_language", "extract_article", "text_from_html_fragment",
           "warm_up"]
