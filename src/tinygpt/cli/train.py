"""`tinygpt train`: train a model (with no arguments, the nursery-rhyme GPT in seconds)."""

from __future__ import annotations

import os

from ..config import TRAIN_FIELDS
from .args import add_overwrite, add_settings, given_settings


def add_parser(sub):
    p = sub.add_parser("train", help="train a model (no arguments: the nursery-rhyme model, in seconds)",
                       description="Train a GPT. Settings come from the defaults below, then --preset, then "
                       "--config, then flags. With no --preset and no --config, `tinygpt train` and `tinygpt train "
                       "--data rhyme` use the rhyme preset (the tutorial's word-level model, `tinygpt presets`); "
                       "any other --data starts from the defaults below.")
    p.add_argument("--preset", default="", help="a named recipe (`tinygpt presets` lists them); default: none, "
                   "except rhyme as said above")
    p.add_argument("--config", default="", help="a YAML file of settings (flat, or under `settings:`)")
    p.add_argument("--data", default=None, help=TRAIN_FIELDS["data"].metadata["help"])
    p.add_argument("--out", default=None, help="run directory (default: runs/<data name>, e.g. runs/shakespeare)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the run saved in DIR")
    add_overwrite(p)
    add_settings(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..app.launch import train
    from ..core.devices import process_start
    from ..store.rundir import RunDir

    result = train(args.preset, args.config, resume=args.resume, overwrite=args.overwrite, started_at=process_start(),
                   **given_settings(args))
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    val = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}{val}, {result.elapsed_s:.1f}s; "
          f"saved in {result.out_dir}")
    use = {"encoder": "fill {} --prompt '... <mask> ...'", "encoder-decoder": "translate {} --source ..."}
    arch = RunDir(result.out_dir).read_config().model.arch
    print(f"next: tinygpt {use.get(arch, 'sample {} --prompt ...').format(result.out_dir)}   |   "
          f"tinygpt eval {result.out_dir}")
    return 0
