"""The HTTP face of the engine: OpenAI's /v1 routes, /health, and the playground page at /.

    app = create_app(Engine({"rhyme": tinygpt.load("runs/rhyme")}).start())

Every refusal is OpenAI's error object, `{"error": {"message", "type", "param", "code"}}`, with a 4xx
status (5xx only for a full server), and the server goes on serving. Streams are server-sent events
in OpenAI's chunk format ending with `data: [DONE]`; a client that goes away cancels its rows.

A prompt longer than the model's block_size is cropped from the left, as `tinygpt sample` does (the
model reads the last block_size tokens); the response says so in `warnings`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import sys
import time
from functools import partial
from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from ..core.errors import TinyGPTError
from ..core.tokens import CHAT_TOKENS
from ..core.version import __version__
from ..generation import SamplingConfig
from ..generation.chat import run_chat_format
from ..generation.sampling import BadKnob
from .engine import Busy, Chunk, Engine
from .engine import Request as Job
from .inside import add_inside_routes
from .openapi import GENERATES, answers, openapi_schema, takes
from .responses import ApiError, ChatCompletion, Completion, sse
from .schemas import ChatRequest, CompletionRequest, Sampling
from .tokenizing import DetokenizeRequest, TokenizeRequest, tokenizer_info

MAX_BODY = 1 << 20  # bytes: a megabyte of JSON is far more text than any tinygpt model reads


def create_app(engine: Engine, api_key: str | None = None, cors: list[str] = (), max_tokens: int = 1024,
               max_body: int = MAX_BODY, quiet: bool = False, local_only: bool = False,
               watchers: dict | None = None) -> FastAPI:
    """The FastAPI app serving `engine`'s runs.

    api_key: every /v1 request must carry `Authorization: Bearer KEY`. cors: origins allowed to call
    the API from their pages (none by default). max_tokens: the most a request may ask for.
    local_only: answer only requests addressed to 127.0.0.1 or localhost (a page elsewhere cannot
    reach the server through DNS rebinding). watchers: {name: Watcher} of the runs followed as they train
    (`--watch`, watch.py), for /watch.
    """
    watchers = watchers or {}
    # The API's schema at /openapi.json (FastAPI's), for clients and fuzzers; no /docs page, which would
    # fetch its scripts from a CDN.
    app = FastAPI(title="tinygpt", version=__version__, docs_url=None, redoc_url=None)
    app.openapi = partial(openapi_schema, app, engine)
    if cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    if local_only:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    chat_formats = {}
    for name, run in engine.runs.items():
        try:
            chat_formats[name] = run_chat_format(run)
        except TinyGPTError:
            chat_formats[name] = None
    created = int(time.time())
    page = (files("tinygpt.serve") / "static" / "index.html").read_text(encoding="utf-8")
    script = (files("tinygpt.serve") / "static" / "inside.js").read_text(encoding="utf-8")

    def log(request: Request, status: int, started: float, model: str = "-", tokens: str = ""):
        if not quiet:
            print(f"{request.method} {request.url.path} {status} {model} {tokens}{time.perf_counter() - started:.3f}s",
                  file=sys.stderr, flush=True)

    @app.exception_handler(ApiError)
    async def refused(request: Request, e: ApiError):
        log(request, e.status, request.state.started if hasattr(request.state, "started") else time.perf_counter())
        return e.response()

    @app.exception_handler(HTTPException)
    async def not_found(request: Request, e: HTTPException):
        message = ("no such route; the API is /v1/models, /v1/completions and /v1/chat/completions (and /tokenize, "
                   "/detokenize, /tokenizer_info, /inside, /watch)")
        return ApiError(e.status_code, message if e.status_code == 404 else str(e.detail)).response()

    def authorize(request: Request):
        request.state.started = time.perf_counter()
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
            raise ApiError(401, "a valid API key is needed: send the header 'Authorization: Bearer KEY' with the key "
                           "the server was started with (--api-key)", code="invalid_api_key")

    async def read(request: Request, schema: type[BaseModel]):
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            # Also keeps other sites' pages out: a cross-origin JSON POST needs a preflight we do not grant.
            raise ApiError(415, "send the body as JSON with 'Content-Type: application/json'")
        if int(request.headers.get("content-length") or 0) > max_body:
            raise ApiError(413, f"the request body is larger than this server's limit of {max_body:,} bytes")
        body = bytearray()
        async for part in request.stream():
            body += part
            if len(body) > max_body:
                raise ApiError(413, f"the request body is larger than this server's limit of {max_body:,} bytes")
        try:
            return schema.model_validate_json(bytes(body))
        except ValidationError as e:
            error = e.errors()[0]
            if error["type"] == "json_invalid":
                raise ApiError(400, f"the body is not valid JSON ({error['msg']})") from None
            param = ".".join(str(part) for part in error["loc"]) or None
            message = error["msg"] if error["type"] != "extra_forbidden" else "this server does not know this field"
            message = message.removeprefix("Value error, ")  # pydantic's prefix for our validators' messages
            raise ApiError(400, f"{param}: {message}" if param else message, param=param) from None

    def find(model: str, writes: bool = True):
        if model not in engine.runs:
            raise ApiError(404, f"the model {model!r} is not served here; the models are "
                           f"{', '.join(engine.runs)} (GET /v1/models)", param="model", code="model_not_found")
        if writes and model not in engine.decoders:  # an encoder or an encoder-decoder: served to look inside
            try:
                engine.runs[model].require_text_model("continue a text")
            except TinyGPTError as e:
                raise ApiError(400, f"{e}; here it is served for the playground's Inside mode (/inside) only",
                               param="model") from None
        return engine.runs[model]

    def sampling(body: Sampling, asked: int | None, default: int, stop: list[str]) -> SamplingConfig:
        if body.n > engine.max_batch:
            raise ApiError(400, f"n is {body.n} but this server decodes at most {engine.max_batch} rows at once "
                           "(its --max-batch): ask for fewer choices", param="n")
        n = default if asked is None else asked
        if n > max_tokens:
            raise ApiError(400, f"max_tokens is {n} but this server gives at most {max_tokens} tokens per request",
                           param="max_tokens")
        try:
            return SamplingConfig(n, body.temperature, body.top_k, body.top_p, body.repetition_penalty, stop).validate()
        except BadKnob as e:  # accepted by the schema, but not a number the sampler can compute with
            param = {"max_new_tokens": "max_tokens"}.get(e.field, e.field)
            raise ApiError(400, f"{param}: {e}", param=param) from None

    def encode(run, text: str, param: str) -> list[int]:
        try:
            return run.start_ids(text)
        except TinyGPTError as e:
            raise ApiError(400, str(e), param=param) from None

    def known_ids(run, ids: list[int], param: str) -> list[int]:
        vocab = run.model_config.vocab_size
        bad = next((t for t in ids if not 0 <= t < vocab), None)
        if bad is not None:
            raise ApiError(400, f"{param}: token id {bad} is not in this model's vocabulary (ids 0 to {vocab - 1})",
                           param=param)
        return ids

    def warnings(run, prompt_ids: list[int]) -> list[str]:
        block = run.model_config.block_size
        if len(prompt_ids) <= block:
            return []
        return [f"the prompt is {len(prompt_ids)} tokens but the model reads at most {block} (block_size): "
                f"it continues the last {block}"]

    # ---- routes -------------------------------------------------------------------------------------

    policy = {"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                                         "style-src 'unsafe-inline'; img-src data:"}

    @app.get("/", response_class=HTMLResponse)
    async def playground():
        return HTMLResponse(page, headers=policy)

    @app.get("/inside.js", include_in_schema=False)
    async def inside_script():  # the playground's Inside mode
        return Response(script, media_type="text/javascript", headers=policy)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": list(engine.runs), **engine.stats()}

    def describe(name: str) -> dict:
        run = engine.runs[name]
        return {"id": name, "object": "model", "created": created, "owned_by": "tinygpt",
                "tinygpt": {"chat": chat_formats[name] is not None, "block_size": run.model_config.block_size,
                            "tokenizer": run.tokenizer.kind, "watched": name in watchers,
                            "writes": name in engine.decoders, "arch": run.model_config.arch}}

    @app.get("/v1/models", responses=answers(401))
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [describe(name) for name in engine.runs]}

    def served(model: str | None):
        """The run a tokenizer request names; it may name none when one model is served."""
        if model is not None:
            return model, find(model, writes=False)
        if len(engine.runs) > 1:
            raise ApiError(400, f"this server serves {len(engine.runs)} models ({', '.join(engine.runs)}): name one "
                           "with 'model'", param="model")
        return next(iter(engine.runs.items()))

    @app.get("/tokenizer_info", responses=answers(400, 401, 404))
    async def tokenizer_info_route(request: Request, model: str | None = None):
        authorize(request)
        name, run = served(model)
        return tokenizer_info(run, chat_formats[name])

    @app.post("/tokenize", openapi_extra=takes(TokenizeRequest), responses=answers(400, 401, 404, 413, 415))
    async def tokenize(request: Request):
        authorize(request)
        body = await read(request, TokenizeRequest)
        _, run = served(body.model)
        try:
            ids = run.tokenizer.encode(body.prompt)
        except TinyGPTError as e:
            raise ApiError(400, f"prompt: {e}", param="prompt") from None
        return {"count": len(ids), "max_model_len": run.model_config.block_size, "tokens": ids, "token_strs": None}

    @app.post("/detokenize", openapi_extra=takes(DetokenizeRequest), responses=answers(400, 401, 404, 413, 415))
    async def detokenize(request: Request):
        authorize(request)
        body = await read(request, DetokenizeRequest)
        _, run = served(body.model)
        return {"prompt": run.tokenizer.decode(known_ids(run, body.tokens, "tokens"))}

    add_inside_routes(app, engine, watchers, authorize, read, served)

    @app.get("/v1/models/{model}", responses=answers(401, 404))
    async def model(request: Request, model: str):
        authorize(request)
        find(model, writes=False)
        return describe(model)

    @app.post("/v1/completions", openapi_extra=takes(CompletionRequest), responses=GENERATES)
    async def completions(request: Request):
        authorize(request)
        body = await read(request, CompletionRequest)
        run = find(body.model)
        config = sampling(body, body.max_tokens, 16, body.stops)
        jobs, notes = [], []
        block = run.model_config.block_size
        for i, prompt in enumerate(body.prompts):
            param = "prompt" if len(body.prompts) == 1 else f"prompt.{i}"
            ids = known_ids(run, prompt, param) if isinstance(prompt, list) else encode(run, prompt, param)
            if body.echo and len(ids) > block + 1:
                # Scoring reads block_size tokens and scores the next: past that a token's context would be cut.
                raise ApiError(400, f"{param}: an echoed prompt is scored whole, so it may hold at most block_size + 1 "
                               f"= {block + 1} tokens, not {len(ids)} (with the lm-evaluation-harness, pass "
                               f"max_length={block + 2})", param=param)
            notes += warnings(run, ids)
            jobs.append(Job(body.model, ids, config, body.n, body.seed, body.logprobs, echo=body.echo,
                            prompt_text=prompt if isinstance(prompt, str) else None))
        return await answer(request, body, jobs, Completion(body.model, notes))

    @app.post("/v1/chat/completions", openapi_extra=takes(ChatRequest), responses=GENERATES)
    async def chat_completions(request: Request):
        authorize(request)
        body = await read(request, ChatRequest)
        run = find(body.model)
        chat = chat_formats[body.model]
        if chat is None:
            raise ApiError(400, f"the model {body.model!r} has no chat template (it was not fine-tuned on "
                           "conversations with `tinygpt sft`); use /v1/completions for it",
                           param="model", code="model_not_chat")
        try:
            text = chat.render([m.as_dict() for m in body.messages], add_generation_prompt=True)
        except TinyGPTError as e:
            raise ApiError(400, str(e), param="messages") from None
        ids = encode(run, text, "messages")
        asked = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        top = (body.top_logprobs or 0) if body.logprobs else None
        job = Job(body.model, ids, sampling(body, asked, max_tokens, [*CHAT_TOKENS, *body.stops]), body.n, body.seed,
                  top, chat=True)
        return await answer(request, body, [job], ChatCompletion(body.model, warnings(run, ids)))

    async def answer(request: Request, body: Sampling, jobs: list[Job], form: Completion):
        """Submit a request's jobs (one per prompt) and answer with their chunks: whole, or as a stream.
        Job k's choice j is the answer's choice k * n + j."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()  # (job number, its chunks or None when it is done)
        for k, job in enumerate(jobs):
            job.deliver = partial(lambda k, chunks: loop.call_soon_threadsafe(inbox.put_nowait, (k, chunks)), k)
        submitted = []
        try:
            for job in jobs:
                engine.submit(job)
                submitted.append(job)
        except Busy as e:
            for job in submitted:  # the prompts already in line leave it: the request is refused whole
                job.cancel()
            raise ApiError(503, f"the server is busy ({e}); retry in a moment", kind="server_error",
                           code="server_busy", headers={"Retry-After": "1"}) from None
        started = request.state.started

        def done(status=200, note=""):
            prompt = sum(len(job.prompt_ids) for job in jobs)
            completion = sum(job.completion_tokens for job in jobs)
            log(request, status, started, body.model, f"{prompt}+{completion} tokens {note}")

        def numbered(k: int, chunks: list[Chunk]) -> list[Chunk]:
            return [dataclasses.replace(c, index=k * body.n + c.index) for c in chunks] if k else chunks

        if not body.stream:
            chunks, left = [], len(jobs)
            while left:
                part = await next_part(request, inbox, jobs)
                if part is None:
                    done(note="(the client left) ")
                    return None
                k, got = part
                if got is None:
                    left -= 1
                else:
                    chunks += numbered(k, got)
            if failed := next((job.error for job in jobs if job.error is not None), None):
                done(500)
                raise ApiError(500, f"the server failed while generating ({failed})", kind="server_error")
            done()
            return form.whole(chunks, jobs)

        async def events():
            finished = False
            try:
                for event in form.opening(len(jobs) * body.n):
                    yield sse(event)
                left = len(jobs)
                while left:
                    k, got = await inbox.get()
                    if got is None:
                        left -= 1
                        continue
                    for chunk in numbered(k, got):
                        yield sse(form.chunk(chunk))
                failed = next((job.error for job in jobs if job.error is not None), None)
                if failed is not None:  # OpenAI's error object as an event, then the end as always
                    yield sse(ApiError(500, f"the server failed while generating ({failed})",
                                       kind="server_error").body())
                elif body.stream_options is not None and body.stream_options.include_usage:
                    yield sse(form.usage_chunk(jobs))
                yield "data: [DONE]\n\n"
                finished = True
                done(500 if failed is not None else 200)
            finally:
                for job in jobs:
                    job.cancel()  # if the client left early, its rows leave the batch at the next step
                if not finished:
                    done(note="(the client left) ")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


async def next_part(request: Request, inbox: asyncio.Queue, jobs: list[Job], every: float = 0.25):
    """The engine's next delivery for a whole (not streamed) answer; None if the client has gone away
    meanwhile (the jobs are cancelled: their rows leave the batch)."""
    getter = asyncio.ensure_future(inbox.get())  # one get, kept across the checks: no delivery is lost
    while True:
        done, _ = await asyncio.wait({getter}, timeout=every)
        if done:
            return getter.result()
        if await request.is_disconnected():
            getter.cancel()
            for job in jobs:
                job.cancel()
            return None
