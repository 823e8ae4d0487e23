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

from typing import Annotated

from pydantic import Field

from .schemas import _Body


class InsideRequest(_Body):
    text: str = Field(min_length=1, max_length=1 << 16)
    model: str | None = None
    layer: Annotated[int, Field(ge=1)] | None = None  # only this layer's attention maps (1 = the first block)
