"""Email over SMTP: the message a delivery becomes, and the transport.

- `Message-ID` is derived from the delivery's idempotency key, so a resend after a crash is
  recognisably the same message (receivers and our tests can de-duplicate on it).
- Every non-transactional message carries the person's unsubscribe link in the body and
  RFC 8058's one-click headers (`List-Unsubscribe` with the URL, `List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`), so mail clients can show "unsubscribe".
- Opens are counted by a 1x1 pixel, clicks by redirecting each link through our server.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.utils import formatdate, parseaddr
from urllib.parse import quote

_HREF = re.compile(r'href="(https?://[^"]+)"')


def message_id(idem_key: str, domain: str = "traction.local") -> str:
    return f"<{hashlib.sha256(idem_key.encode()).hexdigest()[:32]}@{domain}>"


@dataclass(frozen=True)
class Email:
    sender: str  # the envelope's sender (the address in `From`)
    to: str
    raw: bytes  # the message as sent: headers and MIME body, CRLF line ends


def build(*, sender: str, to: str, subject: str, text: str, html: str, idem_key: str,
          unsubscribe_url: str | None, open_url: str | None,
          click_url: Callable[[str], str] | None) -> Email:  # fmt: skip
    """The message as bytes, written directly (the `email` package's generator spent more
    time folding sixteen short headers than everything else a send costs). Parts are UTF-8
    in base64; header values cannot carry a line break (no header injection from a
    template); a non-ASCII subject is RFC 2047-encoded."""
    if unsubscribe_url:
        text += f"\n\n--\nUnsubscribe: {unsubscribe_url}\n"
    parts = [("plain", text)]
    if html:
        if click_url is not None:
            html = _HREF.sub(lambda m: f'href="{click_url(m.group(1))}"', html)
        if unsubscribe_url:
            html += f'<p style="font-size:12px;color:#666"><a href="{unsubscribe_url}">Unsubscribe</a></p>'
        if open_url:
            html += f'<img src="{open_url}" width="1" height="1" alt="">'
        parts.append(("html", html))
    headers = [("From", _encoded(sender)), ("To", _one_line(to)), ("Subject", _encoded(subject)),
               ("Date", formatdate(usegmt=True)), ("Message-ID", message_id(idem_key)),
               ("X-Traction-Idempotency-Key", _one_line(idem_key))]  # fmt: skip
    if unsubscribe_url:
        headers += [("List-Unsubscribe", f"<{_one_line(unsubscribe_url)}>"),
                    ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")]  # fmt: skip
    headers.append(("MIME-Version", "1.0"))
    out = [f"{k}: {v}" for k, v in headers]
    if len(parts) == 1:
        out += _part(*parts[0])
    else:
        boundary = "==traction-" + hashlib.sha256(idem_key.encode()).hexdigest()[:24] + "=="
        out += [f'Content-Type: multipart/alternative; boundary="{boundary}"', ""]
        for kind, body in parts:
            out += [f"--{boundary}", *_part(kind, body)]
        out.append(f"--{boundary}--")
    return Email(parseaddr(sender)[1] or sender, to, ("\r\n".join(out) + "\r\n").encode("ascii"))


def _part(kind: str, body: str) -> list[str]:
    encoded = base64.encodebytes(body.encode("utf-8")).decode("ascii").rstrip("\n")
    return [f'Content-Type: text/{kind}; charset="utf-8"', "Content-Transfer-Encoding: base64",
            "", *encoded.split("\n")]  # fmt: skip


def _one_line(value: str) -> str:
    return " ".join(value.splitlines()).replace("\r", " ")


def _encoded(value: str) -> str:
    value = _one_line(value)
    if value.isascii() and len(value) < 900:
        return value
    return Header(value, "utf-8").encode()


class SMTPTransport:
    """One connection reused across sends (reconnects when the server drops it)."""

    def __init__(self, host: str, port: int, security: str = "none", user: str = "",
                 password: str = "", timeout: float = 30.0) -> None:  # fmt: skip
        self.host, self.port, self.security = host, port, security
        self.user, self.password, self.timeout = user, password, timeout
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                  context=ssl.create_default_context())  # fmt: skip
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
        if self.user:
            smtp.login(self.user, self.password)
        return smtp

    def send(self, msg: Email) -> None:
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._smtp.sendmail(msg.sender, [msg.to], msg.raw)
                return
            except smtplib.SMTPServerDisconnected:
                self._smtp = None
                if attempt == 2:
                    raise

    def close(self) -> None:
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._smtp = None


def quoted(url: str) -> str:
    return quote(url, safe="")
