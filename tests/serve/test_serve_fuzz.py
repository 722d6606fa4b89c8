"""The API fuzzed against its own OpenAPI schema: no input makes it answer 5xx.

Every operation of the live server's ``/openapi.json`` gets generated
requests, valid and invalid (schemathesis strategies, driven by hypothesis),
bounded in examples and with a deadline, against a server over the test's own
emulator.
"""

from __future__ import annotations

from collections.abc import Callable

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from serve_helpers import LiveServer

EXAMPLES_PER_OPERATION = 30


def test_no_generated_request_makes_the_server_fail(
    start_server: Callable[..., LiveServer],
) -> None:
    live = start_server()
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/lookup/{word}", "/jobs/{job_id}", "/cost"}
    refusals = 0

    for operation in operations:
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=strategy)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal refusals
            response = case.call(base_url=live.url, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                refusals += 1
                # Every refusal is one line of JSON.
                body = response.json()
                assert set(body) == {"error"} and "\n" not in body["error"], body

        fuzz()
    # The invalid inputs were generated and refused, not only the valid ones answered.
    assert refusals > 0
