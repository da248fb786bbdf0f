"""Check at start-up that the configured Claude models exist, with the Models API.

A model id that the API does not know (a typo, a retired model) would otherwise surface as
a 404 on the first draft or classification, as an ExternalServiceError that looks like an
outage. This asks `GET /v1/models/{id}` once per configured model and says, per model:
known, deprecated (with its retirement date when the API gives one), retired, unknown
(404), or could not check (network, auth, anything else). It never raises and never
blocks start-up for long: one short call per model, no retries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import anthropic

log = logging.getLogger(__name__)

#: Seconds a start-up check may wait for each answer.
CHECK_TIMEOUT_SECONDS: Final = 5.0


class ModelStatus(StrEnum):
    """What the Models API said about a configured model."""

    KNOWN = "known"
    DEPRECATED = "deprecated"
    RETIRED = "retired"
    UNKNOWN = "unknown"
    NOT_CHECKED = "not_checked"


@dataclass(frozen=True)
class ModelCheck:
    """The verdict on one configured model, with a message a person can act on."""

    setting: str
    model: str
    status: ModelStatus
    message: str

    @property
    def ok(self) -> bool:
        """True when the model can be used as configured (known, or not checked)."""
        return self.status in (ModelStatus.KNOWN, ModelStatus.NOT_CHECKED)

    def as_json(self) -> dict[str, str]:
        """The check as /healthz shows it."""
        return {"model": self.model, "status": self.status.value, "message": self.message}


def check_model(client: anthropic.Anthropic, *, setting: str, model: str) -> ModelCheck:
    """Ask the Models API about one model; never raise."""
    try:
        info = client.with_options(max_retries=0, timeout=CHECK_TIMEOUT_SECONDS).models.retrieve(
            model
        )
    except anthropic.NotFoundError:
        return ModelCheck(
            setting,
            model,
            ModelStatus.UNKNOWN,
            f"{setting}={model} is not a model the Anthropic API knows (HTTP 404): check "
            "the id; calls with it will fail",
        )
    except anthropic.AuthenticationError:
        return ModelCheck(
            setting,
            model,
            ModelStatus.NOT_CHECKED,
            f"could not check {setting}={model}: Anthropic rejected the API key (HTTP 401)",
        )
    except anthropic.APIStatusError as exc:
        return ModelCheck(
            setting,
            model,
            ModelStatus.NOT_CHECKED,
            f"could not check {setting}={model}: Anthropic answered HTTP {exc.status_code}",
        )
    except anthropic.APIError as exc:  # timeouts and connection errors
        reason = (
            "no answer in time" if isinstance(exc, anthropic.APITimeoutError) else "unreachable"
        )
        return ModelCheck(
            setting,
            model,
            ModelStatus.NOT_CHECKED,
            f"could not check {setting}={model}: Anthropic {reason}",
        )
    lifecycle = getattr(info, "lifecycle", None) or "active"
    retires_at = getattr(info, "retires_at", None)
    if lifecycle == "retired":
        return ModelCheck(
            setting,
            model,
            ModelStatus.RETIRED,
            f"{setting}={model} is retired: calls with it fail; choose a current model",
        )
    if lifecycle == "deprecated":
        when = f" on {retires_at:%Y-%m-%d}" if retires_at is not None else ""
        return ModelCheck(
            setting,
            model,
            ModelStatus.DEPRECATED,
            f"{setting}={model} is deprecated and will be retired{when}; move to a current model",
        )
    return ModelCheck(
        setting, model, ModelStatus.KNOWN, f"{setting}={model} is known ({info.display_name})"
    )


def check_models(
    client: anthropic.Anthropic, models: Iterable[tuple[str, str]]
) -> list[ModelCheck]:
    """Check each (setting, model id) once and log the verdicts (WARNING when not usable)."""
    checks: list[ModelCheck] = []
    seen: dict[str, ModelCheck] = {}
    for setting, model in models:
        earlier = seen.get(model)
        if earlier is not None:
            check = ModelCheck(
                setting, model, earlier.status, earlier.message.replace(earlier.setting, setting)
            )
        else:
            check = check_model(client, setting=setting, model=model)
            seen[model] = check
        checks.append(check)
        level = logging.INFO if check.status is ModelStatus.KNOWN else logging.WARNING
        log.log(
            level,
            check.message,
            extra={"setting": setting, "model": model, "model_status": check.status.value},
        )
    return checks
