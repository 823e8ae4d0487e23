"""`tinygpt sft`: fine-tune a trained run on conversations, so that it answers in the chat format."""

from __future__ import annotations

import os

from ..errors import TinyGPTError
from ..rundir import RunDir
from .args import add_settings, given_settings


def add_parsers(sub):
    p = sub.add_parser(
        "sft", help="supervised fine-tuning of a trained run on conversations (the loss: the assistant's replies)",
        description="Fine-tune BASE_RUN on conversations: JSON Lines of {\"messages\": [{\"role\": \"system\"|\"user\""
        "|\"assistant\", \"content\": ...}, ...]} or {\"prompt\": ..., \"completion\": ...}. The run gets the chat "
        "tokens <|system|> <|user|> <|assistant|> <|end|> and RUN/chat_template.jinja; only the assistant's tokens "
        "are learnt. A conversation longer than the context keeps its turns up to the last reply that fits; one "
        "whose first reply does not fit is refused. The last --val-fraction of the conversations is held out.")
    p.add_argument("base", metavar="BASE_RUN", nargs="?", default="", help="the trained run to fine-tune")
    p.add_argument("--data", default=None, help="conversations: a .jsonl file, or a folder of them")
    p.add_argument("--out", default=None, help="run directory (default: runs/<BASE_RUN's name>-sft)")
    p.add_argument("--config", default="", help="a YAML file of settings (flat, or under `settings:`)")
    p.add_argument("--resume", default="", metavar="DIR", help="continue the sft run saved in DIR")
    add_settings(p)
    p.set_defaults(func=sft)


def sft(args) -> int:
    from ..training.devices import process_start
    from ..training.sft import sft as fine_tune

    settings = given_settings(args)
    for name in ("data", "out"):  # the verb's own arguments
        settings.pop(name, None)
    if "init_from" in settings:
        raise TinyGPTError("name the run to fine-tune as BASE_RUN (tinygpt sft BASE_RUN --data FILE), not --init-from")
    result = fine_tune(args.base, data=args.data or "", out=args.out or "", resume=args.resume, config=args.config,
                       started_at=process_start(), **settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    val = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}{val}, {result.elapsed_s:.1f}s; "
          f"saved in {result.out_dir}")
    print(f"next: tinygpt sample {result.out_dir} --prompt TEXT, the conversation written as "
          f"{RunDir(result.out_dir).chat_template_path} writes it")
    return 0
