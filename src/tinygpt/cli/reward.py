"""`tinygpt reward`: train a reward model (a trained run's trunk under a scalar head) on preference pairs."""

from __future__ import annotations

import os

from .args import add_overwrite, add_settings, given_settings


def add_parsers(sub):
    p = sub.add_parser(
        "reward", help="train a reward model on preference pairs (the Bradley-Terry loss)",
        description="Train a reward model that starts from RUN's transformer, with one score per text in place of "
        "next-token logits, on preference pairs: JSON Lines of {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} "
        "(plain text; or a prompt of messages and replies of assistant messages, written through RUN's chat "
        "template; or chosen and rejected as whole conversations, without a prompt). The loss is "
        "-log sigmoid(r_chosen - r_rejected); evaluations report it and the pairwise accuracy (val_accuracy: the "
        "share of held-out pairs whose chosen reply scores higher). The last --val-fraction of the pairs is held out.")
    p.add_argument("base", metavar="RUN", nargs="?", default="", help="the trained run to start from")
    p.add_argument("--data", default=None, help="preference pairs: a .jsonl file, or a folder of them")
    p.add_argument("--out", default=None, help="run directory (default: runs/<RUN's name>-reward)")
    p.add_argument("--config", default="", help="a YAML file of settings (flat, or under `settings:`)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the reward run saved in DIR")
    add_overwrite(p)
    add_settings(p, "reward")
    p.set_defaults(func=reward)


def reward(args) -> int:
    from ..app.launch import reward as train_reward
    from ..core.devices import process_start
    from ..store.rundir import RunDir

    settings = given_settings(args)
    for name in ("data", "out"):  # the verb's own arguments
        settings.pop(name, None)
    result = train_reward(args.base, data=args.data or "", out=args.out or "", resume=args.resume,
                          config=args.config, overwrite=args.overwrite, started_at=process_start(), **settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    last = RunDir(result.out_dir).read_metrics()[-1]
    split = "val" if last.get("val_accuracy") is not None else "train"
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}, {split} accuracy "
          f"{last[f'{split}_accuracy']:.4f}, {result.elapsed_s:.1f}s; saved in {result.out_dir}")
    print(f"next: tinygpt eval {result.out_dir}, or score texts from Python: tinygpt.load(RUN).model.score(ids, "
          "lengths)")
    return 0
