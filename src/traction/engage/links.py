"""Signed links in messages: unsubscribe (per workspace and address), open pixel and click
redirect (per delivery). An HMAC over the payload, so links cannot be forged or edited, and
nothing needs storing to check them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import quote


def secret_for(configured: str, data_dir: Path) -> str:
    """The configured secret, else one made once and kept in the data dir (replicas sharing a
    StateStore must configure the same one)."""
    if configured:
        return configured
    path = data_dir / "link.secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Links:
    def __init__(self, secret: str, base_url: str) -> None:
        self._key = secret.encode()
        self.base = base_url.rstrip("/")

    def sign(self, payload: str) -> str:
        mac = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
        return f"{_b64(payload.encode())}.{_b64(mac)}"

    def open(self, token: str) -> str | None:
        """The payload of a token this server signed, else None."""
        try:
            body, mac = token.split(".", 1)
            payload = _unb64(body).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        good = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()[:16]
        try:
            return payload if hmac.compare_digest(good, _unb64(mac)) else None
        except ValueError:
            return None

    def unsubscribe(self, workspace_id: str, email: str, delivery_id: int | None = None) -> str:
        """Per address; with the delivery, the message it came in is counted too."""
        which = f"{delivery_id}:" if delivery_id is not None else ""
        return f"{self.base}/m/u/{self.sign(f'u:{workspace_id}:{which}{email.lower()}')}"

    def pixel(self, delivery_id: int) -> str:
        return f"{self.base}/m/o/{self.sign(f'o:{delivery_id}')}.gif"

    def click(self, delivery_id: int, url: str) -> str:
        return f"{self.base}/m/c/{self.sign(f'c:{delivery_id}:{url}')}?to={quote(url, safe='')}"


def unsubscribe_parts(rest: str) -> tuple[int | None, str]:
    """(delivery id or None, address) from what follows `u:{workspace}:` in a token."""
    head, sep, tail = rest.partition(":")
    if sep and head.isdigit():
        return int(head), tail
    return None, rest
