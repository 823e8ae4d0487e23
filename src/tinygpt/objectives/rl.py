"""Reinforcement learning of a chat model against a reward (`tinygpt rl`): PPO, or GRPO.

    result = rl("runs/base-sft", prompts="prompts.jsonl", reward="checks.py:exact", max_iters=200)
    objective = ReinforcementLearning.prepare(train_cfg, RLConfig(reward=...), block_size, RunDir(out))
    Trainer(model_cfg, train_cfg, out, objective=objective).train()

The policy starts as the sft run's model and is trained by the one loop like every objective; the
reference, the same sft model loaded once more, is frozen. A rollout is `rollout_batches` batches of
`batch_size` replies: `batch_size * rollout_batches / group_size` training prompts drawn at random,
each rendered through the chat template with the generation prompt and answered `group_size` times
by the current policy (temperature `temperature`, until it ends its turn). The reward scores each
whole reply (reward_functions.py). The loop then takes `epochs` passes over the rollout, one optimizer step
per batch of rows (shuffled each pass), before the next rollout is sampled from the updated policy.

PPO (Schulman et al., 2017; as InstructGPT fine-tunes a chat model, Ouyang et al., 2022):
- each reply token earns -kl_coef * (log pi(token) - log pi_ref(token)), the KL penalty that keeps the
  policy near the sft model, and the reply's last token the reward as well;
- a value head estimates the return at every position: a Linear(n_embd, 1) on the policy's last hidden
  state (what its language-model head reads), trained beside it with the loss vf_coef * (V - R)^2 / 2.
  Its input is detached, so the policy learns from the clipped objective alone and the value loss
  cannot pull it into nonsense; a separate critic (the reward model's architecture) would be stronger
  at twice the compute. It starts at zero. Its weights are this objective's: they live in every
  checkpoint, never in model.safetensors, which stays a plain policy for `tinygpt sample` and `chat`;
- advantages are GAE(gamma, lam), whitened over the rollout's reply tokens; returns are A + V;
- the policy loss is the clipped surrogate -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A), with
  ratio = pi(token) / pi_old(token), pi_old the policy that sampled the rollout.
GRPO (Shao et al., 2024): `group_size` replies per prompt, each reply's advantage is its reward minus
the group's mean over the group's standard deviation, on every one of its tokens; no value model;
the KL to the reference is a loss term, kl_coef * (exp(d) - d - 1) with d = log pi_ref - log pi per
token (an estimate of KL(pi || pi_ref) that is never negative). Losses average over reply tokens.

Metrics (metrics.jsonl, one record per evaluation): `reward`, `kl` (per reply, in nats: the sum over
its tokens of log pi - log pi_ref when sampled) and `reply_tokens`, the means over the rollouts
sampled since the previous evaluation; `train_loss`, the mean loss of those steps; `eval_reward` and
`eval_reply_tokens`, of greedy replies to the held-out prompts (the last val_fraction of the file),
on which "best" is chosen (the highest reward; model.safetensors holds that policy).

Every checkpoint keeps the rollout being learnt from, the order of its rows and the value head, so a
resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn as nn

from ..config import TrainConfig
from ..config.rl import RLConfig
from ..core import distributed as ddp
from ..core.errors import TinyGPTError
from ..core.tokens import CHAT_TOKENS
from ..data import corpus_name
from ..data.prompts import read_prompts
from ..model import build_model
from ..store.checkpoint import load_weights_into, tensors_checksum
from ..store.rundir import RunDir
from ..tokenizers.chat_format import ChatFormat
from ..training.objective import Evaluation, Objective
from .reward_functions import load_reward
from .rollouts import Rollout, gae, group_advantages, pad_rows, sample_replies, score_tokens, token_logprobs, whiten


class PolicyWithValue(nn.Module):
    """The policy and PPO's value head, trained as one module (one optimizer, one DDP wrapper).

    forward(idx) -> (logits (B, T, V), values (B, T)): the head reads the policy's final norm, caught
    on its way to the language-model head, so one pass gives both."""

    def __init__(self, policy: nn.Module):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(policy.config.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)  # every value starts at 0
        nn.init.zeros_(self.value_head.bias)

    def forward(self, idx):
        hidden = []
        hook = self.policy.ln_f.register_forward_hook(lambda module, inputs, out: hidden.append(out))
        try:
            logits, _ = self.policy(idx)  # (B, T, V)
        finally:
            hook.remove()
        return logits, self.value_head(hidden[0].detach().float()).squeeze(-1)  # (B, T)


class ReinforcementLearning(Objective):
    """PPO or GRPO on replies sampled from the policy itself (see the module's docstring)."""

    verb = "rl"

    def __init__(self, cfg: TrainConfig, rl: RLConfig, chat: ChatFormat, reward, prompts: list, prompt_ids: list,
                 n_held_out: int, block_size: int, data_info: dict, notes: list[str], reference_checksum: str = ""):
        self.cfg, self.rl = cfg, rl
        self.chat = chat
        self.tokenizer = chat.tokenizer
        self.reward = reward
        n_train = len(prompts) - n_held_out
        self.train_prompts, self.train_ids = prompts[:n_train], prompt_ids[:n_train]
        # No held-out prompts: the greedy replies to the training prompts are scored instead.
        self.eval_prompts = prompts[n_train:] or self.train_prompts
        self.eval_ids = prompt_ids[n_train:] or self.train_ids
        self.block_size = block_size
        self.data_info = data_info
        self.notes = notes
        self.stop = {*chat.role_ids.values(), chat.end_id}
        self.saved_checksum = reference_checksum  # a resumed run's reference must be the one it began with
        self.policy = self.reference = self.trained = self.runtime = None  # set by bind()
        self.rollout: Rollout | None = None
        self.order = torch.zeros(0, dtype=torch.long)  # this pass's order of the rollout's rows
        self.cursor = 0  # batches of the rollout already handed out
        # Sums since the last evaluation: loss, steps, reward, kl, reply tokens, replies.
        self.period = torch.zeros(6, dtype=torch.float64)

    @classmethod
    def prepare(cls, cfg: TrainConfig, rl: RLConfig, block_size: int, run: RunDir, resume: bool = False,
                saved: dict | None = None) -> "ReinforcementLearning":
        """Read the prompts of `cfg.data`, render and encode them for the sft run `cfg.init_from` (a resumed
        run: with its own tokenizer and template), hold out the last, and load the reward."""
        rl.validate(cfg.batch_size)
        chat = rl_chat_format(RunDir(cfg.init_from), run, resume)
        reward = load_reward(rl.reward)
        prompts, sha256 = read_prompts(cfg.data)
        if saved is not None and sha256 != saved.get("sha256"):
            raise TinyGPTError(f"the prompts ({cfg.data}) changed since this run started; resume with the same "
                               "prompts or start a new run")
        prompt_ids = []
        for prompt in prompts:
            try:
                ids = chat.prompt_ids(prompt.messages)
            except TinyGPTError as e:  # a word or character the tokenizer does not know
                raise TinyGPTError(f"{prompt.where}: {e}") from None
            if len(ids) >= block_size:
                raise TinyGPTError(f"{prompt.where}: the prompt is {len(ids)} tokens with the chat template, leaving "
                                   f"no room for a reply in the model's context of {block_size}; shorten it")
            prompt_ids.append(ids)
        n_held_out = min(int(len(prompts) * cfg.val_fraction), len(prompts) - 1)
        notes = []
        if not n_held_out:
            why = (f"{len(prompts)} prompt(s) are too few to hold out {cfg.val_fraction:g} of them" if cfg.val_fraction
                   else "no prompts are held out (val_fraction 0)")
            notes.append(f"{why}: the greedy replies scored at each evaluation answer training prompts")
        info = {"name": corpus_name(cfg.data), "verb": cls.verb, "sha256": sha256, "prompts": len(prompts),
                "train_prompts": len(prompts) - n_held_out, "held_out_prompts": n_held_out, "rl": asdict(rl),
                "chat_template": run.chat_template_path.name, "notes": notes}
        checksum = (saved or {}).get("reference_checksum", "")
        return cls(cfg, rl, chat, reward, prompts, prompt_ids, n_held_out, block_size, info, notes, checksum)

    def describe(self) -> str:
        d, rl = self.data_info, self.rl
        steps = rl.epochs * rl.rollout_batches / self.cfg.grad_accum
        return (f"prompts {d['name']}: {d['train_prompts']:,} train / {d['held_out_prompts']:,} held out; "
                f"{rl.algorithm} against {rl.reward}, {rl.group_size} replies per prompt, "
                f"{steps:g} optimizer step{'' if steps == 1 else 's'} per rollout of "
                f"{self.cfg.batch_size * rl.rollout_batches} replies")

    # ------------------------------------------------------------------ what the loop asks

    def write_files(self, run: RunDir):
        run.write_chat_template(self.chat.source)

    def bind(self, model, runtime):
        """Keep the policy to sample from, load the frozen reference, and give PPO's policy its value head."""
        if self.rl.algorithm == "ppo" and model.config.arch != "gpt":
            raise TinyGPTError(f"ppo's value head reads a GPT's hidden state; a {model.config.arch} model has none "
                               "(use --algorithm grpo)")
        self.policy, self.runtime = model, runtime
        state, path = RunDir(self.cfg.init_from).read_weights("best")
        checksum = tensors_checksum(state, {})
        if self.saved_checksum and checksum != self.saved_checksum:
            raise TinyGPTError(f"the weights of {self.cfg.init_from} (the reference) changed since this run started; "
                               "resume against the same sft run or start a new run")
        self.data_info["reference_checksum"] = checksum
        self.reference = build_model(model.config)
        load_weights_into(self.reference, state, path)
        self.reference.requires_grad_(False).eval().to(runtime.device)
        self.reward.check(self.chat, self.block_size)
        self.reward.to(runtime.device)
        self.trained = PolicyWithValue(model).to(runtime.device) if self.rl.algorithm == "ppo" else model
        return self.trained

    @property
    def tokens_per_batch(self) -> int:
        return 0 if self.rollout is None else self.cfg.batch_size * self.rollout.mask.shape[1]

    def batch(self, generator):
        """The next batch of rows of the rollout, sampling a new rollout when the last is used up."""
        batches = self.rl.rollout_batches
        if self.rollout is None or self.cursor == self.rl.epochs * batches:
            self.rollout, self.cursor = self.new_rollout(generator), 0
        k = self.cursor % batches
        if k == 0:  # a new pass over the rollout, in a new order
            self.order = torch.randperm(len(self.rollout.ids), generator=generator)
        self.cursor += 1
        B = self.cfg.batch_size
        rows = self.rollout.batch(self.order[k * B : (k + 1) * B])
        # The whole batch's reply tokens and rows, for `loss` on any process's share of them.
        self.batch_tokens, self.batch_rows = rows[1].sum().clamp_min(1), len(rows[0])
        return rows

    def loss(self, model, batch):
        ids, mask, old_logp, ref_logp, advantages, returns = batch  # (B, T), then (B, T - 1) each
        rl = self.rl
        logits, values = model(ids[:, :-1])  # (B, T - 1, V), (B, T - 1) or None
        logp = token_logprobs(logits, ids[:, 1:], rl.temperature)  # (B, T - 1)
        # Means per reply token of the whole batch, from this process's rows: N processes (DDP averages
        # the gradients) take the step one takes on the batch, whoever holds the longer replies.
        tokens = self.batch_tokens * len(ids) / self.batch_rows
        # Differences of log-probabilities are masked before exp: outside the reply they may be huge.
        ratio = torch.exp((logp - old_logp) * mask)
        clipped = ratio.clamp(1 - rl.clip_range, 1 + rl.clip_range)
        loss = (-torch.min(ratio * advantages, clipped * advantages) * mask).sum() / tokens
        if rl.algorithm == "grpo" and rl.kl_coef:
            d = (ref_logp - logp) * mask
            loss = loss + rl.kl_coef * ((torch.exp(d) - d - 1) * mask).sum() / tokens
        if values is not None:
            loss = loss + rl.vf_coef * 0.5 * (((values - returns) ** 2) * mask).sum() / tokens
        # Each process holds its share of the batch's loss; the log records the whole batch's, their mean.
        logged = ddp.sum_across(self.runtime.dist, loss.item())[0] / self.runtime.dist.world_size
        self.period[:2] += torch.tensor([logged, 1.0], dtype=torch.float64)
        return loss

    def new_rollout(self, generator) -> Rollout:
        """Sample, score and weigh a rollout from the current policy, drawing only from `generator`."""
        rl, B = self.rl, self.cfg.batch_size
        n = B * rl.rollout_batches
        picks = torch.randint(len(self.train_ids), (n // rl.group_size,), generator=generator).tolist()
        seeds = torch.randint(2**62, (n,), generator=generator).tolist()
        prompts = [self.train_ids[p] for p in picks for _ in range(rl.group_size)]  # a group's rows are adjacent
        texts = [self.train_prompts[p].text for p in picks for _ in range(rl.group_size)]
        replies = sample_replies(self.policy, prompts, self.stop, rl.max_new_tokens, rl.temperature, seeds)
        ids, mask, lengths = pad_rows(prompts, replies, self.chat.end_id)
        rewards = torch.tensor(self.reward.score(texts, [self.reply_text(r) for r in replies], ids, lengths))
        old_logp, values = score_tokens(self.trained, ids, rl.temperature, self.runtime.autocast)
        ref_logp, _ = score_tokens(self.reference, ids, rl.temperature, self.runtime.autocast)
        old_logp, ref_logp = old_logp * mask, ref_logp * mask
        if rl.algorithm == "ppo":
            per_token = -rl.kl_coef * (old_logp - ref_logp)  # (n, T - 1)
            last = torch.arange(n), lengths - 2  # the action that wrote each reply's last token
            per_token[last] += rewards
            advantages, returns = gae(per_token, values, mask, rl.gamma, rl.lam)
            advantages = whiten(advantages, mask)
        else:
            advantages, returns = group_advantages(rewards, rl.group_size)[:, None] * mask, torch.zeros_like(mask)
        rollout = Rollout(ids, mask, old_logp, ref_logp, advantages, returns, rewards)
        self.period[2:] += torch.tensor([rewards.sum(), rollout.kl.sum(), mask.sum(), n], dtype=torch.float64)
        return rollout

    def reply_text(self, reply: list[int]) -> str:
        """A reply's text as the reward reads it: without the token that ended it, nor the whitespace around."""
        if reply and reply[-1] in self.stop:
            reply = reply[:-1]
        return self.tokenizer.decode(reply).strip()

    def evaluate(self, model, runtime, final: bool = False) -> Evaluation:
        """Greedy replies to the held-out prompts, scored; and the means since the previous evaluation
        (which this one starts again)."""
        replies = []
        for start in range(0, len(self.eval_ids), 64):
            replies += sample_replies(model, self.eval_ids[start : start + 64], self.stop, self.rl.max_new_tokens, 0.0)
        ids, mask, lengths = pad_rows(self.eval_ids, replies, self.chat.end_id)
        rewards = self.reward.score([p.text for p in self.eval_prompts], [self.reply_text(r) for r in replies], ids,
                                    lengths)
        eval_reward = sum(rewards) / len(rewards)
        loss, steps, reward, kl, tokens, sampled = self.period.tolist()
        self.period.zero_()
        losses = {"train_loss": loss / steps if steps else None, "val_loss": None}
        for name, total in (("reward", reward), ("kl", kl), ("reply_tokens", tokens)):
            losses[name] = total / sampled if sampled else None  # None: no rollout yet (step 0)
        losses.update(eval_reward=eval_reward, eval_reply_tokens=float(mask.sum()) / len(replies))
        return Evaluation(losses, score=-eval_reward)

    def report(self, record: dict) -> str:
        held_out = f"held-out reward {record['eval_reward']:.3f} (greedy, {record['eval_reply_tokens']:.1f} tokens)"
        if record.get("reward") is None:
            return held_out
        return (f"reward {record['reward']:.3f}, kl {record['kl']:.4f}, reply {record['reply_tokens']:.1f} tokens, "
                f"loss {record['train_loss']:.4f}; {held_out}")

    def status(self) -> dict[str, str]:
        if self.rollout is None:
            return {}
        r = self.rollout
        return {"reward": f"{r.rewards.mean():.3f}", "kl": f"{r.kl.mean():.4f}",
                "reply": f"{r.reply_tokens.mean():.1f}"}

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"period": self.period, "cursor": torch.tensor([self.cursor]), "order": self.order}
        if self.rollout is not None:
            state.update({f"rollout.{k}": v for k, v in self.rollout.tensors().items()})
        if isinstance(self.trained, PolicyWithValue):
            state.update({f"value_head.{k}": v for k, v in self.trained.value_head.state_dict().items()})
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        if "cursor" not in state:
            raise TinyGPTError("the checkpoint holds no rollout state; it was not written by `tinygpt rl`")
        self.period = state["period"].clone()
        self.cursor = int(state["cursor"][0])
        self.order = state["order"].clone()
        rollout = {k.removeprefix("rollout."): v for k, v in state.items() if k.startswith("rollout.")}
        self.rollout = Rollout.from_tensors(rollout) if rollout else None
        if isinstance(self.trained, PolicyWithValue):
            head = {k.removeprefix("value_head."): v for k, v in state.items() if k.startswith("value_head.")}
            self.trained.value_head.load_state_dict(head)


def rl_chat_format(sft_run: RunDir, run: RunDir, resume: bool) -> ChatFormat:
    """The tokenizer and chat template the policy writes in: the sft run's (a resumed run: its own copy)."""
    source = run if resume else sft_run
    template = source.read_chat_template()
    if template is None:
        what = "it is not a run of tinygpt rl" if resume else "it was not fine-tuned on conversations"
        raise TinyGPTError(f"{source} has no {source.chat_template_path.name}: {what}; reinforcement learning "
                           "starts from a run of `tinygpt sft`")
    tokenizer = source.read_tokenizer()
    if any(token not in tokenizer.special_tokens for token in CHAT_TOKENS):
        raise TinyGPTError(f"{source}'s tokenizer has no chat tokens; reinforcement learning starts from a run of "
                           "`tinygpt sft`")
    return ChatFormat(tokenizer, template, origin=str(source.chat_template_path))
