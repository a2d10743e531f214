"""Email over SMTP: the message a delivery becomes, and the transport.

- `Message-ID` is derived from the delivery's idempotency key, so a resend after a crash is
  recognisably the same message (receivers and our tests can de-duplicate on it).
- Every non-transactional message carries the person's unsubscribe link in the body and
  RFC 8058's one-click headers (`List-Unsubscribe` with the URL, `List-Unsubscribe-Post:
  List-Unsubscribe=One-Click`), so mail clients can show "unsubscribe".
- Opens are counted by a 1x1 pixel, clicks by redirecting each link through our server.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import smtplib
import ssl
from collections.abc import Callable
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from urllib.parse import quote

_HREF = re.compile(r'href="(https?://[^"]+)"')


def message_id(idem_key: str, domain: str = "traction.local") -> str:
    return f"<{hashlib.sha256(idem_key.encode()).hexdigest()[:32]}@{domain}>"


def build(*, sender: str, to: str, subject: str, text: str, html: str, idem_key: str,
          unsubscribe_url: str | None, open_url: str | None,
          click_url: Callable[[str], str] | None) -> Message:  # fmt: skip
    """The MIME message (compat32: several times faster to build and flatten than the
    `email.policy.default` API, and it keeps a long List-Unsubscribe header whole)."""
    if unsubscribe_url:
        text += f"\n\n--\nUnsubscribe: {unsubscribe_url}\n"
    body: Message = MIMEText(text, "plain", "utf-8")
    if html:
        if click_url is not None:
            html = _HREF.sub(lambda m: f'href="{click_url(m.group(1))}"', html)
        if unsubscribe_url:
            html += f'<p style="font-size:12px;color:#666"><a href="{unsubscribe_url}">Unsubscribe</a></p>'
        if open_url:
            html += f'<img src="{open_url}" width="1" height="1" alt="">'
        alt = MIMEMultipart("alternative")
        alt.attach(body)
        alt.attach(MIMEText(html, "html", "utf-8"))
        body = alt
    body["From"], body["To"] = sender, to
    body["Subject"] = Header(subject, "utf-8").encode() if not subject.isascii() else subject
    body["Date"] = formatdate(usegmt=True)
    body["Message-ID"] = message_id(idem_key)
    body["X-Traction-Idempotency-Key"] = idem_key
    if unsubscribe_url:
        body["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        body["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return body


def as_bytes(msg: Message) -> bytes:
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(msg, linesep="\r\n")
    return out.getvalue()


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

    def send(self, msg: Message) -> None:
        raw = as_bytes(msg)
        for attempt in (1, 2):
            if self._smtp is None:
                self._smtp = self._connect()
            try:
                self._smtp.sendmail(str(msg["From"]), [str(msg["To"])], raw)
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
