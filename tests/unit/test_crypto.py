"""Secrets at rest and signed links."""

from __future__ import annotations

import pytest

from domain.errors import InvalidInput
from domain.unsubscribe_address import build_unsubscribe_address
from integrations.crypto import LinkSigner, MailtoUnsubscribeTokens, SecretBox

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


# --- the List-Unsubscribe mailto token ----------------------------------------------------


def test_mailto_token_reads_back_and_fits_an_address_local_part() -> None:
    tokens = MailtoUnsubscribeTokens("k" * 40)
    token = tokens.build(12, 4_821_337)
    assert token == token.lower()
    assert token.startswith("o12c4821337.")
    assert tokens.read(token) == (12, 4_821_337)
    # Relays may change the case of an address; the token survives it.
    assert tokens.read(token.upper()) == (12, 4_821_337)
    assert len(build_unsubscribe_address("maria.lopez@lonestar.example.com", token)) < 80


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "o12c4821337",
        "o12c4821337.",
        "o12c4821338.aaaaaaaaaaaaaaaa",
        "x12c4821337.aaaaaaaaaaaaaaaa",
        "o12c4821337.aaaaaaaaaaaaaaaa.extra",
        "o" + "9" * 40 + "c1.aaaaaaaaaaaaaaaa",
    ],
)
def test_mailto_token_refuses_anything_not_signed_by_us(forged: str) -> None:
    assert MailtoUnsubscribeTokens("k" * 40).read(forged) is None


def test_mailto_token_of_another_contact_or_key_is_refused() -> None:
    ours, theirs = MailtoUnsubscribeTokens("k" * 40), MailtoUnsubscribeTokens("j" * 40)
    token = ours.build(1, 2)
    payload, _, mac = token.partition(".")
    assert theirs.read(token) is None
    assert ours.read(f"o1c3.{mac}") is None
    assert ours.read(f"{payload}.{mac[:-1]}") is None
