"""What several verbs share: the one-line-error parser, and arguments declared once."""

from __future__ import annotations

import argparse
import difflib
from dataclasses import MISSING

from ..core.errors import TinyGPTError

DEFAULT_RUN = "default: the nursery-rhyme model, trained once into the cache if missing"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) instead of the usage block."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --n-emb must not silently mean --n-embd
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise TinyGPTError(f"{message} (see `{self.prog} --help`)")


# The command that makes each kind of run a verb reads: its RUN's help, and the hint when RUN is missing.
MAKES = {
    "gpt": ("tinygpt train", "tinygpt train --data TEXT --out {run}"),
    "sft": ("tinygpt sft", "tinygpt sft BASE_RUN --data CHATS.jsonl --out {run}"),
    "encoder": ("tinygpt train --arch encoder", "tinygpt train --arch encoder --data TEXT --out {run}"),
    "encoder-decoder": ("tinygpt train --arch encoder-decoder",
                        "tinygpt train --arch encoder-decoder --data PAIRS --out {run}"),
    "any": ("tinygpt train, sft, reward or rl", "tinygpt train --data TEXT --out {run}"),
}


def add_run(parser, optional: bool = False, kind: str = "any"):
    """RUN: the run directory a verb reads (optional: the cached rhyme model when left out); `kind` names
    the runs it reads (MAKES), for its help and for the hint when RUN does not exist."""
    made_by, make = MAKES[kind]
    if optional:
        parser.add_argument("run", metavar="RUN", nargs="?", default=None, help=f"run directory ({DEFAULT_RUN})")
    else:
        parser.add_argument("run", metavar="RUN", help=f"run directory written by `{made_by}`")
        parser.set_defaults(make_run=make)


def require_run(args):
    """A RUN that does not exist is one line naming the command that makes the kind of run the verb reads."""
    from ..store.rundir import RunDir

    run = getattr(args, "run", None)
    if isinstance(run, str) and getattr(args, "make_run", None):
        RunDir(run).require(make=args.make_run.format(run=run))


def port_number(text: str) -> int:
    """argparse's `type` for a TCP port: a whole number from 0 (any free port) to 65535; anything else is the
    parser's one-line error (for `tinygpt serve --port`)."""
    return _whole_number(text, 0, 65535, "a port")


def thread_count(text: str) -> int:
    """argparse's `type` for a number of CPU threads: 1 to 1024, as `--threads` of training takes (past that
    PyTorch spawns every thread asked for, and 10**6 of them crash the process)."""
    return _whole_number(text, 1, 1024, "a thread count")


def seed_number(text: str) -> int:
    """argparse's `type` for --seed: a whole number that fits torch's 64-bit generators."""
    return _whole_number(text, -(2**63), 2**63 - 1, "a seed")


def _whole_number(text: str, least: int, most: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} is a whole number from {least} to {most}, got {text!r}") from None
    if not least <= value <= most:
        raise argparse.ArgumentTypeError(f"{what} is a whole number from {least} to {most}, got {value}")
    return value


def add_overwrite(parser):
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the run already in the run directory (otherwise a new run there is refused)")


def add_loading(parser):
    """--device and --checkpoint: where to compute and which weights of the run to load."""
    parser.add_argument("--device", default="auto", help="cuda, mps or cpu (default: auto)")
    parser.add_argument("--checkpoint", default="best", choices=("best", "latest"),
                        help="weights to use: the best validation loss or the latest step (default: best)")


def add_quantize(parser):
    """--quantize: the weights' storage while generating and scoring (model/quantize.py)."""
    parser.add_argument("--quantize", default="none", choices=("none", "int8"),
                        help="int8: store the linear layers' weights as int8 with a scale per row, a quarter of "
                        "the bytes to read per token (faster sampling on a CPU; the loss it costs is in the "
                        "docs) (default: none, the float32 weights as trained)")


