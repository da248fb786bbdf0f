"""The pure part of newsletters: the sending plan (caps, shares, spacing, finish, the 30-day
refusal), the templates and the status table."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from domain.errors import InvalidInput, InvalidTransition
from domain.newsletters import (
    CANCELLABLE,
    IssueStatus,
    IssueTemplates,
    SenderMailbox,
    Subscriber,
    cancel_note,
    check_cancellable,
    check_issue,
    check_transition,
    describe_plan,
    final_cancel_note,
    pace_of,
    plan_sending,
    render_issue,
    slot_rows,
    sources_of,
    subscriber_context,
)
from domain.templates import TemplateProblem

START = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def mailbox(account_id: int, *, cap: int = 400, spacing: int = 5, **kw: object) -> SenderMailbox:
    return SenderMailbox(
        account_id=account_id,
        user_id=account_id * 10,
        email=f"rep{account_id}@lonestar.example.com",
        daily_cap=cap,
        min_interval_seconds=spacing,
        **kw,  # type: ignore[arg-type]
    )


def max_in_any_day(times: list[datetime]) -> int:
    times = sorted(times)
    best, left = 0, 0
    for right, at in enumerate(times):
        while at - times[left] >= timedelta(hours=24):
            left += 1
        best = max(best, right - left + 1)
    return best


def test_a_mailbox_sends_half_its_cap_a_day_by_default_spaced_evenly() -> None:
    pace = pace_of(mailbox(1, cap=400), share_percent=50, start=START)
    assert (pace.per_day, pace.interval_seconds) == (200, 432)


def test_the_mailbox_spacing_wins_over_an_even_spread_when_it_is_longer() -> None:
    pace = pace_of(mailbox(1, cap=400, spacing=600), share_percent=100, start=START)
    assert pace.interval_seconds == 600
    assert pace.per_day == 144


def test_no_24_hours_of_a_plan_hold_more_than_each_mailbox_share() -> None:
    plan = plan_sending(
        [mailbox(1, cap=400), mailbox(2, cap=100)],
        share_percent=50,
        subscribers=2_000,
        start=START,
    )
    by_mailbox: dict[int, list[datetime]] = {}
    for pace, at in plan.slots():
        by_mailbox.setdefault(pace.account_id, []).append(at)
    assert sum(len(v) for v in by_mailbox.values()) == 2_000
    assert max_in_any_day(by_mailbox[1]) == 200
    assert max_in_any_day(by_mailbox[2]) == 50
    for times in by_mailbox.values():
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        assert min(gaps) >= timedelta(seconds=5)
    assert plan.per_day == 250
    # 2,000 at 250 a day: the last leaves in the 8th day.
    assert plan.finish == max(max(v) for v in by_mailbox.values())
    assert START + timedelta(days=7) < plan.finish < START + timedelta(days=8)


def test_the_plan_skips_what_was_planned_before_a_crash() -> None:
    plan = plan_sending([mailbox(1), mailbox(2)], share_percent=50, subscribers=100, start=START)
    everything = list(plan.slots())
    assert list(plan.slots(skip=40)) == everything[40:]


def test_a_subscriber_skipped_at_planning_takes_no_slot_and_the_next_batch_goes_on_after() -> None:
    plan = plan_sending([mailbox(1), mailbox(2)], share_percent=50, subscribers=7, start=START)
    # Batches of three subscribers, as the planner reads them; None: the template failed.
    batches: list[list[str | None]] = [["a", None, "b"], ["c", "d", None], ["e"]]
    given: list[tuple[str, int, datetime]] = []
    for batch in batches:
        # Each batch starts after the rows stored so far (the stored planned_count).
        given += [
            (row, pace.account_id, at)
            for row, pace, at in slot_rows(plan, given=len(given), rendered=batch)
        ]

    assert [row for row, _, _ in given] == ["a", "b", "c", "d", "e"]
    # The first five slots of the plan, each given once: no two rows share a time.
    assert [(box, at) for _, box, at in given] == [
        (pace.account_id, at) for pace, at in list(plan.slots())[:5]
    ]
    assert len({(box, at) for _, box, at in given}) == 5


def test_a_mailbox_busy_with_an_earlier_issue_starts_after_it() -> None:
    later = START + timedelta(days=3)
    plan = plan_sending(
        [mailbox(1, busy_until=later)], share_percent=50, subscribers=10, start=START
    )
    assert next(plan.slots())[1] == later


def test_more_subscribers_than_30_days_allow_are_refused_with_the_figures() -> None:
    with pytest.raises(InvalidInput) as refused:
        plan_sending(
            [mailbox(1, cap=100), mailbox(2, cap=100)],
            share_percent=50,
            subscribers=3_001,
            start=START,
            newsletter_name="'Lender Update'",
        )
    assert refused.value.message == (
        "3,001 subscribers, but 2 mailboxes can send 3,000 emails of 'Lender Update' in 30 days"
        " (100/day at 50% of their daily caps): add senders, raise the share, or raise the"
        " mailboxes' daily caps."
    )
    assert (
        plan_sending(
            [mailbox(1, cap=100), mailbox(2, cap=100)],
            share_percent=50,
            subscribers=3_000,
            start=START,
        ).total
        == 3_000
    )


def test_no_connected_mailbox_is_refused_with_what_to_do() -> None:
    with pytest.raises(InvalidInput, match="No sender of 'Lender Update' has a connected Gmail"):
        plan_sending(
            [], share_percent=50, subscribers=1, start=START, newsletter_name="'Lender Update'"
        )


def test_the_plan_is_said_in_one_line() -> None:
    plan = plan_sending([mailbox(1), mailbox(2)], share_percent=50, subscribers=1_000, start=START)
    assert (
        describe_plan(plan) == "1,000 emails from 2 mailboxes, 400/day, finishes Dec 10 ≈01:52 UTC"
    )


def test_a_template_that_does_not_render_is_refused_with_its_line() -> None:
    broken = IssueTemplates(subject="Hi", html="", text="Hello\n{{ first_name }\n")
    with pytest.raises(TemplateProblem) as refused:
        check_issue(broken)
    assert refused.value.message.startswith("text_template, line 2:")
    unknown = IssueTemplates(subject="Hi", html="<p>\n\n{{ coupon }}</p>", text="x")
    with pytest.raises(
        TemplateProblem, match=r"html_template, line 3: unknown variable\(s\) coupon"
    ):
        check_issue(unknown)


def test_the_html_part_escapes_what_the_contact_and_variables_hold() -> None:
    templates = IssueTemplates(
        subject="{{ issue_title }} for {{ first_name }}",
        html="<p>Hi {{ first_name }}, {{ rate }}</p>",
        text="Hi {{ first_name }}, {{ rate }}",
        variables={"rate": "<b>5%</b>"},
    )
    check_issue(templates)
    context = subscriber_context(
        Subscriber(contact_id=1, email="d@x.example", first_name="<Dana>"),
        firm_name="Lone Star",
        newsletter_name="Lender Update",
        issue_title="December",
        variables=templates.variables,
    )
    rendered = render_issue(templates, context)
    assert rendered.subject == "December for <Dana>"
    assert rendered.text == "Hi <Dana>, <b>5%</b>"
    assert rendered.html == "<p>Hi &lt;Dana&gt;, &lt;b&gt;5%&lt;/b&gt;</p>"


def test_a_variable_named_like_the_subscriber_s_is_refused() -> None:
    with pytest.raises(InvalidInput, match="variable 'first_name' is the subscriber's"):
        check_issue(IssueTemplates(subject="x", html="", text="x", variables={"first_name": "A"}))


def test_an_issue_moves_only_along_its_table() -> None:
    check_transition(1, IssueStatus.IN_REVIEW, IssueStatus.SCHEDULED)
    with pytest.raises(InvalidTransition, match="Issue 1 is sent; it cannot become in review"):
        check_transition(1, IssueStatus.SENT, IssueStatus.IN_REVIEW)


def test_only_a_scheduled_or_sending_issue_can_be_cancelled_and_then_stays_cancelled() -> None:
    check_transition(1, IssueStatus.SCHEDULED, IssueStatus.CANCELLED)
    check_transition(1, IssueStatus.SENDING, IssueStatus.CANCELLED)
    assert sources_of(IssueStatus.CANCELLED) >= CANCELLABLE
    for target in IssueStatus:
        with pytest.raises(InvalidTransition):
            check_transition(1, IssueStatus.CANCELLED, target)
    with pytest.raises(InvalidTransition):
        check_transition(1, IssueStatus.SENT, IssueStatus.CANCELLED)
    # Cancelling again is not refused (a double click, a retry): it changes nothing.
    check_cancellable(1, IssueStatus.CANCELLED)
    check_cancellable(1, IssueStatus.SENDING)


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (
            IssueStatus.DRAFT,
            "Issue 4 cannot be cancelled: it is a draft, nothing is being sent; delete it instead.",
        ),
        (
            IssueStatus.IN_REVIEW,
            "Issue 4 cannot be cancelled: it is in review, nothing is being"
            " sent; reject it instead.",
        ),
        (
            IssueStatus.REJECTED,
            "Issue 4 cannot be cancelled: it was rejected, nothing is being sent.",
        ),
        (IssueStatus.SENT, "Issue 4 cannot be cancelled: every email of it is already sent."),
    ],
)
def test_cancelling_an_issue_not_on_its_way_says_what_to_do_instead(
    status: IssueStatus, says: str
) -> None:
    with pytest.raises(InvalidTransition) as refused:
        check_cancellable(4, status)
    assert refused.value.message == says


def test_the_cancelled_card_says_who_when_and_how_many_went_out() -> None:
    at = datetime(2026, 12, 8, 9, 5, tzinfo=UTC)
    assert (
        cancel_note(
            by="<@U0MARIA>", at=at, sent=1_200, on_their_way=0, withdrawn=3_920, planned=5_120
        )
        == "🛑 Sending cancelled by <@U0MARIA> on Dec 8 09:05 UTC: 1,200 of 5,120 sent,"
        " 3,920 withdrawn."
    )
    assert cancel_note(
        by="<@U0MARIA>", at=at, sent=3, on_their_way=1, withdrawn=1, planned=5
    ).endswith("3 of 5 sent, 1 withdrawn, 1 already on their way (sent unless Gmail refuses).")


def test_the_final_card_of_a_cancelled_issue_says_how_the_emails_on_their_way_ended() -> None:
    at = datetime(2026, 12, 8, 9, 5, tzinfo=UTC)
    head = "🛑 Sending cancelled by <@U0MARIA> on Dec 8 09:05 UTC: "
    final = partial(final_cancel_note, by="<@U0MARIA>", at=at, planned=5)
    assert (
        final(sent=3, sent_before_cancel=2, withdrawn=2, failed=0)
        == head + "3 of 5 sent (1 finished after the cancel), 2 withdrawn."
    )
    # Those on their way that were withdrawn in the end (put back in the queue, then
    # claimed again) add nothing to say: the figures are the cancel's own words.
    assert final(sent=2, sent_before_cancel=2, withdrawn=3, failed=0) == (
        head + "2 of 5 sent, 3 withdrawn."
    )
    refused = final(
        sent=2, sent_before_cancel=1, withdrawn=1, failed=2, commonest_failure=("refused", 1)
    )
    assert refused == head + (
        "2 of 5 sent (1 finished after the cancel), 1 withdrawn; 2 not sent (1 of them: refused)."
    )
    assert final(sent=4, sent_before_cancel=4, withdrawn=0, failed=1) == (
        head + "4 of 5 sent, 0 withdrawn; 1 not sent."
    )


def test_mailboxes_take_turns_in_time_order() -> None:
    plan = plan_sending([mailbox(1), mailbox(2)], share_percent=50, subscribers=6, start=START)
    assert Counter(p.account_id for p, _ in plan.slots()) == {1: 3, 2: 3}
    times = [at for _, at in plan.slots()]
    assert times == sorted(times)
