"""OpenAI's response shapes: whole answers, streamed chunks (server-sent events), usage and logprobs,
and the error object of every refusal (ApiError).

/v1/completions answers with choices of `text` and the legacy logprobs (tokens, token_logprobs,
top_logprobs, text_offset); /v1/chat/completions with an assistant `message` (a `delta` when
streamed, the first one carrying the role) and logprobs as `content` entries with their bytes.
"""

from __future__ import annotations

import json
import time
import uuid

from fastapi.responses import JSONResponse

from .engine import Chunk
from .engine import Request as Job


class ApiError(Exception):
    """A refused request: its HTTP status and the fields of OpenAI's error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def sse(event: dict) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def usage(jobs: list[Job]) -> dict:
    """OpenAI's token counts of a request (its jobs: one per prompt)."""
    prompt = sum(len(job.prompt_ids) for job in jobs)
    completion = sum(job.completion_tokens for job in jobs)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class Completion:
    """How /v1/completions writes a result: choices of `text`, logprobs as tokens and top_logprobs."""

    object = "text_completion"
    prefix = "cmpl"

    def __init__(self, model: str, warnings: list[str]):
        self.id = f"{self.prefix}-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.model = model
        self.warnings = warnings
        self.offsets: dict[int, int] = {}  # choice -> characters of text so far (for text_offset)

    def head(self, kind: str | None = None) -> dict:
        head = {"id": self.id, "object": kind or self.object, "created": self.created, "model": self.model}
        if self.warnings:
            head["warnings"] = self.warnings
        return head

    def opening(self, n: int) -> list[dict]:
        return []

    def logprobs(self, chunk: Chunk, offsets: list[int] | None = None) -> dict | None:
        """OpenAI's legacy logprobs; a token's text_offset is where the piece of text it came in starts."""
        if not chunk.tokens:
            return None
        start = self.offsets.get(chunk.index, 0)
        self.offsets[chunk.index] = start + len(chunk.text)
        if offsets is None:
            offsets = [start + at for at in chunk.offsets] if chunk.offsets else [start] * len(chunk.tokens)
        # An echoed prompt's first token has no log-probability (nothing predicts it): null, as OpenAI's.
        return {"tokens": [t.token for t in chunk.tokens], "token_logprobs": [t.logprob for t in chunk.tokens],
                "top_logprobs": [dict(t.top) if t.top is not None else None for t in chunk.tokens],
                "text_offset": offsets}

    def choice(self, chunk: Chunk, offsets: list[int] | None = None) -> dict:
        return {"index": chunk.index, "text": chunk.text, "logprobs": self.logprobs(chunk, offsets),
                "finish_reason": chunk.finish_reason}

    def chunk(self, chunk: Chunk) -> dict:
        return {**self.head(), "choices": [self.choice(chunk)]}

    def usage_chunk(self, jobs: list[Job]) -> dict:
        return {**self.head(self.object + ".chunk" if self.prefix == "chatcmpl" else None), "choices": [],
                "usage": usage(jobs)}

    def whole(self, chunks: list[Chunk], jobs: list[Job]) -> dict:
        """The whole answer from every chunk; chunk indices already count across the jobs (prompts)."""
        n = sum(job.n for job in jobs)
        merged = {j: Chunk(j, "", [], "length") for j in range(n)}
        offsets = {j: [] for j in range(n)}
        for chunk in chunks:
            m = merged[chunk.index]
            at = chunk.offsets or [0] * len(chunk.tokens)
            offsets[chunk.index] += [len(m.text) + a for a in at]
            m.text += chunk.text
            m.tokens = m.tokens + chunk.tokens
            m.finish_reason = chunk.finish_reason or m.finish_reason
        choices = [self.whole_choice(merged[j], offsets[j]) for j in range(n)]
        return {**self.head(), "choices": choices, "usage": usage(jobs)}

    def whole_choice(self, chunk: Chunk, offsets: list[int]) -> dict:
        return self.choice(chunk, offsets)


class ChatCompletion(Completion):
    """How /v1/chat/completions writes a result: an assistant `message` (a `delta` when streamed)."""

    object = "chat.completion"
    prefix = "chatcmpl"

    def opening(self, n: int) -> list[dict]:
        return [{**self.head(self.object + ".chunk"), "choices": [
            {"index": j, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}]}
            for j in range(n)]

    def logprobs(self, chunk: Chunk, offsets: list[int] | None = None) -> dict | None:
        if not chunk.tokens:
            return None

        def entry(token: str, logprob: float) -> dict:
            return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

        return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(s, lp) for s, lp in t.top]}
                            for t in chunk.tokens]}

    def chunk(self, chunk: Chunk) -> dict:
        delta = {"content": chunk.text} if chunk.text else {}
        return {**self.head(self.object + ".chunk"), "choices": [
            {"index": chunk.index, "delta": delta, "logprobs": self.logprobs(chunk),
             "finish_reason": chunk.finish_reason}]}

    def whole_choice(self, chunk: Chunk, offsets: list[int]) -> dict:
        return {"index": chunk.index, "message": {"role": "assistant", "content": chunk.text},
                "logprobs": self.logprobs(chunk), "finish_reason": chunk.finish_reason}
