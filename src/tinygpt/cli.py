"""The `tinygpt` command: one verb per stage of a model's life.

    tinygpt train [--preset NAME] [--data FILE] [--config FILE] [--SETTING VALUE ...] [--resume DIR]
    tinygpt sample RUN --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] ...
    tinygpt eval RUN [--data FILE] [--json]
    tinygpt presets
    tinygpt lesson basics|attention
    tinygpt inspect [RUN] --prompt TEXT [--top-k K] [--all-positions] [--attention FILE.png]
                    [--neighbours TOKEN] [--embeddings FILE.png] [--json]
    tinygpt plot RUN [RUN ...] [-o FILE.png] [--x step|tokens|seconds] [--log]
    tinygpt explain [RUN] [--prompt TEXT]
    tinygpt import FOLDER|hf:NAME [--out DIR]

Every problem with the user's input ends in one line on stderr and exit status 2; Ctrl-C during
training saves first and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import MISSING

from .config import ALL_FIELDS
from .errors import TinyGPTError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) instead of the usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --n-emb must not silently mean --n-embd
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise TinyGPTError(f"{message} (see `{self.prog} --help`)")


def _add_setting_flags(parser: argparse.ArgumentParser):
    groups = {
        "model": parser.add_argument_group("model settings"),
        "train": parser.add_argument_group("training settings"),
    }
    from .config import MODEL_FIELDS

    for name, f in ALL_FIELDS.items():
        if name in ("data", "out"):
            continue  # added by hand, near the top of --help
        group = groups["model" if name in MODEL_FIELDS else "train"]
        flag = "--" + name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        choices = f.metadata.get("choices")
        help_text = f"{f.metadata['help']} (default: {default!r})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, choices=choices, metavar=name.upper(),
                               help=help_text + (f"; one of {', '.join(choices)}" if choices else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinygpt", description="Train small GPT language models from scratch, sample them, "
                     "evaluate them, and look inside.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tinygpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser("train", help="train a model (no arguments: the nursery-rhyme model, in seconds)",
                           description="Train a GPT. Settings come from --preset, then --config, then flags.")
    train.add_argument("--preset", default="", help="a named recipe (see `tinygpt presets`); default: rhyme")
    train.add_argument("--config", default="", help="a YAML file of settings (flat, or under `settings:`)")
    train.add_argument("--data", default=None, help="text to train on: a UTF-8 file, 'rhyme' or 'shakespeare'")
    train.add_argument("--out", default=None, help="run directory (default: runs/<preset or data name>)")
    train.add_argument("--resume", default="", metavar="DIR", help="continue the run saved in DIR")
    _add_setting_flags(train)

    sample = sub.add_parser("sample", help="generate text from a trained run",
                            description="Generate text from a trained run, streaming it as it is produced.")
    sample.add_argument("run", metavar="RUN", help="run directory written by `tinygpt train`")
    sample.add_argument("--prompt", default="", help="text to continue (default: start of a line)")
    sample.add_argument("--prompt-file", default=None, metavar="FILE",
                        help="continue the text of this UTF-8 file instead (long or multi-line prompts)")
    sample.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    sample.add_argument("--temperature", type=float, default=0.8,
                        help="randomness: 0 = greedy, 1 = the model's own distribution (default: 0.8)")
    sample.add_argument("--top-k", type=int, default=0, help="sample only among the k likeliest tokens (0 = off)")
    sample.add_argument("--top-p", type=float, default=1.0,
                        help="sample only among the likeliest tokens whose probabilities sum to p (1 = off)")
    sample.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="divide the logits of tokens already present by this (1 = off)")
    sample.add_argument("--num-samples", type=int, default=1, help="independent samples (default: 1)")
    sample.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    sample.add_argument("--stop", action="append", default=[], metavar="STRING",
                        help="end a sample when this string appears (repeatable)")
    sample.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    sample.add_argument("--checkpoint", default="best", choices=("best", "latest"),
                        help="weights to use: the best validation loss or the latest step (default: best)")
    sample.add_argument("--no-cache", action="store_true", help="re-run the whole context for every token")

    ev = sub.add_parser("eval", help="loss and bits per character over the whole validation split",
                        description="Exact loss over the whole validation split (or a whole file).")
    ev.add_argument("run", metavar="RUN", help="run directory written by `tinygpt train`")
    ev.add_argument("--data", default=None, help="evaluate on all of this file instead")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    ev.add_argument("--checkpoint", default="best", choices=("best", "latest"))

    imp = sub.add_parser("import", help="turn a GPT-2 checkpoint (Hugging Face layout) into a run directory",
                         description="Import GPT-2 weights, from a folder (config.json, model.safetensors, "
                                     "tokenizer.json) or from the Hugging Face Hub as hf:NAME, into a run "
                                     "directory to sample, inspect, evaluate or fine-tune (--init-from).")
    imp.add_argument("source", metavar="SOURCE", help="a folder, or hf:NAME (e.g. hf:openai-community/gpt2)")
    imp.add_argument("--out", default=None, help="run directory to write (default: runs/<name>)")

    sub.add_parser("presets", help="list the named recipes and the numbers they reach",
                   description="List the named recipes, a line each.")

    lesson = sub.add_parser("lesson", help="run a small lesson: basics (neurons, gradients) or attention",
                            description="Print a lesson step by step, with its real numbers.")
    lesson.add_argument("name", choices=("basics", "attention"), help="which lesson")

    default_run = "default: the nursery-rhyme model, trained once into the cache if missing"
    ins = sub.add_parser("inspect", help="look inside a trained run: tokens, next-token probabilities, attention, "
                         "embeddings", description="Show what a trained model makes of a prompt, as tables and "
                         "pictures.")
    ins.add_argument("run", metavar="RUN", nargs="?", default=None, help=f"run directory ({default_run})")
    ins.add_argument("--prompt", default=None, help="text to look at (default for the rhyme model: "
                     "'mary had a little')")
    ins.add_argument("--top-k", type=int, default=5, help="how many likeliest next tokens to list (default: 5)")
    ins.add_argument("--all-positions", action="store_true", help="list next tokens after every position, "
                     "not only the last")
    ins.add_argument("--attention", default="", metavar="FILE.png",
                     help="draw every layer x head attention map for the prompt into this picture")
    ins.add_argument("--neighbours", default="", metavar="TOKEN",
                     help="list the tokens whose embeddings are closest to TOKEN (cosine similarity)")
    ins.add_argument("--embeddings", default="", metavar="FILE.png",
                     help="draw the token embeddings projected to 2-D (PCA) into this picture")
    ins.add_argument("--json", action="store_true", help="print everything as one JSON object")
    ins.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    ins.add_argument("--checkpoint", default="best", choices=("best", "latest"))

    plot = sub.add_parser("plot", help="draw training and validation loss curves of one or more runs",
                          description="Draw the loss curves in each RUN's metrics.jsonl, overlaid in one picture.")
    plot.add_argument("runs", metavar="RUN", nargs="+", help="run directories written by `tinygpt train`")
    plot.add_argument("-o", "--out", default="loss.png", metavar="FILE.png", help="picture to write "
                      "(default: loss.png)")
    plot.add_argument("--x", default="step", choices=("step", "tokens", "seconds"),
                      help="horizontal axis: optimizer steps, training tokens seen, or seconds (default: step)")
    plot.add_argument("--log", action="store_true", help="logarithmic loss axis")
    plot.add_argument("--title", default="", help="title of the picture")

    exp = sub.add_parser("explain", help="walk through what a trained GPT does with a prompt, in plain words",
                         description="Follow one prompt through a trained GPT, stage by stage, with its real numbers.")
    exp.add_argument("run", metavar="RUN", nargs="?", default=None, help=f"run directory ({default_run})")
    exp.add_argument("--prompt", default=None, help="text to follow (default for the rhyme model: 'mary had a little')")
    exp.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    exp.add_argument("--checkpoint", default="best", choices=("best", "latest"))
    parser.commands = sub.choices  # name -> sub-parser, for suggestions on a mistyped flag
    return parser


def _unknown_arguments(parser, command: str | None, unknown: list[str]) -> str:
    """'unknown option --n-embed (did you mean --n-embd?)', pointing at the help that lists them."""
    import difflib

    sub = parser.commands.get(command, parser)
    known = [s for action in sub._actions for s in action.option_strings]
    flags = [u.split("=", 1)[0] for u in unknown if u.startswith("-")]
    if not flags:
        return f"unexpected argument(s) {' '.join(unknown)} (see `{sub.prog} --help`)"
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        hints.append(flag + (f" (did you mean {close[0]}?)" if close else ""))
    return f"unknown option {', '.join(hints)}; `{sub.prog} --help` lists them all"


# ----------------------------------------------------------------------------- commands

def cmd_train(args) -> int:
    from .devices import process_start
    from .presets import resolve
    from .trainer import Trainer

    overrides = {name: getattr(args, name) for name in ALL_FIELDS if getattr(args, name, None) is not None}
    model_cfg, train_cfg, out_dir, preset = resolve(args.preset, args.config, overrides, args.resume)
    result = Trainer(model_cfg, train_cfg, out_dir, resume=bool(args.resume), preset=preset,
                     started_at=process_start()).train()
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under torchrun only the first process reports
    val = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    print(f"done: step {result.step}, train loss {result.train_loss:.4f}{val}, {result.elapsed_s:.1f}s; "
          f"saved in {result.out_dir}")
    print(f"next: tinygpt sample {result.out_dir} --prompt ...   |   tinygpt eval {result.out_dir}")
    return 0


def cmd_sample(args) -> int:
    from .generate import SamplingConfig
    from .run import load

    if args.prompt_file is not None:
        if args.prompt:
            raise TinyGPTError("give the prompt with --prompt or --prompt-file, not both")
        from .data import read_text_file

        args.prompt = read_text_file(args.prompt_file, what="prompt file")
    run = load(args.run, device=args.device, checkpoint=args.checkpoint)
    common = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                  top_p=args.top_p, repetition_penalty=args.repetition_penalty, stop=args.stop,
                  use_cache=not args.no_cache)
    sep = " " if run.tokenizer.kind == "word" else ""
    # An unknown word or character, or a bad sampling knob, fails here, before anything is printed.
    run.start_ids(args.prompt)
    SamplingConfig(args.max_new_tokens, args.temperature, args.top_k, args.top_p, args.repetition_penalty,
                   args.stop).validate()
    if args.num_samples == 1:
        sys.stdout.write(args.prompt)
        run.generate(args.prompt, seed=args.seed, stream=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()),
                     **common)
        sys.stdout.write("\n")
        return 0
    texts = run.generate(args.prompt, num_samples=args.num_samples, seed=args.seed, **common)
    for i, text in enumerate(texts):
        print(f"--- sample {i + 1} ---")
        print(args.prompt + (text if args.prompt else text.lstrip(sep) if sep else text))
    return 0


def cmd_eval(args) -> int:
    from .run import load

    run = load(args.run, device=args.device, checkpoint=args.checkpoint)
    result = run.evaluate(data=args.data)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['split']} loss {result['val_loss']:.4f} over {result['tokens']:,} tokens; "
              f"{result['bits_per_char']:.4f} bits per character; perplexity {result['perplexity']:.2f}")
    return 0


def cmd_presets(args) -> int:
    from .presets import load_preset, preset_names

    names = preset_names()
    width = max(len(n) for n in names)
    pad = " " * (width + 2)
    for name in names:
        doc = load_preset(name)
        print(f"{name:<{width}}  {doc.get('description', '')}")
        print(f"{pad}reproduces: {doc.get('reproduces', '-')}")
        print(f"{pad}expect:     {doc.get('expect', '-')}")
    print("run one with: tinygpt train --preset NAME (with no preset, `tinygpt train` runs rhyme)")
    return 0


def cmd_import(args) -> int:
    from pathlib import Path

    from .hub import hub_name
    from .pretrained import import_gpt2

    repo = hub_name(args.source)
    if repo is not None:
        print(f"downloading {repo} from the Hugging Face Hub (or its cache) ...", flush=True)
    name = Path((repo or args.source).rstrip("/")).name or "imported"
    out = import_gpt2(args.source, args.out or Path("runs") / name)
    doc = json.loads((out / "config.json").read_text(encoding="utf-8"))
    m = doc["model"]
    print(f"imported {args.source}: {doc['num_params']:,} parameters ({m['n_layer']} layers, {m['n_head']} heads, "
          f"n_embd {m['n_embd']}, block_size {m['block_size']}), {m['vocab_size']:,} tokens; saved in {out}")
    print(f"next: tinygpt sample {out} --prompt ...   |   tinygpt train --init-from {out} --data FILE")
    return 0


def cmd_lesson(args) -> int:
    if args.name == "basics":
        from .lessons import basics as lesson
    else:
        from .lessons import attention as lesson
    lesson.run()
    return 0


def _run_and_prompt(args):
    """The run to look at (the cached rhyme model when none is named) and the prompt to use."""
    from .run import load
    from .viz.subject import DEFAULT_PROMPT, default_run

    prompt = args.prompt
    if args.run is None:
        run_dir, prompt = default_run(), DEFAULT_PROMPT if prompt is None else prompt
    elif prompt is None:
        raise TinyGPTError(f"say what to look at with --prompt TEXT (e.g. tinygpt {args.command} {args.run} "
                           "--prompt 'some text the model knows')")
    else:
        run_dir = args.run
    return load(run_dir, device=args.device, checkpoint=args.checkpoint), prompt


def cmd_inspect(args) -> int:
    from .viz.report import as_text, inspect_run

    run, prompt = _run_and_prompt(args)
    result = inspect_run(run, prompt, args.top_k, args.all_positions, args.attention, args.neighbours,
                         args.embeddings)
    print(json.dumps(result) if args.json else "\n".join(as_text(result)))
    return 0


def cmd_plot(args) -> int:
    from .viz.plots import plot_loss

    drawn = plot_loss(args.runs, args.out, x=args.x, log=args.log, title=args.title)
    print(f"drew {len(drawn['lines'])} curve(s) of {len(drawn['series'])} run(s) against {args.x} into {drawn['path']}")
    return 0


def cmd_explain(args) -> int:
    from .viz.explain import explain

    run, prompt = _run_and_prompt(args)
    explain(run, prompt)
    return 0


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "presets": cmd_presets,
            "lesson": cmd_lesson, "inspect": cmd_inspect, "plot": cmd_plot, "explain": cmd_explain,
            "import": cmd_import}


def main(argv=None) -> int:
    """Run `tinygpt ARGV...`; returns the exit status: 0, 2 for bad input, 130 when interrupted."""
    from .trainer import TrainingInterrupted

    try:
        parser = build_parser()
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            raise TinyGPTError(_unknown_arguments(parser, args.command, unknown))
        if args.command is None:
            build_parser().print_help()
            return EXIT_USAGE
        return COMMANDS[args.command](args)
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
