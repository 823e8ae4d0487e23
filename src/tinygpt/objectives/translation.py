"""Sequence to sequence, the encoder-decoder's objective, for `tinygpt train --arch encoder-decoder`.

    objective = Translation.prepare(train_cfg, block_size, RunDir(out), resume, log)

Pairs come from data/pairs.py (JSON Lines, TSV or the built-in `dates`). One tokenizer, built from
every source and target (or pretrained), serves both sides, or with `source_tokenizer` the sources
get one of their own (built from the sources alone) and `tokenizer` is built from the targets alone.
The target's tokenizer gets `<|bos|>` and `<|eos|>`. Each pair becomes three rows:

    source   the source's ids, padded on the right (a mask says which positions are real)
    input    <|bos|> + the target's ids               what the decoder reads
    targets  the target's ids + <|eos|>, -100 after   what it must predict at each position

Batches: batch_size training pairs drawn at random. Validation: the last val_fraction of the pairs
(file order), never trained on; an evaluation is one exact pass over them and over as many
training pairs: the mean loss per target token.
"""

from __future__ import annotations

import torch

from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..core.tokens import BOS, EOS, IGNORE
from ..data import corpus_name
from ..data.pairs import read_pairs
from ..store.rundir import RunDir
from ..training.objective import Evaluation, Objective
from .language import choose_tokenizer


def encode_pairs(tokenizer, pairs, block_size: int, source_tokenizer=None):
    """The pairs' rows: source (N, S), source mask (N, S), decoder input (N, T), targets (N, T).
    source_tokenizer: the sources' own (None: `tokenizer` for both sides)."""
    bos, eos = tokenizer.token_to_id(BOS), tokenizer.token_to_id(EOS)
    source_tokenizer = source_tokenizer or tokenizer
    sources, targets = [], []
    for pair in pairs:
        try:
            src, tgt = source_tokenizer.encode(pair.source), tokenizer.encode(pair.target)
        except TinyGPTError as e:  # a word or character the tokenizer does not know
            raise TinyGPTError(f"{pair.where}: {e}") from None
        need = max(len(src), len(tgt) + 1)
        if need > block_size:
            raise TinyGPTError(f"{pair.where}: the pair needs {need} positions but block_size is {block_size}; "
                               "raise --block-size or shorten the pair")
        sources.append(src)
        targets.append(tgt)
    S = max(len(s) for s in sources)
    T = max(len(t) for t in targets) + 1
    src = torch.zeros((len(pairs), S), dtype=torch.int32)  # (N, S); any id pads: the padding is masked
    dec_in = torch.full((len(pairs), T), eos, dtype=torch.int32)  # (N, T); causal: no token sees the padding
    dec_out = torch.full((len(pairs), T), IGNORE, dtype=torch.int32)  # (N, T)
    for row, (s, t) in enumerate(zip(sources, targets)):
        src[row, : len(s)] = torch.tensor(s, dtype=torch.int32)
        dec_in[row, : len(t) + 1] = torch.tensor([bos] + t, dtype=torch.int32)
        dec_out[row, : len(t) + 1] = torch.tensor(t + [eos], dtype=torch.int32)
    lengths = torch.tensor([len(s) for s in sources])
    mask = torch.arange(S)[None, :] < lengths[:, None]  # (N, S) True at real source tokens
    return src, mask, dec_in, dec_out


