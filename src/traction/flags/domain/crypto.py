"""Payload encryption as GrowthBook does it: AES-128/256-CBC with PKCS#7 padding, the key
base64 in the SDK's settings, the payload `base64(iv).base64(ciphertext)`. It hides the rules
from casual reading in a browser; it is not access control (the key ships to the browser)."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class DecryptError(ValueError):
    pass


def encrypt(plain: str, key_b64: str, iv: bytes | None = None) -> str:
    key = _key(key_b64)
    iv = iv or os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode("utf-8")) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = enc.update(data) + enc.finalize()
    return base64.b64encode(iv).decode() + "." + base64.b64encode(body).decode()


def decrypt(payload: str, key_b64: str) -> str:
    """The plain text, or DecryptError saying what is wrong."""
    key = _key(key_b64)
    iv_b64, sep, body_b64 = payload.partition(".")
    if not sep:
        raise DecryptError("the payload is not iv.ciphertext")
    try:
        iv, body = (
            base64.b64decode(iv_b64, validate=True),
            base64.b64decode(body_b64, validate=True),
        )
    except (binascii.Error, ValueError):
        raise DecryptError("the payload is not base64") from None
    if len(iv) != 16:
        raise DecryptError("the initialisation vector is not 16 bytes")
    if not body or len(body) % 16:
        raise DecryptError("the ciphertext is not whole AES blocks")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    data = dec.update(body) + dec.finalize()
    try:
        unpadder = padding.PKCS7(128).unpadder()
        plain = unpadder.update(data) + unpadder.finalize()
        return plain.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise DecryptError("the key does not decrypt this payload") from None


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def _key(key_b64: str) -> bytes:
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("the key is not base64") from None
    if len(key) not in (16, 24, 32):
        raise DecryptError("the key is not 128, 192 or 256 bits")
    return key
