"""The rest of the Transformer: `tinygpt fill` (an encoder fills in <mask>s) and `tinygpt translate`
(an encoder-decoder writes a target for each source)."""

from __future__ import annotations

import sys

from ..core.errors import TinyGPTError
from .args import add_loading, add_run, seed_number

BAR = 30  # characters of the widest probability bar


def add_parsers(sub):
    p = sub.add_parser("fill", help="an encoder run: the likeliest tokens for each <mask> in a prompt",
                       description="Show the likeliest tokens, with probabilities, for each <mask> in the prompt, "
                       "read from both sides by an encoder run (tinygpt train --arch encoder).")
    add_run(p, kind="encoder")
    p.add_argument("--prompt", required=True, help="text with one or more <mask>, e.g. 'mary had a <mask> lamb'")
    p.add_argument("--top-k", type=int, default=5, help="how many tokens to list per mask (default: 5)")
    add_loading(p)
    p.set_defaults(func=fill)

    p = sub.add_parser("translate", help="an encoder-decoder run: a target for each source",
                       description="Translate with an encoder-decoder run (tinygpt train --arch encoder-decoder): "
                       "--source TEXT, or one source per line on stdin and one translation per line on stdout. "
                       "Greedy unless the sampling knobs or --num-beams say otherwise.")
    add_run(p, kind="encoder-decoder")
    p.add_argument("--source", default=None, help="the text to translate (default: read sources from stdin)")
    p.add_argument("--max-new-tokens", type=int, default=100, help="most target tokens (default: 100)")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default), 1 = the model's own "
                   "distribution")
    p.add_argument("--top-k", type=int, default=0, help="sample only among the k likeliest tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample only among the likeliest tokens whose "
                   "probabilities sum to p (1 = off)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, help="divide the logits of tokens already "
                   "written by this (1 = off)")
    p.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams (1 = greedy)")
    p.add_argument("--seed", type=seed_number, default=None, help="random seed, for repeatable samples")
    p.add_argument("--no-cache", action="store_true", help="re-run the whole target for every token")
    add_loading(p)
    p.set_defaults(func=translate)


def fill(args) -> int:
    from ..app.run import load

    run = load(args.run, device=args.device, checkpoint=args.checkpoint)
    rows = run.fill(args.prompt, args.top_k)
    for n, row in enumerate(rows, 1):
        print(f"<mask> {n} (token {row['position']}):")
        width = max(5, *(len(repr(x["token"])) for x in row["top"]))
        for x in row["top"]:
            bar = "#" * max(1 if x["prob"] >= 0.005 else 0, round(x["prob"] * BAR))
            print(f"  {x['token']!r:<{width}}  {x['prob']:.4f}  {bar}")
    return 0


def translate(args) -> int:
    from ..app.run import load

    run = load(args.run, device=args.device, checkpoint=args.checkpoint)
    if args.source is not None:
        sources = [args.source]
    else:
        sources = [line.rstrip("\n") for line in sys.stdin]
        if not sources:
            raise TinyGPTError("no sources: pass --source TEXT, or one source per line on stdin")
    knobs = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, repetition_penalty=args.repetition_penalty, num_beams=args.num_beams,
                 seed=args.seed, use_cache=not args.no_cache)
    for text in run.translate(sources, **knobs):
        print(text)
    return 0
