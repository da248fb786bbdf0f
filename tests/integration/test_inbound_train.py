"""`salesbot inbound train`: the offline model re-trained on the labelled set plus reps'
corrections, written where the offline classifier trains from (on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine

from integrations.offline_classifier import LABELLED_SET, OfflineClassifier, read_labelled_examples
from storage import models as m
from storage.db import make_session_factory
from tests.integration.test_cli import Invoke, cli  # noqa: F401 - the fixture
from tests.support.builders import make_org


def _corrected(session: object, org_id: int, n: int, text: str, before: str, after: str) -> None:
    email = m.InboundEmail(
        org_id=org_id,
        gmail_message_id=f"g-{org_id}-{n}",
        status="processed",
        from_email="ap@pinnacle.example",
        subject=f"Invoice {n}",
        reply_text=text,
        category=after,
        intent="none",
        sentiment="neutral",
        classified_by="rep",
    )
    session.add(email)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    labels = {"intent": "none", "sentiment": "neutral"}
    session.add(  # type: ignore[attr-defined]
        m.ClassifierCorrection(
            org_id=org_id,
            inbound_email_id=email.id,
            sender_email="ap@pinnacle.example",
            sender_domain="pinnacle.example",
            before={"category": before, **labels},
            after={"category": after, **labels},
        )
    )


def test_train_writes_the_corrections_and_the_offline_classifier_learns_them(
    cli: Invoke,  # noqa: F811
    committed_engine: Engine,
    tmp_path: Path,
) -> None:
    sessions = make_session_factory(committed_engine)
    with sessions() as session:
        acme = make_org(session, slug="acme")
        other = make_org(session, slug="other")
        _corrected(
            session, acme.id, 1, "Invoice 88 for the Barton file is attached.", "AMC_ORDER", "AP"
        )
        _corrected(
            session, acme.id, 2, "Our remittance for March is enclosed.", "INFORMATION", "AP"
        )
        _corrected(session, other.id, 3, "Please update our W-9 on file.", "AP", "UPDATES")
        session.commit()
    shipped = read_labelled_examples(LABELLED_SET)
    written = tmp_path / "salesbot-corrections.jsonl"
    running = OfflineClassifier(extra_examples=written)
    before = running.name

    code, output = cli("inbound", "train", "--org", "acme")

    assert code == 0, output
    total = len(shipped) + 2
    assert f"{total} examples: {len(shipped)} labelled + 2 corrections from organization acme" in (
        output
    )
    ap = sum(1 for e in shipped if e.category.value == "AP")
    assert f"AP: {ap + 2} (+2 corrections)" in output
    assert "category accuracy, 5-fold cross-validated: 0." in output
    lines = [json.loads(line) for line in written.read_text(encoding="utf-8").splitlines()]
    assert [(line["category"], line["body"]) for line in lines] == [
        ("AP", "Invoice 88 for the Barton file is attached."),
        ("AP", "Our remittance for March is enclosed."),
    ]
    # A classifier already running trains again on the new file at its next use.
    after = running.name
    assert after != before
    assert f"offline model {after.removeprefix('offline:')}" in output

    code, output = cli("inbound", "train")
    assert code == 0, output
    assert "3 corrections from 2 organization(s)" in output
    assert len(written.read_text(encoding="utf-8").splitlines()) == 3
    code, output = cli("inbound", "train", "--org", "nope")
    assert (code, output) == (2, "error: no organization 'nope'")
