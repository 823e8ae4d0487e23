"""The `tinygpt` command: one verb per stage of a model's life, one module per verb group.

    tinygpt train [--preset NAME] [--data FILE] [--config FILE] [--SETTING VALUE ...] [--resume DIR]
    tinygpt prepare SOURCE --out DIR [--tokenizer char|word|bpe|FILE|hf:NAME] [--val-fraction F] ...
    tinygpt sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] ...
    tinygpt eval RUN [--data FILE] [--json]
    tinygpt inspect [RUN] --prompt TEXT [--top-k K] [--all-positions] [--attention FILE.png]
                    [--neighbours TOKEN] [--embeddings FILE.png] [--json]
    tinygpt inspect RUN --source TEXT --target TEXT --cross-attention FILE.png   (an encoder-decoder run)
    tinygpt plot RUN [RUN ...] [-o FILE.png] [--x step|tokens|seconds] [--log]
    tinygpt explain [RUN] [--prompt TEXT]
    tinygpt params [RUN | --preset NAME] [--json]
    tinygpt import FOLDER|hf:NAME [--out DIR]
    tinygpt export RUN --to hf|gguf [--out PATH] [--force]
    tinygpt sft BASE_RUN --data FILE.jsonl [--SETTING VALUE ...] [--resume DIR]
    tinygpt chat RUN [--system TEXT] [--temperature T] [--top-k K] ...
    tinygpt rl SFT_RUN --prompts FILE.jsonl --reward REWARD_RUN|module:function [--algorithm ppo|grpo] ...
    tinygpt reward RUN --data PAIRS.jsonl [--SETTING VALUE ...] [--resume DIR]
    tinygpt dpo SFT_RUN --data PAIRS.jsonl [--beta B] [--loss-type sigmoid|ipo] [--SETTING VALUE ...] [--resume DIR]
    tinygpt fill RUN --prompt "mary had a <mask> lamb" [--top-k K]
    tinygpt translate RUN [--source TEXT] [--num-beams N] [--temperature T] ...   (or sources on stdin)
    tinygpt demo assistant [--out DIR] [--seed N] [--quick]
    tinygpt serve RUN [RUN ...] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--cors ORIGIN]
    tinygpt presets
    tinygpt lesson NAME [--json] [--data FILE]     (NAME: basics, data, attention, norms, transformer)

    train.py    train                 sample.py   sample, eval
    data.py     prepare
    look.py     inspect, plot, explain, params
    recipes.py  import, export, presets, lesson
    chat.py     sft, chat             reward.py   reward
    rl.py       rl                    demo.py     demo assistant
    dpo.py      dpo
    encoders.py fill, translate
    serve.py    serve
    args.py     the parser and the arguments several verbs share

A verb module adds its sub-parsers with `add_parser(s)(sub)` and sets `func`, the function that
runs it. Every problem ends in one line on stderr, never a traceback: exit status 2 for a problem
with the user's input (a setting, a file, a run directory another process is writing), 1 when the
machine refused (a full or read-only disk, memory), and 130 for Ctrl-C at any moment, imports
included (training saves first). This module imports nothing heavy at its top, so that Ctrl-C
while PyTorch is still importing is caught here too.
"""

from __future__ import annotations

import sys

from ..core.errors import TinyGPTError, TrainingInterrupted, os_error_line

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser():
    from ..core.version import __version__
    from . import chat, data, demo, dpo, look, recipes, reward, rl, sample, serve, train
    from . import encoders as seq2seq
    from .args import Parser

    parser = Parser(prog="tinygpt", description="Train small GPT language models from scratch, sample them, "
                    "evaluate them, and look inside.")
    parser.add_argument("--version", action="version", version=f"tinygpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    train.add_parser(sub)
    data.add_parsers(sub)
    sample.add_parsers(sub)
    look.add_parsers(sub)
    recipes.add_parsers(sub)
    chat.add_parsers(sub)
    rl.add_parser(sub)
    reward.add_parsers(sub)
    dpo.add_parser(sub)
    demo.add_parsers(sub)
    seq2seq.add_parsers(sub)
    serve.add_parsers(sub)
    parser.commands = sub.choices  # name -> sub-parser, for suggestions on a mistyped flag
    return parser


def command() -> int:
    """The `tinygpt` executable and `python -m tinygpt`: `main` in a process of its own.

    Python's garbage collector walks every object it tracks, and PyTorch's import leaves about 170,000 of
    them. Freezing them once imported (`gc.freeze`: the collector leaves them alone from then on) takes
    them out of each full collection during the run, and freezing everything at the end out of the
    interpreter's own collections as it shuts down: a process that imported PyTorch then exits in 0.13 s
    instead of 0.55 s on this project's 2-core machine, whatever the command. Nothing else changes: files
    are still flushed and closed, `atexit` handlers still run. Only here, not in `main`, which tests and
    scripts call in a process that goes on (a frozen object is never collected).
    """
    import gc

    status = main(on_import=gc.freeze)
    gc.freeze()
    return status


def main(argv=None, on_import=None) -> int:
    """Run `tinygpt ARGV...`; returns the exit status: 0, 2 for bad input, 1 when the machine refused (disk,
    memory), 130 when interrupted. on_import: called once PyTorch is imported (`command`)."""
    try:
        return _run(argv, on_import)
    except TinyGPTError as e:
        return _say(f"tinygpt: error: {e}", EXIT_USAGE)
    except TrainingInterrupted as e:
        return _say(f"tinygpt: {e}", EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        return _say("\ntinygpt: interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:  # e.g. `tinygpt sample ... | head`
        return 0
    except OSError as e:
        if not e.errno:
            raise
        return _say(f"tinygpt: error: {os_error_line(e)}", EXIT_FAILED)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and not _out_of_memory(e):
            raise
        return _say("tinygpt: error: out of memory: the model or batch is too big for this machine; lower "
                    "--batch-size, --block-size or --n-embd (or --n-layer)", EXIT_FAILED)


def _run(argv, on_import=None) -> int:
    from .args import require_run, unknown_arguments

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise TinyGPTError(unknown_arguments(parser, args.command, unknown))
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _import_pytorch()
    if on_import is not None:
        on_import()
    require_run(args)
    return args.func(args)


def _import_pytorch():
    """Import PyTorch (every verb needs it) with Ctrl-C held back until the import is done, then raised. A
    KeyboardInterrupt inside numpy's import is swallowed by the `except` PyTorch puts around it, and the next
    import of numpy fails with a traceback (measured: Ctrl-C 0.4 s after the start of `tinygpt train`)."""
    import signal

    caught = []
    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job ignores Ctrl-C: leave it so
            previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
        else:
            previous = None
    except ValueError:  # main() called from another thread than the main one: signals are not ours to move
        previous = None
    try:
        import torch  # noqa: F401
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def _say(line: str, status: int) -> int:
    """Print the one line; a second Ctrl-C while it is printed still ends with it, not a traceback."""
    try:
        print(line, file=sys.stderr)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return status


def _out_of_memory(e: RuntimeError) -> bool:
    """PyTorch's allocation failures: torch.OutOfMemoryError on a GPU, a RuntimeError on the CPU."""
    text = str(e)
    return type(e).__name__ == "OutOfMemoryError" or "not enough memory" in text or "out of memory" in text
