"""Secrets at rest and signed links."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from integrations.crypto import LinkSigner, SecretBox

KEY = "k" * 40


def test_a_secret_round_trips_and_is_not_stored_in_clear() -> None:
    box = SecretBox(KEY)
    token = box.encrypt_bytes("1//refresh-token")
    assert b"refresh-token" not in token
    assert box.decrypt_bytes(token) == "1//refresh-token"
    assert box.decrypt(box.encrypt("hunter2")) == "hunter2"


def test_another_key_cannot_decrypt() -> None:
    token = SecretBox(KEY).encrypt_bytes("x")
    with pytest.raises(InvalidInput, match="cannot be decrypted"):
        SecretBox("z" * 40).decrypt_bytes(token)


def test_a_signed_link_verifies_and_a_tampered_one_does_not() -> None:
    signer = LinkSigner(KEY, purpose="unsubscribe")
    token = signer.sign({"contact": 7})
    assert signer.verify(token) == {"contact": 7}
    data, mac = token.split(".")
    forged = LinkSigner(KEY, purpose="unsubscribe").sign({"contact": 8}).split(".")[0] + "." + mac
    with pytest.raises(InvalidInput, match="invalid unsubscribe token"):
        signer.verify(forged)
    with pytest.raises(InvalidInput, match="invalid"):
        LinkSigner(KEY, purpose="oauth-state").verify(token)


def test_an_expired_link_is_refused() -> None:
    signer = LinkSigner(KEY, purpose="oauth-state")
    with pytest.raises(InvalidInput, match="expired"):
        signer.verify(signer.sign({"u": 1}, expires_in=-1))
