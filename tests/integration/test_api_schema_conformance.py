"""The REST API answers as its OpenAPI document says (schemathesis), on SQLite and PostgreSQL.

Schemathesis generates requests from /openapi.json, valid ones and invalid ones, sent with
a write token, and checks every answer: no 5xx, a status the document lists, the declared
content type, and a body that matches the declared schema. The examples per operation
are few, so the run stays within seconds; the generator is derandomized, so a failure
repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from domain.clock import FixedClock
from tests.support.api import ApiWorld, make_api_world
from tests.support.gmail_app import google_settings
from tests.support.google import running_google_stand_in

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 10


@pytest.fixture
def api(
    engine: Engine, session_factory: Callable[[], Session], clock: FixedClock
) -> Iterator[ApiWorld]:
    with running_google_stand_in() as google:
        # Schemathesis runs the app's lifespan: no background work on the test's transaction.
        yield make_api_world(
            engine,
            session_factory,
            clock,
            start_background=False,
            settings=google_settings(google),
        )


def _check_operation(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_every_operation_answers_as_the_openapi_document_says(api: ApiWorld) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        if operation.path == "/readyz":
            # No worker runs beside this app: /readyz answers its documented 503, which
            # is what it is for (tests/integration/test_operations.py checks its answers).
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _check_operation(operation, mode, api.auth())
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to get wrong (no inputs)
            except (Exception, BaseExceptionGroup) as exc:  # every operation's failure counts
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert operations == 105
    assert failures == [], "\n\n".join(failures)
