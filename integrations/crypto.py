"""Encryption of secrets at rest and signed links, keyed from SALESBOT_SECRET_KEY."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from domain.errors import InvalidInput


def _derive(secret_key: str, purpose: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"salesbot/v1", info=purpose.encode()
    ).derive(secret_key.encode())


class SecretBox:
    """Fernet (AES-128-CBC + HMAC-SHA256) with a key derived for one purpose by HKDF."""

    def __init__(self, secret_key: str, *, purpose: str = "secrets-at-rest") -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(secret_key, purpose)))

    def encrypt_bytes(self, plaintext: str) -> bytes:
        """Encrypt text; the result is opaque bytes for a binary column."""
        return self._fernet.encrypt(plaintext.encode())

    def decrypt_bytes(self, token: bytes) -> str:
        """Decrypt what encrypt_bytes made; raise InvalidInput if it was tampered with."""
        try:
            return self._fernet.decrypt(token).decode()
        except InvalidToken:
            raise InvalidInput(
                "a stored secret cannot be decrypted (was SALESBOT_SECRET_KEY changed?)"
            ) from None

    def encrypt(self, plaintext: str) -> str:
        """Encrypt text to a printable token (for JSON fields)."""
        return "enc:" + self.encrypt_bytes(plaintext).decode()

    def decrypt(self, token: str) -> str:
        """Decrypt a printable token made by encrypt."""
        if not token.startswith("enc:"):
            raise InvalidInput("not an encrypted value")
        return self.decrypt_bytes(token[4:].encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """HMAC-SHA256 signed, expiring tokens for links and OAuth state (one key per purpose)."""

    def __init__(self, secret_key: str, *, purpose: str) -> None:
        self._key = _derive(secret_key, f"link:{purpose}")
        self._purpose = purpose

    def sign(self, payload: dict[str, Any], *, expires_in: int | None = None) -> str:
        """Return a URL-safe token carrying `payload`, valid for `expires_in` seconds."""
        body = dict(payload)
        if expires_in is not None:
            body["_exp"] = int(time.time()) + expires_in
        data = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True).encode())
        mac = hmac.new(self._key, data.encode(), hashlib.sha256).digest()
        return f"{data}.{_b64(mac)}"

    def verify(self, token: str) -> dict[str, Any]:
        """Return the payload of a valid token; raise InvalidInput if forged or expired."""
        data, _, mac = token.partition(".")
        if not data or not mac:
            raise InvalidInput(f"malformed {self._purpose} token")
        expected = hmac.new(self._key, data.encode(), hashlib.sha256).digest()
        try:
            given = _unb64(mac)
        except ValueError:
            raise InvalidInput(f"malformed {self._purpose} token") from None
        if not hmac.compare_digest(expected, given):
            raise InvalidInput(f"invalid {self._purpose} token")
        payload: dict[str, Any] = json.loads(_unb64(data))
        expires = payload.pop("_exp", None)
        if expires is not None and time.time() > expires:
            raise InvalidInput(f"expired {self._purpose} token")
        return payload


_MAILTO_PAYLOAD = re.compile(r"o([0-9]{1,12})c([0-9]{1,15})")
# 80 bits of HMAC: forging one token takes ~2^80 tries, and each try is an email to us.
_MAILTO_MAC_BYTES = 10


class MailtoUnsubscribeTokens:
    """Short signed tokens for the `+unsub-<token>` address of our List-Unsubscribe mailto.

    The one-click URL's token is too long for an address's local part (64 characters), and
    some relays lower-case addresses, so this one is `o<org>c<contact>.<mac>` in lower case:
    the ids in decimal and 80 bits of HMAC-SHA256 in base32, e.g. `o1c4821.mfrggzdfmztwq2lk`
    (27 characters for ids of this size). It never expires: a request to be removed is
    honoured however late it comes.
    """

    def __init__(self, secret_key: str) -> None:
        self._key = _derive(secret_key, "link:unsubscribe-mailto")

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
        return base64.b32encode(digest[:_MAILTO_MAC_BYTES]).decode().lower()

    def build(self, org_id: int, contact_id: int) -> str:
        """Return the token naming this organization's contact."""
        payload = f"o{org_id}c{contact_id}"
        return f"{payload}.{self._mac(payload)}"

    def read(self, token: str) -> tuple[int, int] | None:
        """Return (org_id, contact_id) of a genuine token, None for anything else."""
        payload, dot, mac = token.strip().lower().partition(".")
        found = _MAILTO_PAYLOAD.fullmatch(payload)
        if not dot or found is None:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        return int(found.group(1)), int(found.group(2))
