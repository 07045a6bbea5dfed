"""Decisions about the set of sources, as pure functions: current state in, one change out.

Redis holds every source as a :class:`SourceRecord` (its spec and who manages it). Each
operation (create, update, delete, pause, resume, poll now, apply the feeds file, import
OPML) is decided here from a :class:`Snapshot` and returns a :class:`SourceChange`, which the
store applies in one atomic step (``Store.change_sources``), or raises a SourceError saying
what is wrong. Nothing here does I/O, so every rule is testable without Redis.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from worker.errors import SourceConflict, SourceInvalid, SourceNotFound
from worker.models import Feed, NewsletterSource
from worker.sources.rules import masked
from worker.sources.spec import Source, is_polled, kind_of, source_from_dict, source_to_dict

MANAGED_BY_FILE = "file"
MANAGED_BY_API = "api"


@dataclass(frozen=True)
class SourceRecord:
    """One source as Redis keeps it: its spec, who manages it, and whether it is paused.

    ``managed_by`` is ``file`` (the feeds file created it: the file updates and removes it) or
    ``api`` (the admin API, the CLI or an OPML import: the file never touches it).
    ``resume_at`` is the poll slot a paused source had, given back when it resumes.
    """

    source: Source
    managed_by: str = MANAGED_BY_API
    paused: bool = False
    created: str = ""
    updated: str = ""
    resume_at: float | None = None

    @property
    def name(self) -> str:
        return self.source.name

    def to_json(self) -> str:
        doc: dict[str, Any] = {"source": source_to_dict(self.source), "managed_by": self.managed_by,
                               "paused": self.paused, "created": self.created, "updated": self.updated}
        if self.resume_at is not None:
            doc["resume_at"] = self.resume_at
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> SourceRecord:
        doc = json.loads(raw)
        return cls(source=source_from_dict(doc["source"]), managed_by=doc.get("managed_by", MANAGED_BY_API),
                   paused=bool(doc.get("paused")), created=doc.get("created", ""), updated=doc.get("updated", ""),
                   resume_at=doc.get("resume_at"))

    def view(self) -> dict[str, Any]:
        """What the API and ``feedstream sources list --json`` show of it (secrets masked)."""
        return {**masked(source_to_dict(self.source)), "managed_by": self.managed_by, "paused": self.paused,
                "created": self.created, "updated": self.updated}


@dataclass(frozen=True)
class Snapshot:
    """The sources as read in one step: their version, records, and the poll schedule (name -> epoch)."""

    version: int
    records: Mapping[str, SourceRecord]
    due: Mapping[str, float] = field(default_factory=dict)
    # the feeds file's [defaults] (issue 16): rules every source runs before its own
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> SourceRecord:
        record = self.records.get(name)
        if record is None:
            raise SourceNotFound(f"no source named {name!r}", {"name": f"no source named {name!r}"})
        return record


@dataclass
class SourceChange:
    """What one operation writes, all at once.

    ``put``: records to write (new or replaced); ``delete``: sources to remove (with their status,
    poll slot and lock; their seen items and mailbox state are kept for a while); ``schedule``:
    poll slots to set; ``schedule_new``: slots to add only where the source has none (a source
    that was polled before keeps its schedule); ``unschedule``: slots to drop (paused).
    """

    put: dict[str, SourceRecord] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    schedule: dict[str, float] = field(default_factory=dict)
    schedule_new: dict[str, float] = field(default_factory=dict)
    unschedule: list[str] = field(default_factory=list)
    defaults: dict[str, Any] | None = None  # the feeds file's [defaults] to hold from now on (None: unchanged)

    def __bool__(self) -> bool:
        return bool(self.put or self.delete or self.schedule or self.schedule_new or self.unschedule
                    or self.defaults is not None)


def normal_url(url: str) -> str:
    """``url`` for comparing sources: scheme and host lower-cased, default port and fragment dropped."""
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, default) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))


def identity(source: Source) -> tuple[str, str]:
    """(field, value) that no two sources may share: a feed's URL, an smtp address, a mailbox."""
    if isinstance(source, Feed):
        return "url", normal_url(source.url)
    if source.kind == "smtp":
        return "address", (source.address or "").lower()
    if source.kind == "imap":
        return "host", f"{source.user}@{source.host}:{source.port}/{source.folder}"
    return "path", source.path or ""


def _owner(records: Iterable[SourceRecord], source: Source) -> str | None:
    """The name of another source with the same identity as ``source``, if any."""
    key = identity(source)
    return next((r.name for r in records if r.name != source.name and identity(r.source) == key), None)


