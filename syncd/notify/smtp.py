"""Sending e-mail: one SMTP session per digest tick, and how its errors are judged (worth a
retry, refused for good, or server-wide) and described in logs, without secrets.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage

from syncd.config import SmtpConfig
from syncd.ops.logs import scrub


def permanent(error: BaseException) -> bool:
    """Errors that the same attempt a few seconds later would meet again."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    return isinstance(error, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError)


def refused_for_good(refused: dict[str, tuple[int, bytes]]) -> set[str]:
    return {address for address, (code, _) in refused.items() if code >= 500}


def server_wide(error: BaseException) -> bool:
    """Errors that every other e-mail of this tick would meet too (server down, bad login)."""
    return not isinstance(error, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError)


class SmtpSession:
    """One SMTP connection for a tick's e-mails, opened on first use and after an error."""

    def __init__(self, smtp: SmtpConfig) -> None:
        self.smtp = smtp
        self._client: smtplib.SMTP | None = None

    def send(self, msg: EmailMessage, to: Sequence[str]) -> dict[str, tuple[int, bytes]]:
        """Send; return the recipients the server refused while accepting others."""
        try:
            client = self._client or self._connect()
            self._client = client
            refused = client.send_message(msg, from_addr=self.smtp.from_addr, to_addrs=list(to))
        except BaseException:
            self.close()
            raise
        return dict(refused)

    def _connect(self) -> smtplib.SMTP:
        s = self.smtp
        client: smtplib.SMTP
        if s.tls == "tls":
            context = ssl.create_default_context()
            client = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.tls == "starttls":
                client.starttls(context=ssl.create_default_context())
            if s.username and s.password:
                client.login(s.username, s.password.reveal())
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def describe_error(error: BaseException) -> str:
    return scrub(f"{type(error).__name__}: {error}").replace("\n", " ")
