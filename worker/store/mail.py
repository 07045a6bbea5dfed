"""An IMAP source's position (``{p}:imap:{name}``)."""

from __future__ import annotations

from worker.store.base import StoreBase


class MailStore(StoreBase):
    def imap_state(self, name: str) -> tuple[int | None, int]:
        """An IMAP source's (UIDVALIDITY, last UID handed to the queue); (None, 0) before the first poll."""
        validity, last = self.redis.hmget(self._key("imap", name), ["uidvalidity", "last_uid"])
        return (int(validity) if validity else None, int(last) if last else 0)

    def set_imap_state(self, name: str, uidvalidity: int, last_uid: int) -> None:
        self.redis.hset(self._key("imap", name), mapping={"uidvalidity": uidvalidity, "last_uid": last_uid})
