"""The server against a fuzzer that reads its schema (schemathesis): no request, allowed or forbidden by
the schema, gets a 5xx or an answer the schema does not describe. A bounded run; benchmarks/fuzz_api.py
runs a longer one."""

import pytest

pytest.importorskip("schemathesis")

from fuzz_api import fuzz  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.serve.app import create_app  # noqa: E402
from tinygpt.serve.engine import Engine  # noqa: E402
from tinygpt.serve.server import Server  # noqa: E402


def test_no_generated_request_gets_a_server_error_or_breaks_the_schema(char_run, chat_run):
    engine = Engine({"char": tinygpt.load(char_run), "chat": tinygpt.load(chat_run)}, max_batch=16,
                    max_waiting=64).start()
    server = Server(create_app(engine, quiet=True, max_tokens=32), "127.0.0.1", 0).start()
    try:
        report = fuzz(server.url, examples=20)
    finally:
        server.stop()
        engine.stop()
    assert report["failures"] == []
    assert report["cases"] >= 200 and 500 not in report["statuses"]
    assert {"POST /v1/completions", "POST /v1/chat/completions", "POST /tokenize"} <= set(report["operations"])
