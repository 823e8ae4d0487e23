"""The encoder: the decoder's network with the causal mask taken out.

    ids (B, T)  (some of them <mask>)
      -> token + position embedding                                      (B, T, C)
      -> n_layer blocks whose attention sees every position, both ways    (B, T, C)
      -> final norm -> linear head                                       (B, T, vocab_size)

Nothing else changes: the same blocks, norms, MLP and head as `GPT`, and the same settings. Because
every position sees the tokens after it, next-token prediction would be trivial (copy the next
token); an encoder is trained instead to fill in hidden tokens from both sides (objectives/masked.py),
and its outputs at each position describe that token in its whole context. The encoder half of the
encoder-decoder (model/encoder_decoder.py) is built from the same non-causal blocks.
"""

from __future__ import annotations

from .gpt import GPT


class Encoder(GPT):
    """A GPT whose attention is not causal: every position attends to every other (`tinygpt fill`)."""

    causal = False
    supports_cache = False  # it predicts hidden tokens in place; it does not generate
