"""One exception tree for every stage.

Each error knows the stage it arose in, and its text starts with that stage
("fetch: HTTP 404 Not Found"), so the message stored on a feed's status tells an
operator where to look without a traceback.
"""

from __future__ import annotations


class FeedstreamError(Exception):
    """Base of every error feedstream raises on purpose."""

    stage = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return f"{self.stage}: {self.message}"


class ConfigError(FeedstreamError):
    """Settings or the feeds file are unusable; the service cannot start."""

    stage = "config"


class FetchError(FeedstreamError):
    """A feed or page could not be fetched.

    ``transient`` says whether trying again later may succeed (timeouts, 5xx,
    429, refused connections) as opposed to a verdict (404, 410, blocked address).
    """

    stage = "fetch"

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status = status
        self.transient = transient
        self.retry_after = retry_after


class NotModified(FetchError):
    """The server answered 304: what we hold is current. An outcome, not a failure."""

    def __init__(self, url: str | None = None, redirects: tuple[tuple[int, str], ...] = ()) -> None:
        super().__init__("not modified (304)", url=url, status=304)
        # (status, location) of each redirect followed before the 304, as in Fetched.
        self.redirects = redirects


class BlockedAddress(FetchError):
    """The URL's scheme or the address it resolves to is not allowed (SSRF guard)."""


class TooLarge(FetchError):
    """The body (after decompression) exceeded the size cap."""


class DeadlineExceeded(FetchError):
    """The whole download did not finish within its wall-clock deadline."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, url=url, transient=True)


class HostDeferred(FetchError):
    """Not fetched: the host asked us to wait (Retry-After) or has no free slot. Try at ``until``."""

    def __init__(self, message: str, *, url: str | None = None, until: float) -> None:
        super().__init__(message, url=url, transient=True)
        self.until = until


class RobotsDisallowed(FetchError):
    """The host's robots.txt does not allow us to fetch this page."""


class ParseError(FeedstreamError):
    """Bytes that should have been a feed are not one we can read."""

    stage = "parse"


class ExtractError(FeedstreamError):
    """A page yielded no article text."""

    stage = "extract"


class MailError(FeedstreamError):
    """An email that cannot become an article: malformed MIME, too large, no text, a loop."""

    stage = "mail"


class MailTooLarge(MailError):
    """The message exceeds the per-message size limit."""


class MailLoop(MailError):
    """The message has been through us (or too many relays) already; refusing it breaks the loop."""


class SourceError(FeedstreamError):
    """A source cannot be added, changed or removed as asked; ``fields`` says why per field where it can.

    ``status`` is the HTTP status the admin API answers with.
    """

    stage = "sources"
    status = 400

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields or {})


class SourceInvalid(SourceError):
    """The source as given breaks a rule (a field's type or range, a private address, no feed found)."""


class SourceConflict(SourceError):
    """The change clashes with the sources there are (a name or URL in use, a source the feeds file manages)."""

    status = 409


class SourceNotFound(SourceError):
    """No source has that name."""

    status = 404
