"""Pure rules of campaigns, audiences and templates."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from domain.audience import AudienceCriteria
from domain.campaigns import CampaignCreate, CampaignUpdate
from domain.contacts import normalize_domain, normalize_email
from domain.templates import TemplateProblem, check_template, render_text


def test_a_cadence_must_start_at_day_zero_and_increase() -> None:
    with pytest.raises(ValidationError, match="must start at day 0"):
        CampaignCreate(name="x", cadence_days=[1, 4])
    with pytest.raises(ValidationError, match="strictly increasing"):
        CampaignCreate(name="x", cadence_days=[0, 4, 4])
    assert CampaignCreate(name="x", cadence_days=[0, 3, 7]).cadence_days == [0, 3, 7]


def test_criteria_are_cleaned_deduplicated_and_lower_cased_where_it_matters() -> None:
    criteria = AudienceCriteria(
        include_tags=[" Lender", "lender", ""], target_role_codes=["LO", "LO "], states=["tx"]
    )
    assert criteria.include_tags == ["lender"]
    assert criteria.target_role_codes == ["LO"]
    assert criteria.states == ["TX"]


def test_contradictory_targeting_is_refused() -> None:
    with pytest.raises(ValidationError, match="both included and excluded: amc"):
        AudienceCriteria(include_tags=["amc"], exclude_tags=["AMC"])


def test_a_campaign_update_is_validated_as_a_whole() -> None:
    campaign = CampaignCreate(name="Win-back", target_role_codes=["LO"])
    with pytest.raises(ValidationError, match="both targeted and excluded"):
        CampaignUpdate(exclude_role_codes=["LO"]).apply_to(campaign)
    changed = CampaignUpdate(description="new").apply_to(campaign)
    assert changed.description == "new"
    assert changed.target_role_codes == ["LO"]


def test_a_campaign_criteria_are_its_targeting_fields() -> None:
    campaign = CampaignCreate(name="x", include_tags=["amc"], stale_client_days=120)
    criteria = campaign.criteria()
    assert criteria.include_tags == ["amc"]
    assert criteria.stale_client_days == 120


def test_templates_render_in_the_sandbox_with_the_contacts_values() -> None:
    assert render_text("Hi {{ first_name|upper }}", {"first_name": "Dana"}) == "Hi DANA"


def test_a_template_missing_a_value_at_render_time_says_which() -> None:
    with pytest.raises(TemplateProblem, match="'first_name' is undefined"):
        render_text("Hi {{ first_name }}", {})


def test_a_template_that_loops_forever_is_bounded_by_output_size() -> None:
    with pytest.raises(TemplateProblem, match="renders to more than"):
        check_template("{% for i in range(100000) %}{{ full_name }}{% endfor %}", field="body")


def test_addresses_and_domains_are_normalized() -> None:
    assert normalize_email("  Dana@Pinnacle.COM ") == "dana@pinnacle.com"
    assert normalize_domain("https://www.PinnacleLending.com/about") == "pinnaclelending.com"
    assert normalize_domain("loans@pinnacle.com") == "pinnacle.com"