def _field_of(source: Source) -> str:
    return identity(source)[0] if kind_of(source) != "imap" else "user"


# -- operations -------------------------------------------------------------------------------

def plan_create(snapshot: Snapshot, source: Source, now: float, iso_now: str) -> SourceChange:
    """Add a source made through the API/CLI; raises SourceConflict for a name or identity in use."""
    if source.name in snapshot.records:
        raise SourceConflict(f"a source named {source.name!r} exists already",
                             {"name": f"{source.name!r} is already used by a source"})
    other = _owner(snapshot.records.values(), source)
    if other is not None:
        field_name = _field_of(source)
        raise SourceConflict(f"source {other!r} has this {field_name} already",
                             {field_name: f"is already used by source {other!r}"})
    record = SourceRecord(source, MANAGED_BY_API, created=iso_now, updated=iso_now)
    change = SourceChange(put={source.name: record})
    if is_polled(source):
        change.schedule_new[source.name] = now
    return change


def _api_managed(record: SourceRecord, doing: str) -> None:
    if record.managed_by == MANAGED_BY_FILE:
        raise SourceConflict(f"source {record.name!r} is managed by the feeds file: {doing} it there, then "
                             "restart the scheduler", {"name": "is managed by the feeds file"})


def plan_update(snapshot: Snapshot, source: Source, now: float, iso_now: str) -> SourceChange:
    """Replace an API-made source's spec (same name and kind); a changed URL is polled again now."""
    record = snapshot.get(source.name)
    _api_managed(record, "change")
    if kind_of(source) != kind_of(record.source):
        raise SourceInvalid("kind cannot be changed", {"kind": "cannot be changed (remove the source and add "
                                                               "it again)"})
    other = _owner(snapshot.records.values(), source)
    if other is not None:
        field_name = _field_of(source)
        raise SourceConflict(f"source {other!r} has this {field_name} already",
                             {field_name: f"is already used by source {other!r}"})
    return _replace(record, source, now, iso_now)


def _replace(record: SourceRecord, source: Source, now: float, iso_now: str) -> SourceChange:
    change = SourceChange()
    if source == record.source:
        return change
    moved = identity(source) != identity(record.source)
    updated = replace(record, source=source, updated=iso_now)
    if moved and is_polled(source):
        # a new address: poll it now (this also brings back a feed retired at its old URL)
        if record.paused:
            updated = replace(updated, resume_at=now)
        else:
            change.schedule[source.name] = now
    change.put[source.name] = updated
    return change


def plan_delete(snapshot: Snapshot, name: str) -> SourceChange:
    """Remove an API-made source: its polls stop; what it published stays on the stream."""
    _api_managed(snapshot.get(name), "remove")
    return SourceChange(delete=[name])


def plan_pause(snapshot: Snapshot, name: str, iso_now: str) -> SourceChange:
    """Stop polling a source and keep everything it knows (validators, seen items, its next slot)."""
    record = snapshot.get(name)
    if record.paused:
        return SourceChange()
    resume_at = snapshot.due.get(name)
    paused = replace(record, paused=True, updated=iso_now, resume_at=resume_at)
    return SourceChange(put={name: paused}, unschedule=[name] if is_polled(record.source) else [])


def plan_resume(snapshot: Snapshot, name: str, now: float, iso_now: str) -> SourceChange:
    """Poll a paused source again from the slot it had (now, if that has passed)."""
    record = snapshot.get(name)
    if not record.paused:
        return SourceChange()
    change = SourceChange(put={name: replace(record, paused=False, updated=iso_now, resume_at=None)})
    if is_polled(record.source):
        slot = record.resume_at
        change.schedule[name] = now if slot is None else max(slot, now) if slot != float("inf") else slot
    return change


def plan_poll_now(snapshot: Snapshot, name: str, now: float) -> SourceChange:
    """Make a source's poll due now (the scheduler queues it within a tick)."""
    record = snapshot.get(name)
    if not is_polled(record.source):
        raise SourceInvalid(f"source {name!r} receives mail by SMTP: there is nothing to poll",
                            {"name": "is an smtp source: nothing to poll"})
    if record.paused:
        raise SourceConflict(f"source {name!r} is paused: resume it first", {"name": "is paused"})
    return SourceChange(schedule={name: now})


# -- many at once: OPML import, the feeds file ------------------------------------------------------

@dataclass
class ImportReport:
    """Per item of an import: what was added, skipped (already there) and refused, and why."""

    added: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"added": self.added, "skipped": self.skipped, "refused": self.refused}


