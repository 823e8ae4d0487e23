"""Rollouts: replies sampled from the policy, scored, and turned into what a policy-gradient step learns.

    replies = sample_replies(model, prompts, stop, max_new_tokens, temperature, seeds)
    ids, mask, lengths = pad_rows(prompts, replies, pad_id)
    logp, values = score_tokens(model, ids, temperature, autocast)
    advantages, returns = gae(rewards, values, mask, gamma, lam)        # PPO
    advantages = group_advantages(rewards, group_size)                  # GRPO

A rollout of N rows holds ids (N, T): each row a prompt and its reply, padded on the right. Every
per-token tensor lies on the (N, T - 1) grid of *actions*: position t is the choice of ids[:, t + 1]
made after reading ids[:, : t + 1] (where the model's logits at t predict it), and `mask` is 1 where
that token is part of the reply, so chosen by the policy. Prompt and padding positions are 0.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..generation import Decoder, Row, SamplingConfig


def sample_replies(model, prompts: list[list[int]], stop: set[int], max_new_tokens: int, temperature: float,
                   seeds: list[int] | None = None) -> list[list[int]]:
    """Each prompt's reply, sampled from `model` in one batch: tokens until one of `stop` (kept, since
    ending the turn is a choice the policy learns too), max_new_tokens, or the end of the context.

    seeds: one per prompt, each row drawing from its own generator; None with temperature 0: greedy.
    """
    device = next(model.parameters()).device
    block_size = model.config.block_size
    rows = []
    for i, ids in enumerate(prompts):
        sampling = SamplingConfig(max_new_tokens=min(max_new_tokens, block_size - len(ids)), temperature=temperature)
        generator = torch.Generator(device=device).manual_seed(seeds[i]) if seeds is not None else None
        rows.append(Row(ids, sampling, generator))
    was_training = model.training
    model.eval()
    try:
        decoder = Decoder(model, rows)
        while not decoder.done:
            for row, token in decoder.step():
                if token in stop:
                    decoder.finish(row)
    finally:
        model.train(was_training)
    return [ids[len(prompt) :] for ids, prompt in zip(decoder.ids, prompts)]


def pad_rows(prompts: list[list[int]], replies: list[list[int]], pad_id: int):
    """ids (N, T) of each prompt and its reply, padded on the right with pad_id; mask (N, T - 1): 1 at
    the actions that wrote the reply; lengths (N,): the real tokens of each row."""
    lengths = [len(p) + len(r) for p, r in zip(prompts, replies)]
    T = max(lengths)
    ids = torch.full((len(prompts), T), pad_id, dtype=torch.long)  # (N, T)
    mask = torch.zeros(len(prompts), T - 1)  # (N, T - 1)
    for n, (prompt, reply) in enumerate(zip(prompts, replies)):
        ids[n, : lengths[n]] = torch.tensor(prompt + reply)
        mask[n, len(prompt) - 1 : lengths[n] - 1] = 1.0  # the action at t writes token t + 1
    return ids, mask, torch.tensor(lengths)


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) under softmax(logits / temperature): (B, T, V), (B, T) -> (B, T).

    The temperature the replies were sampled at, so the probabilities are those of the policy that
    actually chose them."""
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, T, V)
    return logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def score_tokens(model, ids: torch.Tensor, temperature: float, autocast, chunk: int = 64):
    """Each action's log-probability under `model`, (N, T - 1), and its value estimate (N, T - 1) when
    the model gives one (the policy with PPO's value head), else None. In eval mode, in chunks of
    rows; the same model on the same ids gives the same numbers, bit for bit."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logps, values = [], []
    for start in range(0, len(ids), chunk):
        x = ids[start : start + chunk].to(device)  # (n, T)
        with autocast():
            logits, value = model(x[:, :-1])  # (n, T - 1, V), (n, T - 1) or None
        logps.append(token_logprobs(logits, x[:, 1:], temperature).cpu())
        if value is not None:
            values.append(value.float().cpu())
    model.train(was_training)
    return torch.cat(logps), (torch.cat(values) if values else None)


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Generalised advantage estimation (Schulman et al., 2016) over each reply; all (N, T - 1).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V = 0 after a
    reply's last token (the episode ends there). Returns (advantages, returns = advantages + values),
    0 outside the mask.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros(rewards.shape[0])  # (N,)
    next_advantage = torch.zeros(rewards.shape[0])  # (N,)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]  # 0 in the padding: a fresh start
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def group_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """GRPO's advantages (Shao et al., 2024): each reward minus the mean of its group (the replies to
    the same prompt, consecutive rows), divided by the group's standard deviation; (N,) -> (N,).

    A group whose replies all scored the same teaches nothing: its advantages are 0 (float rounding
    in the mean would otherwise be divided by a standard deviation of almost 0).
    """
    groups = rewards.double().view(-1, group_size)  # (P, G)
    centred = groups - groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, unbiased=False, keepdim=True)  # the group's own spread, as a population
    return torch.where(std > 1e-8, centred / std.clamp_min(1e-8), 0.0).view(-1).to(rewards.dtype)


def whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x shifted and scaled to mean 0 and standard deviation 1 over the positions in mask (0 elsewhere)."""
    n = mask.sum().clamp_min(1)
    mean = (x * mask).sum() / n
    var = (((x - mean) * mask) ** 2).sum() / n
    return (x - mean) * torch.rsqrt(var + 1e-8) * mask


@dataclass
class Rollout:
    """Replies to learn from, all (N, ...) by row: ids (N, T); mask, old_logp (the policy's when it
    sampled), ref_logp (the frozen reference's), advantages and returns (PPO's value targets; zeros
    for GRPO): (N, T - 1); rewards (N,)."""

    ids: torch.Tensor
    mask: torch.Tensor
    old_logp: torch.Tensor
    ref_logp: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    rewards: torch.Tensor

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """These rows' tensors, in the order the loss reads them (rewards, known already, stay out)."""
        return tuple(getattr(self, f.name)[rows] for f in fields(self) if f.name != "rewards")

    @property
    def kl(self) -> torch.Tensor:
        """(N,): each reply's log-probability under the policy minus under the reference: a sample of
        KL(policy || reference) over whole replies, in nats."""
        return ((self.old_logp - self.ref_logp) * self.mask).sum(dim=1)

    @property
    def reply_tokens(self) -> torch.Tensor:
        """(N,): the tokens of each reply."""
        return self.mask.sum(dim=1)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Rollout":
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})
