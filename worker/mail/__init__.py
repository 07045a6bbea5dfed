"""Stage: newsletters in: an email's bytes -> Newsletter (parse, pure), mailboxes read
over IMAP and Maildir (mailboxes), and the SMTP endpoint (smtp)."""

from worker.mail.parse import parse_newsletter

__all__ = ["parse_newsletter"]
