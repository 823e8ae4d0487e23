"""Supervised fine-tuning: a trained run learns to answer, from conversations (`tinygpt sft`).

    result = sft("runs/base", data="chats.jsonl", out="runs/base-sft", max_iters=200)   # or:
    objective = SupervisedFineTuning.prepare(train_cfg, block_size, RunDir(out))
    Trainer(model_cfg, train_cfg, out, objective=objective).train()

The base run's tokenizer gets the chat tokens (tokenizers/chat_format.py) and its embeddings a row for each
(`grow_vocabulary`). Every conversation is rendered through the chat template and encoded once. A
target is the next token where it belongs to a learnt assistant reply (its `<|end|>` included) and
-100 elsewhere, so the loss, the mean cross-entropy over the targets that are not -100, counts only
what the assistant says: system and user turns are context.

Batches: `batch_size` training conversations drawn at random, one per row, padded on the right to
the longest of them (padding targets -100). The model is causal, so no token sees the padding after
it, and no conversation sees another. Padding to the batch's longest rather than to block_size keeps
the work close to the tokens learnt from: `tokens` in the metrics counts the conversations' own
tokens, not the padding, so its rate compares with pretraining's (benchmarks/sft_throughput.py).

Too long: a conversation of more than block_size + 1 tokens (a context of block_size and the one
token predicted after it) keeps its turns up to the end of the last learnt reply that fits, and the
run says how many were cut. One whose first learnt reply does not fit is refused, by file and line.

Validation: the last val_fraction of the conversations (in file order), never trained on. An
evaluation is one exact pass over them and over as many training conversations (with eval_iters,
that many random batches of each).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..core.tokens import IGNORE
from ..data import corpus_name
from ..data.conversations import read_conversations
from ..store.rundir import RunDir
from ..tokenizers.chat_format import ChatFormat
from ..training.objective import Evaluation, Objective


class SupervisedFineTuning(Objective):
    """Next-token prediction on conversations, scored only on the assistant's replies."""

    verb = "sft"

    def __init__(self, cfg: TrainConfig, chat: ChatFormat, x: torch.Tensor, y: torch.Tensor, n_val: int,
                 data_info: dict, notes: list[str]):
        self.cfg = cfg
        self.chat = chat
        self.tokenizer = chat.tokenizer
        n_train = len(x) - n_val
        self.train_x, self.train_y = x[:n_train], y[:n_train]  # (N_train, T) each
        self.val_x, self.val_y = (x[n_train:], y[n_train:]) if n_val else (None, None)  # (N_val, T) or None
        # Each training row's length, up to its last target: what comes after (padding, or a user turn
        # that no reply follows) changes no loss, as no earlier position sees it.
        self.train_lengths = (y[:n_train] != IGNORE).int().cumsum(1).argmax(1) + 1  # (N_train,)
        self.block_size = x.shape[1]
        self.tokens_per_batch = 0  # set by each batch()
        self.data_info = data_info
        self.notes = notes
        self.has_validation = n_val > 0

    @classmethod
    def prepare(cls, cfg: TrainConfig, block_size: int, run: RunDir, resume: bool = False,
                saved_sha256: str | None = None) -> "SupervisedFineTuning":
        """Read and encode `cfg.data`'s conversations for the base run `cfg.init_from` (a resumed run:
        with its own tokenizer and template), cut or refuse the long ones, and hold out the last."""
        chat = chat_format(RunDir(cfg.init_from), run, resume)
        conversations, sha256 = read_conversations(cfg.data)
        if saved_sha256 is not None and sha256 != saved_sha256:
            raise TinyGPTError(f"the conversations ({cfg.data}) changed since this run started; resume with the "
                               "same data or start a new run")
        x = torch.full((len(conversations), block_size), chat.end_id, dtype=torch.int32)  # (N, T); any id pads
        y = torch.full((len(conversations), block_size), IGNORE, dtype=torch.int32)  # (N, T)
        cut, lengths = [], []
        for row, conversation in enumerate(conversations):
            try:
                ids, trained = chat.encode(conversation.messages, conversation.train)
            except TinyGPTError as e:  # a word or character the tokenizer does not know, a bad template
                raise TinyGPTError(f"{conversation.where}: {e}") from None
            if len(ids) > block_size + 1:
                ids, trained = fit_context(ids, trained, chat.end_id, block_size, conversation.where)
                cut.append(conversation.where)
            lengths.append(len(ids))
            n = len(ids) - 1
            targets = torch.tensor(ids[1:], dtype=torch.int32)  # (n,)
            x[row, :n] = torch.tensor(ids[:-1], dtype=torch.int32)
            y[row, :n] = torch.where(torch.tensor(trained[1:]), targets, IGNORE)

        n_val = int(len(conversations) * cfg.val_fraction)
        notes = []
        if cfg.val_fraction and not n_val:
            notes.append(f"{len(conversations)} conversation(s) are too few to hold out {cfg.val_fraction:g} of them: "
                         "no validation split (the loss reported is on the training conversations)")
        n_val = min(n_val, len(conversations) - 1)  # at least one to train on
        if cut:
            notes.append(f"{len(cut)} of {len(conversations)} conversations are longer than the context "
                         f"({block_size} tokens and the next): they keep their turns up to the last reply that fits "
                         f"(first: {cut[0]})")
        n_train = len(conversations) - n_val
        info = {"name": corpus_name(cfg.data), "verb": cls.verb, "sha256": sha256,
                "conversations": len(conversations), "train_conversations": n_train, "val_conversations": n_val,
                "train_tokens": sum(lengths[:n_train]), "target_tokens": int((y[:n_train] != IGNORE).sum()),
                "truncated": len(cut), "chat_template": run.chat_template_path.name, "notes": notes}
        return cls(cfg, chat, x, y, n_val, info, notes)

    def describe(self) -> str:
        d = self.data_info
        return (f"data {d['name']}: {d['train_conversations']:,} train / {d['val_conversations']:,} val conversations, "
                f"{d['train_tokens']:,} tokens, {d['target_tokens']:,} of them the assistant's to learn")

    # ------------------------------------------------------------------ what the loop asks

    def initial_weights(self, state):
        return grow_vocabulary(state, self.tokenizer.vocab_size)

    def write_files(self, run: RunDir):
        run.write_chat_template(self.chat.source)

    def batch(self, generator):
        rows = torch.randint(len(self.train_x), (self.cfg.batch_size,), generator=generator)  # (B,)
        lengths = self.train_lengths[rows]  # (B,)
        self.tokens_per_batch = int(lengths.sum())
        T = int(lengths.max())  # the positions after every row's last target only hold padding
        y = self.train_y[rows, :T].long()  # (B, T)
        self.targets_in_batch = int((y != IGNORE).sum())  # the whole batch's, for `loss` on any process's rows
        return self.train_x[rows, :T].long(), y

    def loss(self, model, batch):
        """The mean loss per assistant token of the whole batch, from this process's rows: their sum
        over the batch's count, times the processes (DDP averages the gradients). So N processes take
        the step one process takes on the batch; averaging each process's own mean would weigh a
        token by how many tokens its process happened to get."""
        x, y = batch  # (b, T) each: b = B / processes
        logits, _ = model(x)  # (b, T, V)
        total = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE, reduction="sum")
        return total * (self.cfg.batch_size / len(x)) / self.targets_in_batch

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """The mean loss per assistant token on the validation conversations and on as many training ones."""
        cfg = self.cfg
        n = len(self.val_x) if self.has_validation else len(self.train_x)
        losses = {}
        for split, x, y in (("train", self.train_x[:n], self.train_y[:n]), ("val", self.val_x, self.val_y)):
            if x is None:
                losses[f"{split}_loss"] = None
                continue
            if cfg.eval_iters:  # the same random batches at every evaluation
                gen = torch.Generator().manual_seed(cfg.seed + 1)
                rows = torch.randint(len(x), (cfg.eval_iters * cfg.batch_size,), generator=gen)
                x, y = x[rows], y[rows]
            total, count = reply_loss(model, x, y, runtime)
            total, count = ddp.sum_across(runtime.dist, total, count)
            losses[f"{split}_loss"] = total / count
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        return Evaluation(losses, score)


