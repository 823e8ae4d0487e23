"""`tinygpt export RUN --to gguf --out FILE.gguf`: a run as one GGUF file for llama.cpp, tokenizer inside.

The model is llama.cpp's `gpt2` architecture: learned positions, LayerNorm before attention and
MLP, biases everywhere, GELU, scores divided by sqrt(head_size), a tied or untied head without a
bias. A run fits when GPT-2 computes it (convert/gpt2.py: `gpt2_misfits`) and its activation is
GELU; biases it lacks are written as zeros and the lecture's attention scale is folded into the
queries, as for the Hugging Face export. Tensors keep float32 and their (out, in) layout: GGUF lists
a tensor's dimensions innermost first, so llama.cpp reads that as {in, out}, its own layout.

The tokenizer is llama.cpp's byte-level BPE (tokenizer model `gpt2`, pre-tokenizer `gpt-2`):
- BPE runs (trained here, or a pretrained byte-level BPE such as GPT-2's): vocabulary and merges as
  they are.
- char runs: each character is one token spelled in the byte-level alphabet, and the merges join
  the UTF-8 bytes of each multi-byte character. A lead byte is followed only by its own
  continuation bytes, so no merge crosses a character and BPE gives one token per character.
Word runs and other tokenizers (WordPiece, Unigram, ...) are refused: llama.cpp has no tokenizer
that splits at whitespace and joins tokens with spaces, or that reads those models exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..core.errors import TinyGPTError
from .gpt2 import LAYER_NORM_EPS, gpt2_form_state, gpt2_misfits, tensor_names
from .source import Exported, check_out, read_source

ARCH = "gpt2"
GELU_GAP = 4.73e-4  # max |GELU(x) - its tanh approximation| over all x, near |x| = 2.7
# llama.cpp reads 11 as the end-of-text id of a BPE vocabulary that names none.
LLAMA_DEFAULT_EOS = 11
# A merge that never applies: 0xFF is never part of UTF-8 text, and GGUF refuses an empty merge list.
NO_MERGE = "\u00ff \u00ff"


def byte_alphabet() -> dict[int, str]:
    """Byte-level BPE's alphabet: each byte as one visible character, itself when printable and not
    a space, otherwise U+0100 onwards in byte order (so a space is 'Ġ' and a newline 'Ċ')."""
    visible = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    others = iter(range(0x100, 0x200))
    return {b: chr(b) if b in visible else chr(next(others)) for b in range(256)}


def char_vocab(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of a char tokenizer in llama.cpp's byte-level BPE."""
    from gguf import TokenType

    alphabet = byte_alphabet()
    special = set(tokenizer.special_tokens)
    tokens, types, merges = [], [], {}
    for i in range(tokenizer.vocab_size):
        text = tokenizer.token(i)
        if text in special:
            tokens.append(text)  # matched as written, like the special tokens of any BPE vocabulary
            types.append(TokenType.CONTROL)
            continue
        spelled = [alphabet[b] for b in text.encode("utf-8")]
        tokens.append("".join(spelled))
        types.append(TokenType.NORMAL)
        for k in range(1, len(spelled)):  # (b1, b2), (b1b2, b3), ...: the bytes of one character joined
            merges.setdefault(f"{''.join(spelled[:k])} {spelled[k]}", None)
    return tokens, types, list(merges) or [NO_MERGE]


