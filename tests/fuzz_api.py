"""A property-based fuzz of `tinygpt serve` from its own OpenAPI schema (schemathesis), shared by the suite
(tests/test_fuzz.py, a bounded number of examples) and the longer benchmark (benchmarks/fuzz_api.py).

    report = fuzz("http://127.0.0.1:8000", examples=50)
    report["cases"], report["statuses"], report["failures"]

Every operation of /openapi.json gets `examples` requests that the schema allows (positive) and
`examples` that it forbids (negative: wrong types, missing fields, bad values), each sent and checked
by schemathesis's checks: no 5xx (not_a_server_error), only documented status codes, the documented
content type, a body that matches the documented schema, and every forbidden request refused. Left
out: positive_data_acceptance, which expects a 2xx for every request the schema allows; a schema
cannot say which characters a model has seen or which model names are served, so a 400 or 404 for
those is the right answer.
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.failures import FailureGroup  # a BaseExceptionGroup: schemathesis's report of one operation


def fuzz(url: str, examples: int = 50, derandomize: bool = True) -> dict:
    """Fuzz the server at `url`; {"cases", "statuses": {code: count}, "failures": [(operation, report)],
    "operations": [...]}. An operation whose checks fail is reported (schemathesis's report: the failures,
    each with a curl line to reproduce it) and the fuzz goes on to the next."""
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter = Counter()
    failures: list[tuple[str, str]] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, database=None, derandomize=derandomize,
                      suppress_health_check=list(HealthCheck))
            def send(case):
                response = case.call()
                statuses[response.status_code] += 1
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

            try:
                send()
            except Unsatisfiable:  # an operation with nothing to get wrong (no parameters, no body)
                pass
            except (Exception, FailureGroup) as e:  # noqa: BLE001 (schemathesis's report, kept with the operation)
                failures.append((f"{mode.value} {operation.label}", str(e)))
    return {"cases": sum(statuses.values()), "statuses": dict(statuses), "failures": failures,
            "operations": [o.label for o in operations]}
