"""`tinygpt sft` (fine-tune a trained run on conversations, so that it answers in the chat format) and
`tinygpt chat` (talk to such a run in the terminal, or from a script on stdin)."""

from __future__ import annotations

import itertools
import os
import sys

from ..core.errors import TinyGPTError
from .args import (
    add_loading,
    add_overwrite,
    add_quantize,
    add_run,
    add_sampling,
    add_settings,
    given_settings,
    sampling_knobs,
)

CHAT_HELP = "/reset starts the conversation again, /quit (or Ctrl-D) ends it"


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
    add_overwrite(p)
    add_settings(p, "sft")
    p.set_defaults(func=sft)

    p = sub.add_parser(
        "chat", help="talk to a run fine-tuned by `tinygpt sft`, its replies streamed",
        description="A conversation with RUN in its chat format (RUN/chat_template.jinja): each reply is "
        f"streamed and ends where the model ends its turn. {CHAT_HELP}. When stdin is not a terminal, each "
        "line is one user message and each reply is printed on a line of its own. Reply k (from 0) is "
        "sampled with --seed + k.")
    add_run(p, kind="sft")
    p.add_argument("--system", default="", metavar="TEXT", help="a system message that opens the conversation")
    add_sampling(p)
    add_loading(p)
    add_quantize(p)
    p.set_defaults(func=chat)


def sft(args) -> int:
    from ..app.launch import sft as fine_tune
    from ..core.devices import process_start

    settings = given_settings(args)
    for name in ("data", "out"):  # the verb's own arguments
        settings.pop(name, None)
    result = fine_tune(args.base, data=args.data or "", out=args.out or "", resume=args.resume, config=args.config,
                       overwrite=args.overwrite, started_at=process_start(), **settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    val = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}{val}, {result.elapsed_s:.1f}s; "
          f"saved in {result.out_dir}")
    print(f"next: tinygpt chat {result.out_dir}   |   tinygpt eval {result.out_dir}")
    return 0


def chat(args) -> int:
    from ..app.run import load
    from ..generation.chat import reply_pieces, run_chat_format

    run = load(args.run, device=args.device, checkpoint=args.checkpoint, quantize=args.quantize)
    chat_format = run_chat_format(run)
    knobs = sampling_knobs(args)
    opening = [{"role": "system", "content": args.system}] if args.system else []
    if opening:  # a --system the model cannot read fails before the first message
        chat_format.tokenizer.encode(chat_format.render(opening))
    terminal = sys.stdin.isatty()
    if terminal:
        print(f"chatting with {args.run}; {CHAT_HELP}")
    history, replies, number = list(opening), 0, 0
    while (line := read_message(terminal)) is not None:
        number += 1
        message = line.strip()
        if message == "/quit":
            break
        if message == "/reset":
            history = list(opening)
            if terminal:
                print("(a new conversation)")
            continue
        if not message:
            continue
        asked = [*history, {"role": "user", "content": message}]
        seed = None if knobs["seed"] is None else knobs["seed"] + replies
        pieces = reply_pieces(run, asked, chat_format, **{**knobs, "seed": seed})
        try:
            first = next(pieces, "")  # an unknown word or character fails here, before anything is printed
        except TinyGPTError as e:
            if not terminal:
                raise TinyGPTError(f"stdin:{number}: {e}") from None
            print(f"tinygpt: error: {e}", file=sys.stderr)
            continue
        if terminal:
            sys.stdout.write("assistant> ")
        reply = ""
        for piece in itertools.chain([first], pieces):
            reply += piece
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        sys.stdout.flush()
        # A reply the model ended at once (empty) stays out of the history: a message must have text.
        history = [*asked, {"role": "assistant", "content": reply}] if reply else asked
        replies += 1
    return 0


def read_message(terminal: bool) -> str | None:
    """The next line of input, or None at its end (Ctrl-D in a terminal)."""
    if terminal:
        try:
            return input("you> ")
        except EOFError:
            print()
            return None
    line = sys.stdin.readline()
    return line or None
