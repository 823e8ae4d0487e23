"""Reward modelling: a trained run learns to score replies the way people ranked them (`tinygpt reward`).

    result = reward("runs/base-sft", data="pairs.jsonl", out="runs/base-reward", max_iters=200)   # or:
    objective = PreferencePairs.prepare(train_cfg, block_size, RunDir(out))
    Trainer(model_cfg, train_cfg, out, objective=objective).train()    # model_cfg.arch == "reward"

The model is model/reward_model.py's: the base run's trunk with a scalar head instead of its
language-model head. Each pair (chat/preferences.py: TRL's format) becomes two token sequences, the
prompt followed by the chosen reply and by the rejected one: plain text as its tokens, prompt first;
a conversation through the chat template (the base run's, or the default one with the chat tokens
added when the base has none). A reply's reward r is the model's score at its last token.

The loss is Bradley-Terry's: the probability that the chosen reply is preferred is
sigmoid(r_chosen - r_rejected), and the loss is its negative log, -log sigmoid(r_chosen - r_rejected),
averaged over the pairs. Only differences count, so the rewards' scale is the model's own.

Batches: `batch_size` training pairs drawn at random, each sequence one row padded on the right to
the longest sequence of the data (the model is causal, so no row sees its padding). `tokens` in the
metrics counts the positions computed, both sequences and padding included.

Too long: a sequence of more than block_size tokens keeps its last block_size (the reply, and the
end of the prompt), and the run says how many were cut.

Validation: the last val_fraction of the pairs (in file order), never trained on. An evaluation is
one exact pass over them and over as many training pairs (with eval_iters, that many random batches
of each): the loss, and the pairwise accuracy, the share of pairs whose chosen reply scores higher.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..data import corpus_name
from ..data.preferences import Pair, hold_out, read_pairs
from ..model.reward_model import reward_weights
from ..store.rundir import RunDir
from ..tokenizers.chat_format import ChatFormat
from ..training.objective import Evaluation, Objective
from .sft import grow_vocabulary


class PreferencePairs(Objective):
    """Bradley-Terry on preference pairs: the chosen reply should score above the rejected one."""

    verb = "reward"

    def __init__(self, cfg: TrainConfig, tokenizer, chat: ChatFormat | None, rows: dict[str, torch.Tensor],
                 n_val: int, block_size: int, data_info: dict, notes: list[str]):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.chat = chat
        # chosen, rejected: (N, W) ids padded on the right; chosen_len, rejected_len: (N,)
        self.rows = rows
        self.n_train = len(rows["chosen"]) - n_val
        self.n_val = n_val
        self.block_size = block_size
        self.tokens_per_batch = 2 * cfg.batch_size * rows["chosen"].shape[1]
        self.data_info = data_info
        self.notes = notes
        self.has_validation = n_val > 0

    @classmethod
    def prepare(cls, cfg: TrainConfig, block_size: int, run: RunDir, resume: bool = False,
                saved_sha256: str | None = None) -> "PreferencePairs":
        """Read and encode `cfg.data`'s pairs for the base run `cfg.init_from` (a resumed run: with its
        own tokenizer and template), cut the long sequences, and hold out the last pairs."""
        pairs, sha256 = read_pairs(cfg.data)
        if saved_sha256 is not None and sha256 != saved_sha256:
            raise TinyGPTError(f"the preference pairs ({cfg.data}) changed since this run started; resume with the "
                               "same data or start a new run")
        tokenizer, chat = reward_format(RunDir(cfg.init_from), run, resume, pairs)
        sequences, cut = [], []
        for pair in pairs:
            try:
                chosen, rejected = (encode_reply(pair, r, tokenizer, chat) for r in (pair.chosen, pair.rejected))
            except TinyGPTError as e:  # a word or character the tokenizer does not know, a bad template
                raise TinyGPTError(f"{pair.where}: {e}") from None
            long = max(len(chosen), len(rejected)) > block_size
            if long:
                chosen, rejected = chosen[-block_size:], rejected[-block_size:]
                cut.append(pair.where)
            if chosen == rejected:
                raise TinyGPTError(f"{pair.where}: the chosen and rejected replies give the same {len(chosen)} tokens"
                                   f"{' in the context' if long else ''}, so the pair prefers nothing; drop it")
            sequences.append((chosen, rejected))

        width = max(len(s) for pair in sequences for s in pair)
        rows = {name: torch.zeros(len(pairs), width, dtype=torch.int32) for name in ("chosen", "rejected")}
        for name in ("chosen_len", "rejected_len"):
            rows[name] = torch.zeros(len(pairs), dtype=torch.long)
        for row, pair in enumerate(sequences):
            for name, ids in zip(("chosen", "rejected"), pair):
                rows[name][row, : len(ids)] = torch.tensor(ids, dtype=torch.int32)  # id 0 pads: never seen
                rows[f"{name}_len"][row] = len(ids)

        n_val, notes = hold_out(len(pairs), cfg.val_fraction, "loss and accuracy")
        if cut:
            notes.append(f"{len(cut)} of {len(pairs)} pairs have a sequence longer than the context ({block_size} "
                         f"tokens): they keep their last {block_size} tokens, the reply's end (first: {cut[0]})")
        n_train = len(pairs) - n_val
        info = {"name": corpus_name(cfg.data), "verb": cls.verb, "sha256": sha256, "pairs": len(pairs),
                "train_pairs": n_train, "val_pairs": n_val,
                "conversational": sum(pair.conversational for pair in pairs), "longest": width,
                "train_tokens": int(rows["chosen_len"][:n_train].sum() + rows["rejected_len"][:n_train].sum()),
                "truncated": len(cut), "chat_template": run.chat_template_path.name if chat else "", "notes": notes}
        return cls(cfg, tokenizer, chat, rows, n_val, block_size, info, notes)

    def describe(self) -> str:
        d = self.data_info
        return (f"data {d['name']}: {d['train_pairs']:,} train / {d['val_pairs']:,} val preference pairs, "
                f"{d['train_tokens']:,} tokens, the longest sequence {d['longest']}")

    # ------------------------------------------------------------------ what the loop asks

    def initial_weights(self, state):
        return grow_vocabulary(reward_weights(state), self.tokenizer.vocab_size)

    def write_files(self, run: RunDir):
        if self.chat is not None:
            run.write_chat_template(self.chat.source)

    def batch(self, generator):
        picked = torch.randint(self.n_train, (self.cfg.batch_size,), generator=generator)  # (B,)
        r = self.rows
        return (r["chosen"][picked].long(), r["chosen_len"][picked],  # (B, W), (B,)
                r["rejected"][picked].long(), r["rejected_len"][picked])  # (B, W), (B,)

    def loss(self, model, batch):
        r_chosen, r_rejected = scores(model, *batch)
        return bradley_terry(r_chosen, r_rejected).mean()

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """Loss and pairwise accuracy on the validation pairs and on as many training pairs."""
        cfg = self.cfg
        n = self.n_val if self.has_validation else self.n_train
        val = torch.arange(self.n_train, self.n_train + self.n_val)
        found = {}
        for split, picked in (("train", torch.arange(n)), ("val", val)):
            if not len(picked):
                found[split] = (None, None)
                continue
            if cfg.eval_iters:  # the same random batches at every evaluation
                gen = torch.Generator().manual_seed(cfg.seed + 1)
                picked = picked[torch.randint(len(picked), (cfg.eval_iters * cfg.batch_size,), generator=gen)]
            total, right, count = self.pair_results(model, picked, runtime)
            total, right, count = ddp.sum_across(runtime.dist, total, right, count)
            found[split] = (total / count, right / count)
        losses = {"train_loss": found["train"][0], "val_loss": found["val"][0],
                  "train_accuracy": found["train"][1], "val_accuracy": found["val"][1]}
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        return Evaluation(losses, score)

    @torch.no_grad()
    def pair_results(self, model, picked: torch.Tensor, runtime) -> tuple[float, int, int]:
        """(sum of the pairs' losses, how many score the chosen reply higher, how many pairs) over the
        pairs `picked` (indices); chunks are shared round-robin among processes (add the results up)."""
        was_training = model.training
        model.eval()
        # On a CPU, ~1,024 tokens a forward pass is fastest (see LanguageModeling.evaluate); each pair is two rows.
        width = self.rows["chosen"].shape[1]
        chunk = max(1, 512 // width) if runtime.device.type == "cpu" else 32
        rank, world = runtime.dist.rank, runtime.dist.world_size
        total, right, count = 0.0, 0, 0
        starts = range(0, len(picked), chunk)
        for k, counts in ddp.turns(len(starts), rank, world, runtime.dist.lockstep):
            some = picked[starts[k] : starts[k] + chunk]  # (b,)
            batch = [self.rows[name][some].long().to(runtime.device)
                     for name in ("chosen", "chosen_len", "rejected", "rejected_len")]
            with runtime.autocast():
                r_chosen, r_rejected = scores(model, *batch)  # (b,) each
            if counts:
                total += bradley_terry(r_chosen, r_rejected).sum().item()
                right += int((r_chosen > r_rejected).sum())
                count += len(some)
        model.train(was_training)
        return total, right, count


def scores(model, chosen, chosen_len, rejected, rejected_len) -> tuple[torch.Tensor, torch.Tensor]:
    """The rewards (B,) of the chosen and of the rejected sequences (B, W), in one forward pass."""
    both = model(torch.cat([chosen, rejected]), torch.cat([chosen_len, rejected_len]))  # (2B,)
    r_chosen, r_rejected = both.float().chunk(2)
    return r_chosen, r_rejected


def bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Each pair's loss, -log sigmoid(r_chosen - r_rejected): (B,). logsigmoid stays finite where a
    large difference would round sigmoid to 0 or 1."""
    return -F.logsigmoid(r_chosen - r_rejected)


def encode_reply(pair: Pair, reply, tokenizer, chat: ChatFormat | None) -> list[int]:
    """The ids a reply is scored on: the prompt's tokens then the reply's (plain text), or the whole
    conversation written by the chat template (it ends with the reply's <|end|>)."""
    if pair.conversational:
        return chat.tokenizer.encode(chat.render(reply))
    return tokenizer.encode(pair.prompt) + tokenizer.encode(reply)


def reward_format(base: RunDir, run: RunDir, resume: bool, pairs: list[Pair]) -> tuple[object, ChatFormat | None]:
    """The tokenizer a reward run reads with, and its chat format (None: plain text only).

    A resumed run keeps its own. A new one takes the base run's tokenizer, and its chat template if it
    has one; a base without one that must read conversations gets the chat tokens and the default template.
    """
    source = run if resume else base
    tokenizer = source.read_tokenizer()
    template = source.read_chat_template()
    conversational = next((pair for pair in pairs if pair.conversational), None)
    if template is not None:
        return tokenizer, ChatFormat(tokenizer, template, origin=str(source.chat_template_path))
    if conversational is None:
        return tokenizer, None
    if resume:
        raise TinyGPTError(f"{conversational.where}: the pair is a conversation, but {run} has no "
                           f"{run.chat_template_path.name} (it learnt plain-text pairs); score plain text with it")
    return tokenizer, ChatFormat.new(tokenizer, None, "the default chat template")
