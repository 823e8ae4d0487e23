"""Sampling text from a model: the next-token choice, the batched decoding loop, text as it comes.

    sampling.py  SamplingConfig and the next-token choice (repetition penalty, temperature, top-k, top-p)
    decoder.py   Decoder: rows of any lengths extended in one batch, with or without the KV cache; past
                 block_size each row re-runs its window (exact) or keeps the newer half of it (shift)
    complete.py  prompts as text -> rows of a Decoder -> text: what Run.generate and training's samples share
    chat.py      a run's reply to a conversation, through its chat format (tinygpt chat, Run.chat)
    translate.py an encoder-decoder's targets, greedy or sampled; beam.py: beam search
    fill.py      an encoder's likeliest tokens at each <mask> (tinygpt fill)
    text.py      TextStream: incremental decoding and stop strings; stream_rows ties it to a Decoder

Data flows one way: ids -> Decoder (model -> logits -> next_token) -> ids -> TextStream -> text.
The lecture's own short sampler (crop, forward, softmax, multinomial) is `GPT.generate` in model/gpt.py.
"""

from .decoder import Decoder, Row, generate_ids
from .sampling import SamplingConfig, draw, next_token
from .text import TextStream, stream_rows

__all__ = ["Decoder", "Row", "SamplingConfig", "TextStream", "draw", "generate_ids", "next_token", "stream_rows"]