class Translation(Objective):
    """Predict each target token from the whole source and the target before it."""

    generates_text = False  # it translates: the loop's text samples do not apply

    def __init__(self, cfg, tokenizer, rows, n_val: int, block_size: int, data_info: dict, notes: list[str],
                 source_tokenizer=None):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.source_tokenizer = source_tokenizer  # None: the sources use `tokenizer`
        n_train = len(rows[0]) - n_val
        self.train_rows = tuple(r[:n_train] for r in rows)
        self.val_rows = tuple(r[n_train:] for r in rows) if n_val else None
        self.block_size = block_size
        self.tokens_per_batch = cfg.batch_size * (rows[0].shape[1] + rows[2].shape[1])
        self.data_info = data_info
        self.notes = notes
        self.has_validation = n_val > 0

    @classmethod
    def prepare(cls, cfg, block_size: int, run: RunDir, resume: bool, log, fixed_context: bool = False,
                saved_sha256: str | None = None) -> "Translation":
        if cfg.data in ("rhyme", "shakespeare"):
            raise TinyGPTError(f"an encoder-decoder trains on source/target pairs, not on the text {cfg.data!r}: pass "
                               "--data PAIRS.jsonl or PAIRS.tsv, or --data dates (the built-in task)")
        pairs, sha256 = read_pairs(cfg.data)
        if saved_sha256 is not None and sha256 != saved_sha256:
            raise TinyGPTError(f"the pairs ({cfg.data}) changed since this run started; resume with the same data "
                               "or start a new run")
        source_tokenizer = None
        if cfg.source_tokenizer:
            source_tokenizer = own_source_tokenizer(cfg, run, resume, "\n".join(p.source for p in pairs))
            text = "\n".join(p.target for p in pairs)
        else:
            text = "\n".join(f"{p.source}\n{p.target}" for p in pairs)
        tokenizer, _ = choose_tokenizer(cfg, run, resume, lambda kind: text, log)
        tokenizer.add_special_tokens([BOS, EOS])  # appended: no id moves
        rows = encode_pairs(tokenizer, pairs, block_size, source_tokenizer)
        n_val = min(int(len(pairs) * cfg.val_fraction), len(pairs) - 1)
        notes = []
        if cfg.val_fraction and not n_val:
            notes.append(f"{len(pairs)} pair(s) are too few to hold out {cfg.val_fraction:g} of them: no validation "
                         "split (the loss reported is on the training pairs)")
        n_train = len(pairs) - n_val
        info = {"name": corpus_name(cfg.data), "objective": "translation", "sha256": sha256, "pairs": len(pairs),
                "train_pairs": n_train, "val_pairs": n_val,
                "target_tokens": int((rows[3][:n_train] != IGNORE).sum()), "notes": notes}
        return cls(cfg, tokenizer, rows, n_val, block_size, info, notes, source_tokenizer)

    def describe(self) -> str:
        d = self.data_info
        return (f"data {d['name']}: {d['train_pairs']:,} train / {d['val_pairs']:,} val pairs, "
                f"{d['target_tokens']:,} target tokens to learn")

    def model_settings(self) -> dict:
        return {"source_vocab_size": self.source_tokenizer.vocab_size if self.source_tokenizer else 0}

    def write_files(self, run: RunDir):
        if self.source_tokenizer is not None:
            run.write_source_tokenizer(self.source_tokenizer)

    def batch(self, generator):
        rows = torch.randint(len(self.train_rows[0]), (self.cfg.batch_size,), generator=generator)  # (B,)
        src, mask, dec_in, dec_out = (r[rows] for r in self.train_rows)
        return src.long(), dec_in.long(), dec_out.long(), mask  # model(src, idx, targets, src_mask)

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """The mean loss per target token on the validation pairs and on as many training pairs."""
        n = len(self.val_rows[0]) if self.has_validation else len(self.train_rows[0])
        losses = {}
        for split, rows in (("train", tuple(r[:n] for r in self.train_rows)), ("val", self.val_rows)):
            if rows is None:
                losses[f"{split}_loss"] = None
                continue
            total, count = target_loss(model, rows, runtime)
            total, count = ddp.sum_across(runtime.dist, total, count)
            losses[f"{split}_loss"] = total / count
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        return Evaluation(losses, score)

    def report(self, record: dict) -> str:
        return super().report(record) + " (per target token)"


def own_source_tokenizer(cfg, run: RunDir, resume: bool, text: str):
    """The sources' own tokenizer: a resumed run's, a fine-tuned run's source's, or built from the sources."""
    from ..tokenizers import train_tokenizer

    for kept in ((run,) if resume else (RunDir(cfg.init_from),) if cfg.init_from else ()):
        tokenizer = kept.read_source_tokenizer()
        if tokenizer is None:
            raise TinyGPTError(f"{kept} has no source_tokenizer.json; its sources share tokenizer.json "
                               "(leave --source-tokenizer out)")
        return tokenizer
    return train_tokenizer(cfg.source_tokenizer, text, cfg.vocab_size, cfg.sentence_end)


@torch.no_grad()
def target_loss(model, rows, runtime) -> tuple[float, int]:
    """(sum of the losses on the target tokens, their number) over rows (source, mask, input, targets),
    in chunks shared round-robin among processes."""
    src, mask, dec_in, dec_out = rows
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    chunk = 256 if runtime.device.type == "cpu" else 1024
    rank, world = runtime.dist.rank, runtime.dist.world_size
    starts = range(0, len(src), chunk)
    for k, counts in ddp.turns(len(starts), rank, world, runtime.dist.lockstep):
        part = slice(starts[k], starts[k] + chunk)
        targets = dec_out[part].long().to(runtime.device)  # (b, T)
        with runtime.autocast():
            logits, _ = model(src[part].long().to(runtime.device), dec_in[part].long().to(runtime.device),
                              src_mask=mask[part].to(runtime.device))  # (b, T, V)
        if counts:
            total += torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten(),
                                                       ignore_index=IGNORE, reduction="sum").item()
            count += int((targets != IGNORE).sum())
    model.train(was_training)
    return total, count