def bpe_vocab(tokenizer) -> tuple[list[str], list[int], list[str]]:
    """Tokens, token types and merges of a byte-level BPE tokenizer.json (`tokenizer_misfit` is None)."""
    from gguf import TokenType

    doc = tokenizer.to_json()
    model = doc["model"]
    by_id = {i: t for t, i in model["vocab"].items()}
    kinds = {}
    for added in doc.get("added_tokens") or []:
        by_id[added["id"]] = added["content"]
        kinds[added["id"]] = TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED
    tokens = [by_id[i] for i in range(tokenizer.vocab_size)]
    types = [kinds.get(i, TokenType.NORMAL) for i in range(tokenizer.vocab_size)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    return tokens, types, merges or [NO_MERGE]


def tokenizer_misfit(tokenizer) -> str | None:
    """Why llama.cpp cannot read `tokenizer` exactly, or None: char, and GPT-2's byte-level BPE."""
    if tokenizer.kind == "char":
        return None
    if tokenizer.kind == "word":
        return "a word tokenizer (llama.cpp has none that splits at whitespace and joins tokens with spaces)"
    doc = tokenizer.to_json()
    model, pre = doc.get("model") or {}, doc.get("pre_tokenizer") or {}
    byte_level = (model.get("type") == "BPE" and pre.get("type") == "ByteLevel" and not pre.get("add_prefix_space")
                  and pre.get("use_regex", True) and doc.get("normalizer") is None and not model.get("byte_fallback")
                  and not model.get("continuing_subword_prefix") and not model.get("end_of_word_suffix"))
    ids = {i for i in model.get("vocab", {}).values()} | {a["id"] for a in doc.get("added_tokens") or []}
    if not byte_level:
        return (f"a {model.get('type', '?')} tokenizer with {pre.get('type', 'no')} pre-tokenizer (llama.cpp "
                "reads GPT-2's byte-level BPE exactly, not this)")
    if len(ids & set(range(tokenizer.vocab_size))) != tokenizer.vocab_size:
        return "a tokenizer whose ids have gaps"
    return None


def gguf_misfits(cfg, tokenizer) -> list[str]:
    """What llama.cpp's gpt2 architecture and tokenizers cannot compute of a run."""
    reasons = gpt2_misfits(cfg)
    if not reasons and cfg.activation == "relu":
        reasons.append("activation relu (llama.cpp's gpt2 computes GELU)")
    if (why := tokenizer_misfit(tokenizer)) is not None:
        reasons.append(why)
    return reasons


def export_gguf(run_dir, out, force: bool = False) -> Exported:
    """Write the run at `run_dir` as the GGUF file `out` (see the module docstring)."""
    try:
        import gguf
    except ImportError:
        raise TinyGPTError("--to gguf needs the gguf package: pip install 'tinygpt[export]'") from None
    src = read_source(run_dir)
    out = Path(out)
    check_out(out, src.run_dir, force, folder=False)
    cfg, tokenizer = src.config, src.tokenizer
    reasons = gguf_misfits(cfg, tokenizer)
    if reasons:
        raise TinyGPTError(f"{src.run_dir} does not fit llama.cpp's GPT-2 model and tokenizers: {'; '.join(reasons)}; "
                           "--to hf takes every run")
    tokens, types, merges = char_vocab(tokenizer) if tokenizer.kind == "char" else bpe_vocab(tokenizer)
    ids = src.special_ids()
    notes = []
    if cfg.activation == "gelu":
        notes.append(f"this run uses the exact GELU; llama.cpp computes its tanh approximation (at most "
                     f"{GELU_GAP:.2e} apart per activation)")
    if "eos" not in ids and tokenizer.vocab_size > LLAMA_DEFAULT_EOS:
        notes.append(f"the run has no end-of-text token, so llama.cpp takes id {LLAMA_DEFAULT_EOS} "
                     f"({tokenizer.token(LLAMA_DEFAULT_EOS)!r}) as one and may stop there; "
                     "llama-cli's --ignore-eos generates on")
    state = gpt2_form_state(cfg, src.state())

    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(tmp), ARCH)
    writer.add_name(src.run_dir.name)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(cfg.mlp_ratio * cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(LAYER_NORM_EPS)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_add_bos_token(False)  # tinygpt prepends nothing to a prompt
    if "bos" in ids:
        writer.add_bos_token_id(ids["bos"])
    if "eos" in ids:
        writer.add_eos_token_id(ids["eos"])
    if src.chat_template is not None:
        writer.add_chat_template(src.chat_template)
    for name in tensor_names(cfg.n_layer, cfg.tie_weights):
        writer.add_tensor(name.gguf, state[name.ours].numpy())
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return Exported(out, "gguf", [], notes)
