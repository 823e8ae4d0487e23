"""`tinygpt rl`: reinforcement learning of a chat model (a run of `tinygpt sft`) against a reward,
with PPO or GRPO (objectives/rl.py)."""

from __future__ import annotations

import os

from .args import add_overwrite, add_settings, given_settings


def add_parser(sub):
    from ..config.rl import RL_FIELDS

    p = sub.add_parser(
        "rl", help="reinforcement learning of an sft run against a reward (PPO or GRPO)",
        description="Train SFT_RUN to write replies that a reward scores high: its replies to --prompts (JSON "
        "Lines of {\"prompt\": ...}, through the chat template) are scored by --reward and learnt from with PPO "
        "(value head, GAE, clipped objective) or GRPO (each reply against the others to its prompt). A KL "
        "penalty keeps it near SFT_RUN, which stays frozen. The last --val-fraction of the prompts is held out: "
        "each evaluation scores greedy replies to them, and model.safetensors keeps the best.")
    p.add_argument("sft_run", metavar="SFT_RUN", nargs="?", default="", help="the sft run to train")
    p.add_argument("--prompts", default=None, help="prompts: a .jsonl file, or a folder of them")
    p.add_argument("--out", default=None, help="run directory (default: runs/<SFT_RUN's name>-rl)")
    p.add_argument("--config", default="", help="a YAML file of training settings (flat, or under `settings:`)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the rl run saved in DIR")
    add_overwrite(p)
    group = p.add_argument_group("reinforcement learning settings")
    for name, f in RL_FIELDS.items():
        choices = f.metadata.get("choices")
        help_text = f"{f.metadata['help']} (default: {f.default!r})" if name != "reward" else f.metadata["help"]
        group.add_argument("--" + name.replace("_", "-"), dest=f"rl_{name}", type=type(f.default), default=None,
                           choices=choices, metavar=None if choices else name.upper(), help=help_text)
    add_settings(p, "rl")
    p.set_defaults(func=rl)


def rl(args) -> int:
    from ..app.launch import rl as reinforce
    from ..config.rl import RL_FIELDS
    from ..core.devices import process_start
    from ..store.rundir import RunDir

    settings = given_settings(args)
    for name in ("data", "out"):  # the verb's own arguments
        settings.pop(name, None)
    given = {name: getattr(args, f"rl_{name}") for name in RL_FIELDS}
    settings.update({name: value for name, value in given.items() if value is not None})
    result = reinforce(args.sft_run, prompts=args.prompts or "", out=args.out or "", resume=args.resume,
                       config=args.config, overwrite=args.overwrite, started_at=process_start(), **settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    last = RunDir(result.out_dir).read_metrics()[-1]
    sampled = f"reward {last['reward']:.3f}, kl {last['kl']:.4f}, " if last.get("reward") is not None else ""
    print(f"done: step {result.step}, {sampled}held-out reward {last['eval_reward']:.3f} (greedy), "
          f"{result.elapsed_s:.1f}s; saved in {result.out_dir}")
    print(f"next: tinygpt chat {result.out_dir}")
    return 0
