"""Is the nanogpt-cpu preset nanoGPT's recipe? Train both from the same weights on the same batches.

    python benchmarks/nanogpt_equivalence.py --nanogpt-dir $NANOGPT_DIR            # 2000 steps, ~2 min
    python benchmarks/nanogpt_equivalence.py --steps 300 --json equivalence.json

Seed-to-seed spread hides small differences between two implementations of one recipe: five
seeds of each differ by ~0.005 in validation loss. So this script removes the seeds. It builds
tinygpt's model, optimizer and schedule from the `nanogpt-cpu` preset, and nanoGPT's `GPT` and
`configure_optimizers` from the checkout's own `model.py` (imported, not copied), copies tinygpt's
initial weights into nanoGPT's model, and trains both on the same batches: tinygpt's sampler,
drawn once per step and fed to both. nanoGPT's learning rate follows its documented schedule
(linear warmup over 100 iterations as (it + 1) / 101, then cosine from 1e-3 to 1e-4 at
lr_decay_iters), written out here from its description; tinygpt's comes from its own `lr_factor`.
Both clip gradients at 1.0.

It prints both losses and the largest weight difference every --every steps, and at the end both
models' loss over the whole validation split (tinygpt's exact pass: consecutive windows of
block_size, every target once). If the two implementations agree, the losses match to float32
rounding all the way and so do the final validation losses.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from tinygpt.config import build_configs
from tinygpt.config.presets import load_preset
from tinygpt.data import eval_windows, load_corpus, random_batch, split_ids
from tinygpt.model import build_model
from tinygpt.tokenizers import train_tokenizer
from tinygpt.training.losses import split_loss
from tinygpt.training.optim import build_optimizer, lr_factor, set_lr

# tinygpt's parameter names -> nanoGPT's (the same tensors, in the same layout).
RENAMES = [("tok_emb.", "transformer.wte."), ("pos_emb.", "transformer.wpe."), ("blocks.", "transformer.h."),
           (".ln1.", ".ln_1."), (".ln2.", ".ln_2."), ("attn.qkv.", "attn.c_attn."), ("attn.proj.", "attn.c_proj."),
           ("mlp.fc.", "mlp.c_fc."), ("mlp.proj.", "mlp.c_proj."), ("ln_f.", "transformer.ln_f.")]


def nanogpt_name(name: str) -> str:
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name


def nanogpt_lr(it: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    """nanoGPT's documented schedule: linear warmup, then half a cosine down to min_lr."""
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


@torch.no_grad()
def nanogpt_split_loss(model, data: torch.Tensor, block_size: int) -> tuple[float, int]:
    """nanoGPT's model scored on the same windows as tinygpt's exact pass.

    Its forward returns every position's logits only when given targets, so targets go in too.
    """
    model.eval()
    total, count = 0.0, 0
    for x_all, y_all in eval_windows(data, block_size):
        for i in range(0, len(x_all), 16):
            x, y = x_all[i : i + 16], y_all[i : i + 16]  # (b, T)
            logits, _ = model(x, y)  # (b, T, V)
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    model.train()
    return total, count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nanogpt-dir", default=None, help="a nanoGPT checkout (default: $NANOGPT_DIR)")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000, the recipe's)")
    parser.add_argument("--every", type=int, default=250, help="print every this many steps (default 250)")
    parser.add_argument("--seed", type=int, default=1337, help="initial weights and batches (default 1337)")
    parser.add_argument("--json", metavar="OUT", help="also write the trajectory and final losses here")
    args = parser.parse_args(argv)

    nanogpt_dir = Path(args.nanogpt_dir or os.environ.get("NANOGPT_DIR", "")).expanduser()
    if not (nanogpt_dir / "model.py").is_file():
        print("nanogpt_equivalence: error: pass --nanogpt-dir (or set NANOGPT_DIR) to a nanoGPT checkout",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(nanogpt_dir))
    from model import GPT, GPTConfig  # nanoGPT's own model.py

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    model_cfg, cfg = build_configs(load_preset("nanogpt-cpu")["settings"])
    text = load_corpus(cfg.data)
    tokenizer = train_tokenizer(cfg.tokenizer, text)
    splits = split_ids(tokenizer.encode(text), cfg.val_fraction, model_cfg.block_size)
    model_cfg.vocab_size = tokenizer.vocab_size
    block = model_cfg.block_size

    torch.manual_seed(args.seed)
    ours = build_model(model_cfg)
    theirs = GPT(GPTConfig(block_size=block, vocab_size=model_cfg.vocab_size, n_layer=model_cfg.n_layer,
                           n_head=model_cfg.n_head, n_embd=model_cfg.n_embd, dropout=model_cfg.dropout,
                           bias=model_cfg.bias))
    weights = {nanogpt_name(n): p.detach().clone() for n, p in ours.state_dict().items()}
    weights["lm_head.weight"] = weights["transformer.wte.weight"]  # tied, as in both models
    theirs.load_state_dict(weights, strict=True)

    opt_ours = build_optimizer(ours, cfg, "cpu")
    opt_theirs = theirs.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), "cpu")
    gen = torch.Generator().manual_seed(args.seed)
    pairs = [(p, dict(theirs.named_parameters())[nanogpt_name(n)]) for n, p in ours.named_parameters()]

    print(f"{'step':>5} {'lr tinygpt':>11} {'lr nanoGPT':>11} {'loss tinygpt':>13} {'loss nanoGPT':>13} "
          f"{'max |dw|':>9}")
    trajectory = []
    for step in range(args.steps):
        x, y = random_batch(splits.train, cfg.batch_size, block, gen)  # (B, T), fed to both
        progress = (step - cfg.warmup_iters) / max(cfg.max_iters - cfg.warmup_iters, 1)
        lr_ours = set_lr(opt_ours, lr_factor(cfg, step, progress))
        lr_theirs = nanogpt_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, cfg.max_iters)
        for group in opt_theirs.param_groups:
            group["lr"] = lr_theirs
        losses = []
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            _, loss = model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        if (step + 1) % args.every == 0 or step == 0 or step == args.steps - 1:
            dw = max((a - b).abs().max().item() for a, b in pairs)
            trajectory.append({"step": step + 1, "lr": [lr_ours, lr_theirs], "loss": losses, "max_weight_diff": dw})
            print(f"{step + 1:>5} {lr_ours:>11.4e} {lr_theirs:>11.4e} {losses[0]:>13.6f} {losses[1]:>13.6f} {dw:>9.1e}",
                  flush=True)

    total, count = split_loss(ours, splits.val, block, "cpu")
    val_ours = total / count
    total, count = nanogpt_split_loss(theirs, splits.val, block)
    val_theirs = total / count
    print(f"whole validation split ({count:,} targets) after {args.steps} steps: tinygpt {val_ours:.4f}, "
          f"nanoGPT {val_theirs:.4f} (difference {val_ours - val_theirs:+.1e})")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "seed": args.seed, "trajectory": trajectory,
                                               "val_loss": {"tinygpt": val_ours, "nanogpt": val_theirs},
                                               "torch": torch.__version__}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
