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
    encoders.py fill, translate
    serve.py    serve
    args.py     the parser and the arguments several verbs share

A verb module adds its sub-parsers with `add_parser(s)(sub)` and sets `func`, the function that
runs it. Every problem with the user's input ends in one line on stderr and exit status 2;
Ctrl-C during training saves first and exits with 130.
"""

from __future__ import annotations

import sys

from ..core.errors import TinyGPTError, TrainingInterrupted
from . import chat, data, demo, look, recipes, reward, rl, sample, serve, train
from . import encoders as seq2seq
from .args import Parser, require_run, unknown_arguments

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> Parser:
    from ..core.version import __version__

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
    demo.add_parsers(sub)
    seq2seq.add_parsers(sub)
    serve.add_parsers(sub)
    parser.commands = sub.choices  # name -> sub-parser, for suggestions on a mistyped flag
    return parser


def main(argv=None) -> int:
    """Run `tinygpt ARGV...`; returns the exit status: 0, 2 for bad input, 130 when interrupted."""
    try:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            raise TinyGPTError(unknown_arguments(parser, args.command, unknown))
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        require_run(args)
        return args.func(args)
    except TinyGPTError as e:
        print(f"tinygpt: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except TrainingInterrupted as e:
        print(f"tinygpt: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("\ntinygpt: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `tinygpt sample ... | head`
        return 0