def chat_format(base: RunDir, run: RunDir, resume: bool) -> ChatFormat:
    """The tokenizer and template a run learns to chat in: a resumed run's own; otherwise the base
    run's tokenizer with the chat tokens, and its template if it has one (else the default)."""
    if resume:
        template = run.read_chat_template()
        if template is None:
            raise TinyGPTError(f"{run} has no {run.chat_template_path.name}; it is not a run of tinygpt sft")
        return ChatFormat(run.read_tokenizer(), template, origin=str(run.chat_template_path))
    template = base.read_chat_template()
    origin = str(base.chat_template_path) if template is not None else "the default chat template"
    return ChatFormat.new(base.read_tokenizer(), template, origin)


def fit_context(ids: list[int], trained: list[bool], end_id: int, block_size: int, where: str):
    """`ids` and `trained` up to the end of the last learnt reply within block_size + 1 tokens."""
    ends = [i for i, (t, learnt) in enumerate(zip(ids, trained)) if learnt and t == end_id]
    fits = [i for i in ends if i < block_size + 1]
    if not fits:
        raise TinyGPTError(f"{where}: the conversation needs {ends[0] + 1} tokens up to the end of its first reply, "
                           f"but the model's context is {block_size} tokens (and the next); shorten it or leave it out")
    keep = fits[-1] + 1
    return ids[:keep], trained[:keep]


