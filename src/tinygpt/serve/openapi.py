"""The server's OpenAPI schema (/openapi.json): FastAPI's description of the routes, with the request bodies'
pydantic schemas, OpenAI's error object for every refusal, and what this server's models allow.

The routes read their JSON bodies themselves (with size and content-type checks), so FastAPI cannot see
them; `takes` names each route's body and `answers` its refusals, for clients and fuzzers to read.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from .engine import Engine
from .schemas import ChatRequest, CompletionRequest, InsideRequest
from .tokenizing import DetokenizeRequest, TokenizeRequest


class ErrorBody(BaseModel):
    """OpenAI's error object, the body of every refusal."""

    class Error(BaseModel):
        message: str
        type: str
        param: str | None
        code: str | None

    error: Error


BODIES = (CompletionRequest, ChatRequest, TokenizeRequest, DetokenizeRequest, InsideRequest, ErrorBody)
WHY = {400: "a bad request: the error names the field", 401: "no valid API key (--api-key)",
       404: "no such model", 413: "a body past the server's limit", 415: "a body that is not JSON",
       500: "the request failed while generating (the others go on)",
       503: "the batch and the line are full: retry after Retry-After seconds"}


def answers(*codes: int) -> dict:
    """The refusals a route may answer with, for the schema: each OpenAI's error object."""
    error = {"$ref": "#/components/schemas/ErrorBody"}
    return {code: {"description": WHY[code], "content": {"application/json": {"schema": error}}} for code in codes}


# The generating routes answer JSON, or server-sent events with "stream": true: each event's data is a chunk
# of JSON, or [DONE] at the end (the schema describes one event, as schemathesis reads a stream).
EVENT = {"type": "object", "required": ["data"],
         "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}
GENERATES = {200: {"description": "the answer, or its events when streamed", "content": {
    "application/json": {"schema": {"type": "object"}}, "text/event-stream": {"schema": EVENT}}},
    **answers(400, 401, 404, 413, 415, 500, 503)}


def takes(model: type[BaseModel]) -> dict:
    """A route's JSON body in the schema: the routes read their bodies themselves (read(), with its size
    and content-type checks), so FastAPI does not see them."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def openapi_schema(app: FastAPI, engine: Engine) -> dict:
    """FastAPI's schema of the routes, with the request bodies' pydantic schemas as its components, and what
    this server's models allow: the model names, and token ids below the largest vocabulary."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi
        from pydantic.json_schema import models_json_schema

        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description="The OpenAI API as tinygpt serves it, vLLM's tokenizer routes, "
                                         "/inside (the playground's look inside a model) and /health.")
        _, bodies = models_json_schema([(m, "validation") for m in BODIES],
                                       ref_template="#/components/schemas/{model}")
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.update(bodies["$defs"])
        vocab = max(run.model_config.vocab_size for run in engine.runs.values())
        for name in ("CompletionRequest", "ChatRequest", "TokenizeRequest", "DetokenizeRequest", "InsideRequest"):
            model = components[name]["properties"]["model"]
            named = {"type": "string", "enum": list(engine.runs)}
            if "anyOf" in model:  # optional: a name or null
                model["anyOf"] = [named if part == {"type": "string"} else part for part in model["anyOf"]]
            else:
                model.update(named)
        for ids in _integer_items(components["CompletionRequest"]["properties"]["prompt"],
                                  components["DetokenizeRequest"]["properties"]["tokens"]):
            ids["maximum"] = vocab - 1
        app.openapi_schema = schema
    return app.openapi_schema


def _integer_items(*schemas: dict):
    """Every {"type": "integer"} inside these JSON schemas (the token ids)."""
    for schema in schemas:
        if schema.get("type") == "integer":
            yield schema
        for key in ("items", "anyOf"):
            part = schema.get(key)
            yield from _integer_items(*(part if isinstance(part, list) else [part] if part else []))
