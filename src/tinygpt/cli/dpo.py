"""`tinygpt dpo`: Direct Preference Optimization of a chat model (a run of `tinygpt sft`) on preference
pairs, against the sft model frozen (objectives/dpo.py)."""

from __future__ import annotations

import os

from .args import add_overwrite, add_settings, given_settings


def add_parser(sub):
    from ..config.dpo import DPO_FIELDS

    p = sub.add_parser(
        "dpo", help="direct preference optimization of an sft run on preference pairs (no reward model)",
        description="Train SFT_RUN to prefer the chosen replies of preference pairs over the rejected ones, with "
        "no reward model and no sampling: JSON Lines of {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} (plain "
        "text; or messages, written through SFT_RUN's chat template), the files `tinygpt reward` reads. The loss is "
        "-log sigmoid(beta x ((log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected))), with pi_ref SFT_RUN "
        "frozen (TRL's DPOTrainer's; --loss-type ipo for IPO's). Evaluations report it and TRL's rewards/chosen, "
        "rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen and logps/rejected, on the held-out "
        "pairs (the last --val-fraction) as eval_rewards/...")
    p.add_argument("sft_run", metavar="SFT_RUN", nargs="?", default="", help="the sft run to train")
    p.add_argument("--data", default=None, help="preference pairs: a .jsonl file, or a folder of them")
    p.add_argument("--out", default=None, help="run directory (default: runs/<SFT_RUN's name>-dpo)")
    p.add_argument("--config", default="", help="a YAML file of training settings (flat, or under `settings:`)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the dpo run saved in DIR")
    add_overwrite(p)
    group = p.add_argument_group("direct preference optimization settings")
    for name, f in DPO_FIELDS.items():
        choices = f.metadata.get("choices")
        group.add_argument("--" + name.replace("_", "-"), dest=f"dpo_{name}", type=type(f.default), default=None,
                           choices=choices, metavar=None if choices else name.upper(),
                           help=f"{f.metadata['help']} (default: {f.default!r})")
    add_settings(p, "dpo")
    p.set_defaults(func=dpo)


def dpo(args) -> int:
    from ..app.launch import dpo as optimize
    from ..config.dpo import DPO_FIELDS
    from ..core.devices import process_start
    from ..store.rundir import RunDir

    settings = given_settings(args)
    for name in ("data", "out"):  # the verb's own arguments
        settings.pop(name, None)
    given = {name: getattr(args, f"dpo_{name}") for name in DPO_FIELDS}
    settings.update({name: value for name, value in given.items() if value is not None})
    result = optimize(args.sft_run, data=args.data or "", out=args.out or "", resume=args.resume, config=args.config,
                      overwrite=args.overwrite, started_at=process_start(), **settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    last = RunDir(result.out_dir).read_metrics()[-1]
    prefix, split = ("eval_", "held-out") if last.get("eval_rewards/margins") is not None else ("", "train")
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}, {split} accuracy "
          f"{last[prefix + 'rewards/accuracies']:.4f}, margin {last[prefix + 'rewards/margins']:.4f}, "
          f"{result.elapsed_s:.1f}s; saved in {result.out_dir}")
    print(f"next: tinygpt eval {result.out_dir}, or tinygpt chat {result.out_dir}")
    return 0
