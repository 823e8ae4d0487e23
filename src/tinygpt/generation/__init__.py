"""Sampling text from a model: the next-token choice, the batched decoding loop, text as it comes.

    sampling.py  SamplingConfig and the next-token choice (repetition penalty, temperature, top-k, top-p)
    loop.py      Decoder: rows of any lengths extended in one batch, with or without the KV cache
    text.py      TextStream: incremental decoding and stop strings; stream_rows ties it to a Decoder

Data flows one way: ids -> Decoder (model -> logits -> next_token) -> ids -> TextStream -> text.
`Run.generate` and `Run.stream` (run.py) put these together for prompts given as text.
"""

from .decoder import Decoder, Row, generate_ids
from .sampling import SamplingConfig, draw, next_token
from .text import TextStream, stream_rows

__all__ = ["Decoder", "Row", "SamplingConfig", "TextStream", "draw", "generate_ids", "next_token", "stream_rows"]
