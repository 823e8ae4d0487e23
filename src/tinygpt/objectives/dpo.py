"""Direct Preference Optimization: an sft run learns from preference pairs without a reward model (`tinygpt dpo`).

    result = dpo("runs/base-sft", data="pairs.jsonl", out="runs/base-dpo", beta=0.1)   # or:
    objective = DirectPreference.prepare(train_cfg, DPOConfig(beta=0.1), block_size, RunDir(out))
    Trainer(model_cfg, train_cfg, out, objective=objective).train()

The policy starts as the sft run's model and is trained by the one loop like every objective; the
reference is that same model, frozen (Rafailov et al., 2023). A reply's log-probability log pi(y|x)
is the sum over its tokens of the model's log-probability of each; its implicit reward is
beta * (log pi(y|x) - log pi_ref(y|x)). For a pair, with the margin
m = (log pi(chosen) - log pi_ref(chosen)) - (log pi(rejected) - log pi_ref(rejected)):
- sigmoid (DPO, TRL's default): the loss is -log sigmoid(beta * m), Bradley-Terry on the implicit
  rewards; it falls as the policy raises the chosen reply above the rejected one, relative to
  where the reference put them, and beta sets how much a margin is worth (how far it may move);
- ipo (Azar et al., 2023): (m' - 1 / (2 beta))^2 with m' the same margin of per-token means of the
  log-ratios (TRL's length normalisation): it aims at a fixed margin instead of an ever larger one.
With `sft_weight` w, w times the chosen replies' mean loss per token (SFT's) is added (RPO, Pang et
al., 2024; TRL: loss_type=["sigmoid", "sft"], loss_weights=[1, w]). DPO alone can lower the chosen
replies' likelihood too, as long as the rejected ones fall faster; where a rejected reply differs from
the chosen one in its form, not only its facts, that can break the form (measured in the demo:
benchmarks/README.md), and the SFT term holds the chosen replies up.

The reference's log-probabilities of every pair are computed once, when the run starts, by the model
the loop has just loaded from the sft run (in eval mode, without gradients), and kept in every
checkpoint, so the reference needs no memory while training and a resumed run uses the very same
numbers. config.json records the sft weights' checksum; `tinygpt eval` recomputes the reference from them.

Pairs (data/preferences.py: TRL's format) become two token sequences each, marked as SFT marks a
conversation: only the reply's tokens are scored. Plain text is the prompt's tokens then the reply's
(without a prompt, the tokens both sequences start with are the prompt); a conversation is written by
the sft run's chat template and the scored tokens are those of the assistant messages after the
messages both replies share (chat_format.encode: each reply's text and its <|end|>).

Too long: a sequence keeps its first block_size + 1 tokens (TRL's keep_start) and the run says how
many were cut; a pair whose prompt leaves no room for a reply token is refused, by file and line.

Metrics (metrics.jsonl), under TRL's names: at each evaluation, over as many training pairs as are held
out, `rewards/chosen`, `rewards/rejected` (mean implicit rewards), `rewards/accuracies` (the share of pairs
whose chosen reply's reward is higher), `rewards/margins` (their mean difference), `logps/chosen`,
`logps/rejected` (the policy's mean log-probabilities); the same over the held-out pairs with `eval_` in
front (TRL's evaluation prefix); `train_loss` and `val_loss`, the mean loss of each. "Best" is the lowest
val_loss. (TRL logs its training metrics as means over the steps since the last log; these are
evaluations of the model at the step, so two evaluations of one model agree.)
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F

from ..config import TrainConfig
from ..config.dpo import DPOConfig
from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..core.tokens import IGNORE
from ..data import corpus_name
from ..data.preferences import Pair, hold_out, read_pairs
from ..store.checkpoint import tensors_checksum
from ..store.rundir import RunDir
from ..tokenizers.chat_format import ChatFormat
from ..training.objective import Evaluation, Objective
from .rollouts import token_logprobs

SIDES = ("chosen", "rejected")
# What an evaluation reports for a split, in TRL's names, and the sums of pair results they are means of.
STATS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
         "logps/rejected")


class DirectPreference(Objective):
    """DPO (or IPO) on preference pairs against the frozen sft model (see the module's docstring)."""

    verb = "dpo"

    def __init__(self, cfg: TrainConfig, dpo: DPOConfig, tokenizer, chat: ChatFormat | None,
                 rows: dict[str, torch.Tensor], n_val: int, block_size: int, data_info: dict, notes: list[str],
                 resume: bool, reference_checksum: str = ""):
        self.cfg, self.dpo = cfg, dpo
        self.tokenizer, self.chat = tokenizer, chat
        # chosen_x, chosen_y, rejected_x, rejected_y: (N, W) inputs and targets (IGNORE outside the reply);
        # chosen_len, rejected_len: (N,) each row's length, up to its last target.
        self.rows = rows
        self.n_train = len(rows["chosen_x"]) - n_val
        self.n_val = n_val
        self.block_size = block_size
        self.tokens_per_batch = 0  # set by each batch()
        self.data_info, self.notes = data_info, notes
        self.has_validation = n_val > 0
        self.resume = resume
        self.saved_checksum = reference_checksum  # a run's reference must be the one it began with
        self.reference = torch.zeros(len(rows["chosen_x"]), 2)  # (N, 2): log pi_ref of chosen, rejected

    @classmethod
    def prepare(cls, cfg: TrainConfig, dpo: DPOConfig, block_size: int, run: RunDir, resume: bool = False,
                saved: dict | None = None) -> "DirectPreference":
        """Read and encode `cfg.data`'s pairs for the sft run `cfg.init_from` (a resumed run: with its own
        tokenizer and template), cut the long sequences, and hold out the last pairs."""
        dpo.validate()
        pairs, sha256 = read_pairs(cfg.data)
        if saved is not None and sha256 != saved.get("sha256"):
            raise TinyGPTError(f"the preference pairs ({cfg.data}) changed since this run started; resume with the "
                               "same data or start a new run")
        tokenizer, chat = dpo_format(RunDir(cfg.init_from), run, resume, pairs)
        sequences, cut = [], []
        for pair in pairs:
            try:  # a word or character the tokenizer does not know, a bad template, a prompt too long
                both, long = fit_pair(encode_pair(pair, tokenizer, chat), block_size)
            except TinyGPTError as e:
                raise TinyGPTError(f"{pair.where}: {e}") from None
            if long:
                cut.append(pair.where)
            sequences.append(both)

        width = max(len(ids) for both in sequences for ids, _ in both) - 1
        rows = {}
        for side in SIDES:
            rows[f"{side}_x"] = torch.zeros(len(pairs), width, dtype=torch.int32)  # id 0 pads: never a target
            rows[f"{side}_y"] = torch.full((len(pairs), width), IGNORE, dtype=torch.int32)
            rows[f"{side}_len"] = torch.zeros(len(pairs), dtype=torch.long)
        for row, both in enumerate(sequences):
            for side, (ids, trained) in zip(SIDES, both):
                n = len(ids) - 1
                rows[f"{side}_x"][row, :n] = torch.tensor(ids[:-1], dtype=torch.int32)
                rows[f"{side}_y"][row, :n] = torch.where(torch.tensor(trained[1:]), torch.tensor(ids[1:]), IGNORE)
                rows[f"{side}_len"][row] = n

        n_val, notes = hold_out(len(pairs), cfg.val_fraction, "loss and rewards")
        if cut:
            notes.append(f"{len(cut)} of {len(pairs)} pairs have a sequence longer than the context ({block_size} "
                         f"tokens and the next): they keep their first {block_size + 1} tokens (first: {cut[0]})")
        n_train = len(pairs) - n_val
        info = {"name": corpus_name(cfg.data), "verb": cls.verb, "sha256": sha256, "pairs": len(pairs),
                "train_pairs": n_train, "val_pairs": n_val,
                "conversational": sum(pair.conversational for pair in pairs), "longest": width + 1,
                "train_tokens": int(rows["chosen_len"][:n_train].sum() + rows["rejected_len"][:n_train].sum()),
                "truncated": len(cut), "chat_template": run.chat_template_path.name if chat else "",
                "dpo": asdict(dpo), "notes": notes}
        checksum = (saved or {}).get("reference_checksum", "")
        if checksum:  # a resumed run records it again
            info["reference_checksum"] = checksum
        return cls(cfg, dpo, tokenizer, chat, rows, n_val, block_size, info, notes, resume, checksum)

    def describe(self) -> str:
        d = self.data_info
        return (f"data {d['name']}: {d['train_pairs']:,} train / {d['val_pairs']:,} val preference pairs, "
                f"{d['train_tokens']:,} tokens; {self.dpo.loss_type} loss, beta {self.dpo.beta:g}, against "
                f"{self.cfg.init_from} (frozen)")

    # ------------------------------------------------------------------ the reference

    def check_reference(self, state: dict[str, torch.Tensor]):
        """Record the checksum of the reference's weights; refuse weights other than the run began with."""
        checksum = tensors_checksum(state, {})
        if self.saved_checksum and checksum != self.saved_checksum:
            raise TinyGPTError(f"the weights of {self.cfg.init_from} (the reference) changed since this run started; "
                               "use the same sft run or start a new run")
        self.data_info["reference_checksum"] = checksum

    def score_reference(self, reference, runtime):
        """The reference's log-probabilities of every pair's replies, computed once. In the same pieces as an
        exact evaluation scores the policy (the training pairs it scores, the rest, the held-out ones): the
        float sums of a row depend on the rows computed with it, so at step 0, where the policy is the
        reference, every reward is exactly 0."""
        n = self.eval_train_pairs()
        pieces = [(0, n), (n, self.n_train), (self.n_train, self.n_train + self.n_val)]
        for start, end in pieces:
            if end > start:
                chosen, rejected, _ = self.pair_logps(reference, torch.arange(start, end), runtime, share=False)
                self.reference[start:end] = torch.stack([chosen, rejected], dim=1)  # (end - start, 2)

    # ------------------------------------------------------------------ what the loop asks

    def write_files(self, run: RunDir):
        if self.chat is not None:
            run.write_chat_template(self.chat.source)

    def bind(self, model, runtime):
        """A new run scores the pairs with the model as the loop loaded it: the sft run's weights, the reference.
        A resumed run takes the reference's numbers from its checkpoint instead (load_state_dict)."""
        if not self.resume:
            self.check_reference(RunDir(self.cfg.init_from).read_weights("best")[0])
            self.score_reference(model, runtime)
        return model

    def batch(self, generator):
        picked = torch.randint(self.n_train, (self.cfg.batch_size,), generator=generator)  # (B,)
        batch = self.take(picked)
        self.tokens_per_batch = int(self.rows["chosen_len"][picked].sum() + self.rows["rejected_len"][picked].sum())
        return batch

    def take(self, picked: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The pairs `picked` (b,): chosen and rejected inputs and targets (b, W), cut to their longest
        row, the reference's log-probabilities (b,) of each reply, and in every row b over the chosen
        replies' tokens, so that a process holding some of the rows weighs the SFT term's tokens as
        the whole batch does (`loss`)."""
        r = self.rows
        W = int(max(r["chosen_len"][picked].max(), r["rejected_len"][picked].max()))
        ref = self.reference[picked]  # (b, 2)
        chosen_y = r["chosen_y"][picked, :W].long()
        per_token = torch.full((len(picked),), len(picked) / int((chosen_y != IGNORE).sum()))
        return (r["chosen_x"][picked, :W].long(), chosen_y, r["rejected_x"][picked, :W].long(),
                r["rejected_y"][picked, :W].long(), ref[:, 0], ref[:, 1], per_token)

    def loss(self, model, batch):
        chosen_x, chosen_y, rejected_x, rejected_y, ref_chosen, ref_rejected, per_token = batch
        logp_chosen, logp_rejected = sequence_logps(model, torch.cat([chosen_x, rejected_x]),
                                                    torch.cat([chosen_y, rejected_y])).chunk(2)  # (b,) each
        counts = (chosen_y != IGNORE).sum(1), (rejected_y != IGNORE).sum(1)
        loss = dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, self.dpo, *counts).mean()
        if self.dpo.sft_weight:
            # The chosen replies' mean loss per token over the whole batch, from this process's rows: their sum
            # over the batch's count, times the processes (DDP averages the gradients), as SFT computes it.
            loss = loss + self.dpo.sft_weight * -logp_chosen.sum() * per_token[0] / len(chosen_x)
        return loss

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """The loss and TRL's statistics on the validation pairs and on as many training pairs."""
        cfg = self.cfg
        n = self.eval_train_pairs()
        losses = {}
        for split, prefix, picked in (("train", "", torch.arange(n)),
                                      ("val", "eval_", torch.arange(self.n_train, self.n_train + self.n_val))):
            if len(picked) and cfg.eval_iters:  # the same random batches at every evaluation
                gen = torch.Generator().manual_seed(cfg.seed + 1)
                picked = picked[torch.randint(len(picked), (cfg.eval_iters * cfg.batch_size,), generator=gen)]
            found = self.pair_stats(model, picked, runtime) if len(picked) else {}
            losses[f"{split}_loss"] = found.get("loss")
            losses.update({prefix + name: found.get(name) for name in STATS})
        score = losses["val_loss"] if losses["val_loss"] is not None else losses["train_loss"]
        return Evaluation(losses, score)

    def eval_train_pairs(self) -> int:
        """How many training pairs (the first ones) an exact evaluation scores: as many as are held out, or all."""
        return min(self.n_val, self.n_train) if self.has_validation else self.n_train

    def report(self, record: dict) -> str:
        val = f"{record['val_loss']:.4f}" if record.get("val_loss") is not None else "n/a"
        prefix, split = ("eval_", "held-out") if record.get("eval_rewards/margins") is not None else ("", "train")
        return (f"train loss {record['train_loss']:.4f}, val loss {val}; {split} accuracy "
                f"{record[prefix + 'rewards/accuracies']:.3f}, margin {record[prefix + 'rewards/margins']:.4f}")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"reference_logps": self.reference}

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        if "reference_logps" not in state:
            raise TinyGPTError("the checkpoint holds no reference log-probabilities; it was not written by "
                               "`tinygpt dpo`")
        self.reference = state["reference_logps"].clone()

    # ------------------------------------------------------------------ scoring pairs

    def pair_stats(self, model, picked: torch.Tensor, runtime) -> dict[str, float]:
        """The mean loss and TRL's statistics (STATS) over the pairs `picked` (indices), added up across processes."""
        logp_chosen, logp_rejected, mine = self.pair_logps(model, picked, runtime)  # this process's share, (n,)
        ref = self.reference[mine]  # (n, 2)
        counts = [(self.rows[f"{side}_y"][mine] != IGNORE).sum(1) for side in SIDES]
        losses = dpo_loss(logp_chosen, logp_rejected, ref[:, 0], ref[:, 1], self.dpo, *counts)
        r_chosen = self.dpo.beta * (logp_chosen - ref[:, 0])
        r_rejected = self.dpo.beta * (logp_rejected - ref[:, 1])
        sums = [losses.sum(), r_chosen.sum(), r_rejected.sum(), (r_chosen > r_rejected).sum(),
                (r_chosen - r_rejected).sum(), logp_chosen.sum(), logp_rejected.sum(), counts[0].sum(), len(mine)]
        loss, *totals, chosen_tokens, count = ddp.sum_across(runtime.dist, *(float(s) for s in sums))
        found = {name: total / count for name, total in zip(STATS, totals)}
        sft = -found["logps/chosen"] * count / chosen_tokens  # the chosen replies' mean loss per token
        return {"loss": loss / count + self.dpo.sft_weight * sft, **found}

    @torch.no_grad()
    def pair_logps(self, model, picked: torch.Tensor, runtime, share: bool = True):
        """log pi(chosen) and log pi(rejected) (n,) under `model` (in eval mode), of the pairs `picked`
        that this process scores (all of them unless `share`d among processes: chunks round-robin), and
        which those are (n,)."""
        was_training = model.training
        model.eval()
        # On a CPU, ~1,024 tokens a forward pass is fastest (see LanguageModeling.evaluate); a pair is two rows.
        size = max(1, 512 // self.rows["chosen_x"].shape[1]) if runtime.device.type == "cpu" else 32
        chunks = [picked[start : start + size] for start in range(0, len(picked), size)]
        rank, world = (runtime.dist.rank, runtime.dist.world_size) if share else (0, 1)
        chosen, rejected, mine = [torch.zeros(0)], [torch.zeros(0)], [torch.zeros(0, dtype=torch.long)]
        for k, counts in ddp.turns(len(chunks), rank, world, share and runtime.dist.lockstep):
            x_chosen, y_chosen, x_rejected, y_rejected = (t.to(runtime.device) for t in self.take(chunks[k])[:4])
            with runtime.autocast():
                sums = sequence_logps(model, torch.cat([x_chosen, x_rejected]), torch.cat([y_chosen, y_rejected]))
            if counts:
                c, r = sums.cpu().chunk(2)
                chosen.append(c)
                rejected.append(r)
                mine.append(chunks[k])
        model.train(was_training)
        return torch.cat(chosen), torch.cat(rejected), torch.cat(mine)


def sequence_logps(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's log-probability of its targets: the sum of log p(y_t) where y_t is not IGNORE. (B, T) -> (B,)"""
    logits, _ = model(x)  # (B, T, V)
    scored = y != IGNORE  # (B, T)
    logp = token_logprobs(logits, y.masked_fill(~scored, 0))  # (B, T)
    return (logp * scored).sum(1)


def dpo_loss(logp_chosen, logp_rejected, ref_chosen, ref_rejected, dpo: DPOConfig, n_chosen=None, n_rejected=None):
    """Each pair's loss (B,) from the policy's and the reference's log-probabilities (B,) of each reply;
    `n_chosen`, `n_rejected` (B,): the replies' token counts (the ipo loss's per-token means)."""
    chosen, rejected = logp_chosen - ref_chosen, logp_rejected - ref_rejected  # the log-ratios
    if dpo.loss_type == "ipo":
        margin = chosen / n_chosen.clamp_min(1) - rejected / n_rejected.clamp_min(1)
        return (margin - 1 / (2 * dpo.beta)) ** 2
    # logsigmoid stays finite where a large margin would round sigmoid to 0 or 1.
    return -F.logsigmoid(dpo.beta * (chosen - rejected))


def encode_pair(pair: Pair, tokenizer, chat: ChatFormat | None) -> list[tuple[list[int], list[bool]]]:
    """The chosen and the rejected sequence of a pair: (ids, whether each id is a reply token to score)."""
    if pair.conversational:
        shared = 0  # the messages both start with are the prompt
        while shared < min(len(pair.chosen), len(pair.rejected)) and pair.chosen[shared] == pair.rejected[shared]:
            shared += 1
        return [chat.encode(messages, [i >= shared for i in range(len(messages))])
                for messages in (pair.chosen, pair.rejected)]
    prompt = tokenizer.encode(pair.prompt)
    replies = [tokenizer.encode(reply) for reply in (pair.chosen, pair.rejected)]
    if not pair.prompt:  # the tokens both texts start with are the prompt
        shared = 0
        while shared < min(map(len, replies)) and replies[0][shared] == replies[1][shared]:
            shared += 1
        prompt, replies = replies[0][:shared], [reply[shared:] for reply in replies]
    return [(prompt + reply, [False] * len(prompt) + [True] * len(reply)) for reply in replies]


def fit_pair(both, block_size: int):
    """The pair's two sequences within block_size + 1 tokens (a context and the token after it), and
    whether one was cut; a reply with no token to score there is refused."""
    long = any(len(ids) > block_size + 1 for ids, _ in both)
    kept = [(ids[: block_size + 1], trained[: block_size + 1]) for ids, trained in both]
    for side, (_, trained) in zip(SIDES, both):
        first = trained.index(True, 1) if True in trained[1:] else None  # the first token has no context
        if first is None:
            raise TinyGPTError(f"the {side} reply has no token to score after the prompt both replies share; give "
                               "it some text of its own or drop the line")
        if first > block_size:
            raise TinyGPTError(f"the prompt is {first} tokens, and the model's context is {block_size}: no token of "
                               f"the {side} reply fits after it; shorten the prompt or leave the pair out")
    if kept[0][0] == kept[1][0]:
        raise TinyGPTError(f"the chosen and rejected replies give the same {len(kept[0][0])} tokens"
                           f"{' in the context' if long else ''}, so the pair prefers nothing; drop it")
    return kept, long


def dpo_format(base: RunDir, run: RunDir, resume: bool, pairs: list[Pair]) -> tuple[object, ChatFormat | None]:
    """The tokenizer a dpo run reads with, and its chat format (None: plain text only): the sft run's (a
    resumed run: its own copy). Conversations need its chat template: DPO adds no tokens to the model."""
    source = run if resume else base
    tokenizer = source.read_tokenizer()
    template = source.read_chat_template()
    if template is not None:
        return tokenizer, ChatFormat(tokenizer, template, origin=str(source.chat_template_path))
    conversational = next((pair for pair in pairs if pair.conversational), None)
    if conversational is not None:
        raise TinyGPTError(f"{conversational.where}: the pair is a conversation, but {source} has no "
                           f"{source.chat_template_path.name} (it was not fine-tuned on conversations); start from a "
                           "run of `tinygpt sft`, or give plain-text pairs")
    return tokenizer, None
