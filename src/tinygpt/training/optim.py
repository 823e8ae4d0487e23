"""Optimizers and the learning-rate schedule.

- AdamW with weight decay on 2-D tensors only (matrices and embeddings decay; biases and norm
  gains do not), as in GPT-2 and nanoGPT.
- Muon for the 2-D weight matrices inside the blocks, AdamW for everything else (embeddings, head,
  biases, gains). Muon replaces each update by the nearest (semi-)orthogonal matrix, computed with a
  few Newton-Schulz iterations, which makes every direction of a matrix learn at a similar speed.
- The schedule is a multiplier on every group's base rate, a function of the step (warmup) and of
  the fraction of training done, which is counted in steps or, with a time budget, in seconds.
"""

from __future__ import annotations

import math

import torch
from torch.optim.adamw import adamw as adamw_update

from ..config import TrainConfig
from ..core.sharding import is_sharded, shard_like


class LeanOptimizer:
    """Not a torch.optim.Optimizer, but what the trainer needs of one: `param_groups`, per-parameter
    `state`, `zero_grad`, and `state_dict`/`load_state_dict` in torch.optim's format (so checkpoints
    look the same). torch's learning-rate schedulers do not attach to it: the schedule is `lr_factor`.

    Why not subclass torch.optim.Optimizer: its methods are wrapped to keep TorchDynamo out of them,
    and the first call imports TorchDynamo, which costs 1.0 s and 70 MB on this project's 2-core
    machine: a fifth of the memory of a small CPU run and 5% of speedrun-cpu's 20 s budget. The
    arithmetic of the update is still PyTorch's own (AdamW below calls torch.optim.adamw.adamw).
    """

    def __init__(self, params, defaults: dict):
        groups = list(params)
        if not groups:
            raise ValueError("the optimizer got no parameters")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.defaults = defaults
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[torch.Tensor, dict] = {}

    def params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self, set_to_none: bool = True):
        for p in self.params():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [index, ...]}]}, as torch.optim."""
        index = {id(p): i for i, p in enumerate(self.params())}
        groups = [{**{k: v for k, v in g.items() if k != "params"}, "params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        state = {index[id(p)]: dict(s) for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict):
        groups = saved["param_groups"]
        if [len(g["params"]) for g in groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved parameter groups do not match this model's")
        for group, saved_group in zip(self.param_groups, groups):
            # Hyperparameters (lr, betas, ...) come back; the kernel choice ("fused") stays this run's.
            group.update({k: v for k, v in saved_group.items() if k in group and k not in ("params", "fused")})
        fused = {id(p): bool(g.get("fused")) for g in self.param_groups for p in g["params"]}
        params = self.params()
        self.state = {}
        for i, s in saved["state"].items():
            p = params[int(i)]
            self.state[p] = {k: self._placed(p, k, v, fused[id(p)]) for k, v in s.items()}

    @staticmethod
    def _placed(p: torch.Tensor, key: str, value, fused: bool):
        """A copy of a saved state value on the parameter's device; `step` stays float32 (torch.optim's rule)."""
        if not torch.is_tensor(value):
            return value
        value = value.detach().clone()  # never share moments with whatever the state came from
        if key == "step":  # the fused kernel reads it on the parameter's device, the others on the CPU
            return value.to(device=p.device if fused else "cpu", dtype=torch.float32)
        value = value.to(dtype=p.dtype if value.is_floating_point() else value.dtype)
        if is_sharded(p) and value.shape == p.shape:  # FSDP: the whole saved moment, cut like its parameter
            return shard_like(value, p)
        return value.to(device=p.device)


class AdamW(LeanOptimizer):
    """AdamW (decoupled weight decay) with PyTorch's update kernels, fused where the device has one (a
    LeanOptimizer, not torch.optim.AdamW: see there).

    Each parameter's state holds its step count, a 0-d tensor, as in torch.optim. The counts of the tensors
    a step first meets are views of one tensor, so the fused path advances them all with one add instead
    of `_foreach_add_`'s loop over them (on a CPU, 80 us a step for the rhyme model's 27 tensors: 3% of its
    step). Checkpoints hold them as separate tensors, as before.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.01,
                 fused: bool = False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, fused=fused))

    def _start(self, params: list[torch.Tensor], fused: bool):
        """Zero moments for parameters seen for the first time; their step counts views of one tensor (one
        per device: the fused kernel reads a parameter's count on the parameter's device, the others on the CPU)."""
        by_device: dict[torch.device, list[torch.Tensor]] = {}
        for p in params:
            by_device.setdefault(p.device if fused else torch.device("cpu"), []).append(p)
        for device, same in by_device.items():
            counts = torch.zeros(len(same), dtype=torch.float32, device=device)
            for p, count in zip(same, counts):
                self.state[p] = {
                    "step": count,  # a 0-d view of counts
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    @staticmethod
    def _advance(steps: list[torch.Tensor]):
        """Add 1 to every step count: one add when they are exactly the views of one tensor (`_start`)."""
        counts = steps[0]._base
        if counts is not None and counts.numel() == len(steps) and all(s._base is counts for s in steps):
            counts.add_(1)
        else:
            torch._foreach_add_(steps, 1)

    def state_dict(self) -> dict:
        saved = super().state_dict()
        for state in saved["state"].values():  # views of one tensor: saved as tensors of their own
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].clone()
        return saved

    def load_state_dict(self, saved: dict):
        super().load_state_dict(saved)
        for group in self.param_groups:  # the restored counts of a group become views of one tensor again
            states = [self.state.get(p) for p in group["params"]]
            if not states or any(s is None or not torch.is_tensor(s.get("step")) for s in states):
                continue
            if len({(s["step"].device, s["step"].dtype) for s in states}) == 1:
                counts = torch.stack([s["step"] for s in states])
                for s, count in zip(states, counts):
                    s["step"] = count

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            fresh = [p for p in group["params"] if p.grad is not None and p not in self.state]
            if fresh:
                self._start(fresh, group["fused"])
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self.state[p] for p in params]
            grads = [p.grad for p in params]
            exp_avgs = [s["exp_avg"] for s in states]
            exp_avg_sqs = [s["exp_avg_sq"] for s in states]
            steps = [s["step"] for s in states]
            beta1, beta2 = group["betas"]
            if group["fused"] and len({(p.device, p.dtype) for p in params}) == 1:
                # The two kernels torch.optim's fused path ends in, called directly: the same update, without
                # its per-call grouping and checks (a third of the step of a model as small as the rhyme one).
                self._advance(steps)
                torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=group["lr"],
                                    beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                                    maximize=False)
                continue
            adamw_update(
                params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=False if group["fused"] else None,
                fused=group["fused"] or None, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def newton_schulz(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximately orthogonalise a matrix: U V^T of its SVD, without computing an SVD.

    A quintic iteration whose coefficients are tuned to push every singular value towards ~1
    quickly (they land in roughly [0.7, 1.2], which works as well as exactly 1 in practice).
    On CUDA it runs in bfloat16 (fast on tensor cores); on a CPU float32 is much faster.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16) if g.is_cuda else g.float()  # (..., rows, cols): one matrix or a stack
    transposed = x.size(-2) > x.size(-1)
    if transposed:  # iterate on the wide orientation: the Gram matrix is the smaller one
        x = x.mT
    # Spectral norm <= Frobenius norm <= 1: inside the basin of convergence.
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    shape = x.shape
    x = x.reshape(-1, *shape[-2:])  # (n, r, c): a stack, for the batched products
    for _ in range(steps):
        gram = x @ x.mT  # (n, r, r)
        # a x + (b gram + c gram^2) x, as two calls that scale and add inside the product (no passes of their own)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # (n, r, r)
        x = torch.baddbmm(x, poly, x, beta=a)  # (n, r, c)
    x = x.reshape(shape)
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(LeanOptimizer):
    """MomentUm Orthogonalized by Newton-schulz, for 2-D weight matrices only."""

    def __init__(self, params, lr=0.02, momentum=0.95, weight_decay=0.0, nesterov=True, ns_steps=5):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                                      ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.ndim != 2:
                    raise ValueError(f"Muon only optimises 2-D matrices, got shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            # Matrices of one shape are orthogonalised together, as one stack: the same numbers, but
            # a few batched products instead of ~25 small kernels per matrix (what a GPU waits on).
            by_shape: dict[torch.Size, list[torch.Tensor]] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(p.shape, []).append(p)
            for same in by_shape.values():
                directions = []
                for p in same:
                    state = self.state.setdefault(p, {})
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)
                    buf = state["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - group["momentum"])  # exponential moving average of gradients
                    directions.append(p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf)
                updates = newton_schulz(torch.stack(directions), group["ns_steps"])  # (n, rows, cols)
                for p, update in zip(same, updates):
                    # Orthogonal updates have unit singular values; scale so tall matrices move as much as wide.
                    scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(update, alpha=-group["lr"] * scale)


class OptimizerSet:
    """Several optimizers stepped together (Muon for matrices + AdamW for the rest)."""

    def __init__(self, optimizers: list[LeanOptimizer]):
        self.optimizers = optimizers

    @property
    def param_groups(self):
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self):
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True):
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dicts(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dicts(self, states: list[dict]):
        if len(states) != len(self.optimizers):
            raise ValueError("checkpoint was saved with a different optimizer")
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device_type: str) -> OptimizerSet:
    """Group the parameters and build the optimizer(s) that `cfg.optimizer` names."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    use_muon = cfg.optimizer == "muon"
    # The blocks' matrices, also where the model sits inside the module trained (`Objective.bind`).
    muon = [p for n, p in params.items() if use_muon and p.ndim == 2 and ".blocks." in f".{n}"]
    muon_ids = {id(p) for p in muon}
    rest = [(n, p) for n, p in params.items() if id(p) not in muon_ids]
    # embedding_lr: the tables get a rate of their own. Each step moves only the rows of the tokens in the
    # batch, by gradients much smaller than a matrix's, so a short run wants them faster (speedrun-cpu: 10x).
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)} if cfg.embedding_lr else set()
    decay = [p for n, p in rest if p.ndim >= 2 and id(p) not in tables]
    no_decay = [p for n, p in rest if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr},
        {"params": [p for n, p in rest if id(p) in tables], "weight_decay": cfg.weight_decay,
         "base_lr": cfg.embedding_lr},
    ]
    groups = [g for g in groups if g["params"]]
    # The fused kernel updates every tensor in one pass: about 4x less optimizer time on a CPU too.
    extra = {"fused": True} if device_type in ("cuda", "cpu") else {}
    optimizers: list[LeanOptimizer] = [AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                             weight_decay=cfg.weight_decay, **extra)]
    if muon:
        optimizers.append(Muon([{"params": muon, "base_lr": cfg.muon_lr}], lr=cfg.muon_lr,
                               momentum=cfg.muon_momentum))
    return OptimizerSet(optimizers)


def lr_factor(cfg: TrainConfig, step: int, progress: float) -> float:
    """Multiplier on each group's base rate at `step`, with `progress` in [0, 1] of training done.

    constant: 1 after warmup. cosine: half a cosine from 1 down to min_lr/lr over the steps after
    warmup (nanoGPT's schedule). wsd: warmup, stable at 1, then linear decay to min_lr/lr over the
    last `cooldown_frac` of training.
    """
    if step < cfg.warmup_iters:
        return (step + 1) / (cfg.warmup_iters + 1)
    floor = cfg.min_lr / cfg.lr if cfg.lr else 0.0
    progress = min(max(progress, 0.0), 1.0)
    if cfg.lr_schedule == "constant":
        return 1.0
    if cfg.lr_schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    stable_until = 1.0 - cfg.cooldown_frac
    if progress <= stable_until:
        return 1.0
    return 1.0 - (1.0 - floor) * (progress - stable_until) / max(cfg.cooldown_frac, 1e-9)


def set_lr(optimizer: OptimizerSet, factor: float) -> float:
    """Apply the schedule; returns the AdamW rate (what the logs call `lr`)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
