"""`tinygpt train`: train a model (with no arguments, the nursery-rhyme GPT in seconds)."""

from __future__ import annotations

import os

from .args import add_settings, given_settings


def add_parser(sub):
    p = sub.add_parser("train", help="train a model (no arguments: the nursery-rhyme model, in seconds)",
                       description="Train a GPT. Settings come from --preset, then --config, then flags.")
    p.add_argument("--preset", default="", help="a named recipe (see `tinygpt presets`); default: rhyme")
    p.add_argument("--config", default="", help="a YAML file of settings (flat, or under `settings:`)")
    p.add_argument("--data", default=None, help="text to train on: a UTF-8 file, 'rhyme' or 'shakespeare' "
                   "(--arch encoder-decoder: pairs, a .jsonl or TSV file, or 'dates')")
    p.add_argument("--out", default=None, help="run directory (default: runs/<preset or data name>)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the run saved in DIR")
    add_settings(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..config.resolve import resolve
    from ..training import Trainer
    from ..training.devices import process_start

    model_cfg, train_cfg, out_dir, preset = resolve(args.preset, args.config, given_settings(args), args.resume)
    result = Trainer(model_cfg, train_cfg, out_dir, resume=bool(args.resume), preset=preset,
                     started_at=process_start()).train()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    val = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}{val}, {result.elapsed_s:.1f}s; "
          f"saved in {result.out_dir}")
    use = {"encoder": "fill {} --prompt '... <mask> ...'", "encoder-decoder": "translate {} --source ..."}
    print(f"next: tinygpt {use.get(model_cfg.arch, 'sample {} --prompt ...').format(result.out_dir)}   |   "
          f"tinygpt eval {result.out_dir}")
    return 0