@torch.no_grad()
def reply_loss(model, x: torch.Tensor, y: torch.Tensor, runtime) -> tuple[float, int]:
    """(sum of the losses on the targets that are not -100, their number) over rows x, y: (N, T).

    Rows go in chunks, shared round-robin among processes (add the results up across them).
    """
    was_training = model.training
    model.eval()
    # On a CPU, ~1,024 tokens a forward pass is fastest (see LanguageModeling.evaluate).
    chunk = max(1, 1024 // x.shape[1]) if runtime.device.type == "cpu" else 64
    rank, world = runtime.dist.rank, runtime.dist.world_size
    total, count = 0.0, 0
    starts = range(0, len(x), chunk)
    for k, counts in ddp.turns(len(starts), rank, world, runtime.dist.lockstep):
        xb = x[starts[k] : starts[k] + chunk].long().to(runtime.device)  # (b, T)
        yb = y[starts[k] : starts[k] + chunk].long().to(runtime.device)  # (b, T)
        with runtime.autocast():
            logits, _ = model(xb)  # (b, T, V)
        if counts:
            total += F.cross_entropy(logits.float().flatten(0, 1), yb.flatten(), ignore_index=IGNORE,
                                     reduction="sum").item()
            count += int((yb != IGNORE).sum())
    model.train(was_training)
    return total, count


def grow_vocabulary(state: dict[str, torch.Tensor], vocab_size: int) -> dict[str, torch.Tensor]:
    """`state` (a GPT's or a bigram table's) with rows for the ids it lacks, up to `vocab_size`.

    A new token's row starts at the mean of the trained rows, in the embedding and, when it is not
    tied, in the head (its bias too). As an input the mean is a vector like those the blocks were
    trained on, which a zero or N(0, 0.02) row need not be once training has moved the rows. In the
    head it gives a new token the mean of the old tokens' logits, so by Jensen's inequality each new
    token starts with a probability of at most 1/V and the base model's predictions barely move
    (Hewitt, 2021, "Initializing New Word Embeddings for Pretrained Language Models"). The new rows
    are alike at first and part as soon as training sees the tokens in their different places.
    """
    state = dict(state)
    for name in ("tok_emb.weight", "lm_head.weight", "lm_head.bias", "table"):
        if name in state:
            state[name] = _grow(state[name], vocab_size, dim=0)
    if "table" in state:  # the bigram table's columns are the next token's logits
        state["table"] = _grow(state["table"], vocab_size, dim=1)
    return state


def _grow(t: torch.Tensor, size: int, dim: int) -> torch.Tensor:
    missing = size - t.shape[dim]
    if missing < 0:
        raise TinyGPTError(f"the base weights have {t.shape[dim]} token rows, more than the tokenizer's {size}")
    mean = t.float().mean(dim=dim, keepdim=True).to(t.dtype)
    return torch.cat([t, mean.expand(*[missing if d == dim else n for d, n in enumerate(t.shape)])], dim=dim)