def plan_import(snapshot: Snapshot, candidates: Sequence[tuple[dict[str, Any], Source]], now: float,
                iso_now: str) -> tuple[SourceChange, ImportReport]:
    """Add each candidate (``(report fields, source)``) that is new; skip one whose URL is taken.

    A name already in use gets a numbered suffix: an import names sources after the feed's title,
    which two feeds may share; a URL already in use is a duplicate and is skipped.
    """
    change, report = SourceChange(), ImportReport()
    taken = dict(snapshot.records)
    for where, source in candidates:
        other = _owner(taken.values(), source)
        if other is not None:
            report.skipped.append({**where, "reason": f"duplicate: source {other!r} has this URL"})
            continue
        source = free_name(source, taken)
        if source is None:
            report.refused.append({**where, "reason": "no free name"})
            continue
        record = SourceRecord(source, MANAGED_BY_API, created=iso_now, updated=iso_now)
        taken[source.name] = record
        change.put[source.name] = record
        if is_polled(source):
            change.schedule_new[source.name] = now
        report.added.append({**where, "name": source.name, "url": getattr(source, "url", None)})
    return change, report


def free_name(source: Source, taken: Mapping[str, SourceRecord]) -> Source | None:
    """``source``, renamed ``<name>-2``, ``-3``, ... if its name is taken (None if all are)."""
    if source.name not in taken:
        return source
    stem = source.name[:60]
    for n in range(2, 1000):
        name = f"{stem}-{n}"
        if name not in taken:
            return replace(source, name=name)
    return None


@dataclass
class FileReport:
    """What applying the feeds file did."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # entries clashing with API-made sources, with why

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("created", self.created), ("updated", self.updated),
                                              ("removed", self.removed)) if v]
        text = ", ".join(parts) or "no change"
        if self.ignored:
            text += "; ignored: " + "; ".join(self.ignored)
        return text


def plan_file(snapshot: Snapshot, sources: Sequence[Source], now: float, iso_now: str,
              defaults: Mapping[str, Any] | None = None) -> tuple[SourceChange, FileReport]:
    """Apply the feeds file declaratively.

    Its sources are created, or updated if the file created them; a name or identity held by an
    API-made source is left alone (and reported); a source the file created that it no longer
    names is removed. Pausing is not the file's business: a paused source stays paused. Its
    ``[defaults]`` replace the ones held (every source, the API's too, runs them).
    """
    change, report = SourceChange(), FileReport()
    if dict(defaults or {}) != dict(snapshot.defaults):
        change.defaults = dict(defaults or {})
        report.updated.append("[defaults]")
    named = {source.name for source in sources}
    remaining = {name: record for name, record in snapshot.records.items()
                 if not (record.managed_by == MANAGED_BY_FILE and name not in named)}
    for name in snapshot.records:
        if name not in remaining:
            change.delete.append(name)
            report.removed.append(name)
    for source in sources:
        record = remaining.get(source.name)
        if record is not None and record.managed_by != MANAGED_BY_FILE:
            report.ignored.append(f"{source.name} (made through the API; the file's entry is not applied)")
            continue
        other = _owner(remaining.values(), source)
        if other is not None:
            report.ignored.append(f"{source.name} ({_field_of(source)} is already used by source {other!r})")
            continue
        if record is None:
            record = SourceRecord(source, MANAGED_BY_FILE, created=iso_now, updated=iso_now)
            change.put[source.name] = record
            if is_polled(source):
                change.schedule_new[source.name] = now
            report.created.append(source.name)
        else:
            step = _replace(record, source, now, iso_now)
            if step:
                change.put.update(step.put)
                change.schedule.update(step.schedule)
                report.updated.append(source.name)
            record = step.put.get(source.name, record)
            if is_polled(source) and not record.paused:
                change.schedule_new[source.name] = now  # a slot lost (e.g. Redis restored) comes back
        remaining[source.name] = record
    return change, report


def active_polled(records: Mapping[str, SourceRecord]) -> list[str]:
    """Names the scheduler polls: sources of a polled kind that are not paused."""
    return [name for name, record in records.items() if not record.paused and is_polled(record.source)]


def newsletters_of(records: Mapping[str, SourceRecord], kind: str | None = None) -> list[NewsletterSource]:
    """The newsletter sources (of ``kind``, if given) that are not paused."""
    return [r.source for r in records.values()
            if isinstance(r.source, NewsletterSource) and not r.paused and kind in (None, r.source.kind)]