def add_sampling(parser):
    """The sampling knobs, with Hugging Face's names, for `sample` and `chat`."""
    parser.add_argument("--max-new-tokens", type=int, default=200, help="tokens to generate (default: 200)")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="randomness: 0 = greedy, 1 = the model's own distribution (default: 0.8)")
    parser.add_argument("--top-k", type=int, default=0, help="sample only among the k likeliest tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=1.0,
                        help="sample only among the likeliest tokens whose probabilities sum to p (1 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="divide the logits of tokens already present by this (1 = off)")
    parser.add_argument("--seed", type=seed_number, default=None, help="random seed, for repeatable samples")
    parser.add_argument("--no-cache", action="store_true", help="re-run the whole context for every token")
    add_context_shift(parser)


def add_context_shift(parser):
    """--context-shift: what a text longer than the model's context reads (generation/decoder.py)."""
    parser.add_argument("--context-shift", action="store_true",
                        help="when a text fills the model's context (block_size tokens), keep its newer half and "
                        "go on with the KV cache, instead of re-running the last block_size tokens for every new "
                        "token: many times faster, a little less context")


def context(args) -> str:
    """The `context` argument of `Run.generate` and of the server's Engine that --context-shift sets."""
    return "shift" if args.context_shift else "exact"


def sampling_knobs(args) -> dict:
    """The keyword arguments of `Run.generate`/`Run.stream` that `add_sampling`'s flags set."""
    return dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                use_cache=not args.no_cache, context=context(args))


def add_settings(parser, verb: str = "train"):
    """A flag for every setting `tinygpt VERB` accepts (`n_embd` -> `--n-embd`), with its help and default:
    every model and training setting for train; the fine-tuning verbs take their model and tokenizer from
    the run they start from, so they list only the settings they may change."""
    from ..config import ALL_FIELDS, MODEL_FIELDS
    from ..config.precedence import accepted_settings

    accepted = accepted_settings(verb)
    groups = {"model": parser.add_argument_group("model settings"),
              "train": parser.add_argument_group("training settings"),
              "lora": parser.add_argument_group("LoRA settings (fine-tuning: adapters beside frozen weights)")}
    for name, f in ALL_FIELDS.items():
        if name in ("data", "out") or name not in accepted:
            continue  # data and out are added by hand, near the top of --help
        group = groups["model" if name in MODEL_FIELDS else "lora" if name.startswith("lora_") else "train"]
        flag = "--" + name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        choices = f.metadata.get("choices")
        help_text = f"{f.metadata['help']} (default: {default!r})"
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=name, default=None, choices=choices, metavar=name.upper(),
                               help=help_text + (f"; one of {', '.join(choices)}" if choices else ""))


def given_settings(args) -> dict:
    """The settings the user set on the command line (the rest come from presets and defaults)."""
    from ..config import ALL_FIELDS

    return {name: getattr(args, name) for name in ALL_FIELDS if getattr(args, name, None) is not None}


def not_here(command: str | None, flag: str) -> str:
    """Why a setting's flag is not one of `command`'s (a fine-tuning verb), or ''."""
    from ..config import ALL_FIELDS
    from ..config.precedence import LORA, WRITES_TEXT, accepted_settings

    name = flag.lstrip("-").replace("-", "_")
    if command not in ("sft", "reward", "rl", "dpo") or name not in ALL_FIELDS or name in accepted_settings(command):
        return ""
    if name in WRITES_TEXT:
        return f"a reward model scores text and writes none; leave out {flag}"
    if name == "window_schedule":
        return (f"{flag} shortens the windows `tinygpt train` cuts from a text; `tinygpt {command}` trains on whole "
                "examples, so leave it out")
    if name in LORA:
        return (f"a reward model trains its new scoring head whole, and LoRA adapts a language model (train "
                f"--init-from, sft, dpo, rl); leave out {flag}")
    return (f"{flag} is not a setting of `tinygpt {command}`: the model's shape and tokenizer come from the run it "
            "starts from")


def unknown_arguments(parser, command: str | None, unknown: list[str]) -> str:
    """'unknown option --n-embed (did you mean --n-embd?)', pointing at the help that lists them."""
    sub = parser.commands.get(command, parser)
    known = [s for action in sub._actions for s in action.option_strings]
    flags = [u.split("=", 1)[0] for u in unknown if u.startswith("-")]
    if not flags:
        return f"unexpected argument(s) {' '.join(unknown)} (see `{sub.prog} --help`)"
    for flag in flags:
        if reason := not_here(command, flag):
            return reason
    hints = []
    for flag in flags:
        close = difflib.get_close_matches(flag, known, n=1)
        hints.append(flag + (f" (did you mean {close[0]}?)" if close else ""))
    return f"unknown option {', '.join(hints)}; `{sub.prog} --help` lists them all"
