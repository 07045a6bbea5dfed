"""Stage: the one safe HTTP client (SSRF guard on the connected address, wall-clock
deadline, size cap) and its polite wrapper (per-host slots, Retry-After, robots.txt).

Import from here; the modules inside are this stage's own business.
"""

from worker.fetch.client import HttpClient, HttpSettings
from worker.fetch.polite import PoliteFetcher, host_of

__all__ = ["HttpClient", "HttpSettings", "PoliteFetcher", "host_of"]
