"""The Inside view's endpoint: what happens inside a served model on a text, for the playground's
Inside mode and for notebooks.

    POST /inside  {"text": "mary had a little"}              -> tokens, shapes, attention, logit lens, ...
    POST /inside  {"text": "mary had a little", "layer": 2}  -> {"layer": 2, "attention": one layer's maps}

It sits at the server's root, beside /v1 (which is OpenAI's), and answers `viz.inside.inside`'s dict:
the numbers `tinygpt inspect --json` prints, from the model's own forward pass. A text longer than the
model's context is read from its last block_size tokens (`note` says so). When all the attention maps
together would pass `viz.inside.ATTENTION_NUMBERS` weights, `attention` is null and the page asks for
one layer at a time. The forward pass runs on the engine's thread between decoding steps, so a look
inside never races a batch being decoded. `model` may be left out when one model is served.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..core.errors import TinyGPTError
from ..viz.inside import inside, trace
from .engine import Engine
from .openapi import answers, takes
from .responses import ApiError
from .schemas import InsideRequest

# What /inside answers (viz/inside.py builds it), for notebooks and fuzzers; a layer request answers {layer, attention}.
_LIST = {"type": "array"}
INSIDE = {200: {"description": "the Inside view of the text: viz.inside.inside's dict", "content": {
    "application/json": {"schema": {"type": "object", "properties": {
        "tokens": {**_LIST, "items": {"type": "string"}}, "ids": {**_LIST, "items": {"type": "integer"}},
        "note": {"type": "string"}, "arch": {"type": "string"}, "causal": {"type": "boolean"},
        "config": {"type": "object"}, "stages": _LIST,
        "attention": {"description": "[layer][head][t][s]: how much position t reads position s; null when too "
                                     "large to send whole (ask with layer)", "type": ["array", "null"]},
        "layer": {"type": "integer"}, "lens": _LIST, "next": {"type": "object"}, "embeddings": {"type": "object"}}}}}},
    **answers(400, 401, 404, 413, 415)}


def add_inside_routes(app: FastAPI, engine: Engine, watchers: dict, authorize, read, served):
    """POST /inside and GET /watch on `app`, with create_app's own checks: `authorize(request)` (the API key),
    `read(request, schema)` (the JSON body) and `served(model)` (name, run)."""
    last: dict = {}  # the last trace and what it was of: only the engine's thread touches it

    @app.post("/inside", openapi_extra=takes(InsideRequest), responses=INSIDE)
    async def look_inside(request: Request):
        authorize(request)
        body = await read(request, InsideRequest)
        name, run = served(body.model)
        if run.quantize != "none":
            raise ApiError(400, f"model: {name} is served with --quantize {run.quantize}; the Inside view shows the "
                           "weights as trained: serve it without --quantize to look inside", param="model")
        if body.layer is not None and body.layer > run.model_config.n_layer:
            raise ApiError(400, f"layer: this model's layers are 1 to {run.model_config.n_layer} (its n_layer), "
                           f"not {body.layer}", param="layer")
        watcher = watchers.get(name)

        def look():  # on the engine's thread, between steps: a trace's hooks must not see a batch's forward pass
            step = watcher.step if watcher is not None else None  # the weights' step, read with them
            key = (name, body.text, step)
            if last.get("key") != key:  # a new text or new weights (the layers of a page come one by one)
                last.update(key=key, trace=trace(run, body.text))
            view = inside(run, body.text, body.layer, last["trace"], body.millionths)
            return view if watcher is None else {**view, "step": step}

        try:
            view = await asyncio.wrap_future(engine.call(look))
        except TinyGPTError as e:  # a text the tokenizer cannot read, a model with nothing inside to show
            raise ApiError(400, str(e)) from None
        # Written directly: FastAPI's encoder walks every one of a layer's 400,000 numbers first (1 s).
        return Response(json.dumps(view, separators=(",", ":")), media_type="application/json")

    @app.get("/watch", responses=answers(400, 401, 404))
    async def watch(request: Request, model: str | None = None):
        """The followed run's newest weights (their step, when written and loaded) and its metrics so far."""
        authorize(request)
        name, _ = served(model)
        if name not in watchers:
            raise ApiError(400, f"{name} is not being watched: serve it with tinygpt serve RUN --watch to follow a "
                           "run as it trains", param="model")
        return watchers[name].status()
