"""Looking inside: `tinygpt inspect` (tokens, probabilities, pictures), `tinygpt explain` (a prompt's
way through the model in words), `tinygpt params` (where the parameters are) and `tinygpt plot` (loss
curves of runs)."""

from __future__ import annotations

import json

from ..core.errors import TinyGPTError
from .args import add_loading, add_run


def add_parsers(sub):
    p = sub.add_parser("inspect", help="look inside a trained run: tokens, next-token probabilities, attention, "
                       "embeddings", description="Show what a trained model makes of a prompt, as tables and "
                       "pictures.")
    add_run(p, optional=True)
    p.add_argument("--prompt", default=None, help="text to look at (default for the rhyme model: "
                   "'mary had a little')")
    p.add_argument("--top-k", type=int, default=5, help="how many likeliest next tokens to list (an encoder: "
                   "tokens at each <mask>; default: 5)")
    p.add_argument("--all-positions", action="store_true", help="list next tokens after every position, "
                   "not only the last")
    p.add_argument("--attention", default="", metavar="FILE.png",
                   help="draw every layer x head attention map for the prompt into this picture")
    p.add_argument("--source", default=None, help="an encoder-decoder run: the source to look at (with --target)")
    p.add_argument("--target", default=None, help="an encoder-decoder run: the target written for --source")
    p.add_argument("--cross-attention", default="", metavar="FILE.png",
                   help="an encoder-decoder run: draw, per decoder layer and head, which source tokens each target "
                   "token read (with --source and --target)")
    p.add_argument("--neighbours", default="", metavar="TOKEN",
                   help="list the tokens whose embeddings are closest to TOKEN (cosine similarity)")
    p.add_argument("--embeddings", default="", metavar="FILE.png",
                   help="draw the token embeddings projected to 2-D (PCA) into this picture")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    add_chat(p)
    add_loading(p)
    p.set_defaults(func=inspect)

    p = sub.add_parser("plot", help="draw training and validation loss curves of one or more runs",
                       description="Draw the loss curves in each RUN's metrics.jsonl, overlaid in one picture.")
    p.add_argument("runs", metavar="RUN", nargs="+", help="run directories written by `tinygpt train`")
    p.add_argument("-o", "--out", default="loss.png", metavar="FILE.png", help="picture to write "
                   "(default: loss.png)")
    p.add_argument("--x", default="step", choices=("step", "tokens", "seconds"),
                   help="horizontal axis: optimizer steps, training tokens seen, or seconds (default: step)")
    p.add_argument("--log", action="store_true", help="logarithmic loss axis")
    p.add_argument("--title", default="", help="title of the picture")
    p.set_defaults(func=plot)

    p = sub.add_parser("explain", help="walk through what a trained GPT does with a prompt, in plain words",
                       description="Follow one prompt through a trained GPT, stage by stage, with its real numbers.")
    add_run(p, optional=True)
    p.add_argument("--prompt", default=None, help="text to follow (default for the rhyme model: 'mary had a little')")
    add_chat(p)
    add_loading(p)
    p.set_defaults(func=explain)


    p = sub.add_parser("params", help="where a model's parameters are: per component and per layer, against GPT-2 "
                       "and GPT-3", description="Count a model's parameters per component (embeddings, attention, "
                       "feed-forward, norms, head) and per layer, summing to the total, with each one's share; "
                       "then its scale against GPT-2 and GPT-3 and the data each was trained on.")
    add_run(p, optional=True)
    p.add_argument("--preset", default=None, metavar="NAME", help="count the model a preset builds, untrained "
                   "(e.g. lecture, 10.8M), instead of a run")
    p.add_argument("--json", action="store_true", help="print everything as one JSON object")
    p.set_defaults(func=params)


def add_chat(parser):
    parser.add_argument("--chat", action="store_true",
                        help="a chat run: look at the prompt as a user's message, written through the run's chat "
                        "template up to where the assistant's reply begins")


def _run_and_prompt(args):
    """The run to look at (the cached rhyme model when none is named) and the prompt to use."""
    from ..app.run import load
    from ..viz.subject import DEFAULT_PROMPT, default_run

    prompt = args.prompt
    if args.run is None:
        run_dir, prompt = default_run(), DEFAULT_PROMPT if prompt is None else prompt
    elif prompt is None:
        raise TinyGPTError(f"say what to look at with --prompt TEXT (e.g. tinygpt {args.command} {args.run} "
                           "--prompt 'some text the model knows')")
    else:
        run_dir = args.run
    run = load(run_dir, device=args.device, checkpoint=args.checkpoint)
    if args.chat:
        from ..generation.chat import run_chat_format

        prompt = run_chat_format(run).render([{"role": "user", "content": prompt}], add_generation_prompt=True)
    return run, prompt


def inspect(args) -> int:
    from ..viz.report import as_text, inspect_cross_attention, inspect_run

    if args.cross_attention or args.source is not None or args.target is not None:
        return cross_attention(args, inspect_cross_attention)
    run, prompt = _run_and_prompt(args)
    result = inspect_run(run, prompt, args.top_k, args.all_positions, args.attention, args.neighbours,
                         args.embeddings)
    print(json.dumps(result) if args.json else "\n".join(as_text(result)))
    return 0


def cross_attention(args, inspect_cross_attention) -> int:
    from ..app.run import load

    if not args.cross_attention or args.source is None or args.target is None or args.run is None:
        raise TinyGPTError("the cross-attention picture needs all of RUN, --source TEXT, --target TEXT and "
                           "--cross-attention FILE.png")
    run = load(args.run, device=args.device, checkpoint=args.checkpoint)
    result = inspect_cross_attention(run, args.source, args.target, args.cross_attention)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"drew {result['layers']} layers x {result['heads']} heads of cross-attention ({len(result['rows'])} "
              f"target x {len(result['columns'])} source tokens) into {result['file']}")
    return 0


def plot(args) -> int:
    from ..training.curves import plot_loss

    drawn = plot_loss(args.runs, args.out, x=args.x, log=args.log, title=args.title)
    print(f"drew {len(drawn['lines'])} curve(s) of {len(drawn['series'])} run(s) against {args.x} into {drawn['path']}")
    return 0


def explain(args) -> int:
    from ..viz.explain import explain as walk_through

    run, prompt = _run_and_prompt(args)
    walk_through(run, prompt)
    return 0


def _model_to_count(args):
    """(what it is, model config, train config, tokens in its text) of a run, or of a preset's model."""
    if args.preset is None:
        from ..store.rundir import RunDir
        from ..viz.subject import default_run

        run_dir = default_run() if args.run is None else args.run
        config = RunDir(run_dir).read_config()
        return str(run_dir), config.model, config.train, (config.data or {}).get("tokens")
    if args.run is not None:
        raise TinyGPTError(f"count either a run or a preset, not both: tinygpt params {args.run}, or "
                           f"tinygpt params --preset {args.preset}")
    from ..app.settings import resolve
    from ..data import encode_corpus, read_corpus
    from ..tokenizers import train_tokenizer

    model_cfg, train_cfg, _, _ = resolve(args.preset)
    if train_cfg.data == "shakespeare" and train_cfg.tokenizer == "char":  # known: no need to read the text
        from ..data.corpus import SHAKESPEARE_CHAR_VOCAB, SHAKESPEARE_CHARACTERS

        model_cfg.vocab_size = SHAKESPEARE_CHAR_VOCAB
        return f"preset {args.preset}", model_cfg, train_cfg, SHAKESPEARE_CHARACTERS
    text = read_corpus(train_cfg.data, train_cfg.tokenizer, train_cfg.sentence_end)
    tokenizer = train_tokenizer(train_cfg.tokenizer, text, train_cfg.vocab_size, train_cfg.sentence_end)
    model_cfg.vocab_size = tokenizer.vocab_size
    return f"preset {args.preset}", model_cfg, train_cfg, len(encode_corpus(tokenizer, text))


def params(args) -> int:
    from ..model import build_model
    from ..viz.params import as_text, count_parameters, scale

    what, model_cfg, train_cfg, data_tokens = _model_to_count(args)
    counts = count_parameters(build_model(model_cfg), tied=model_cfg.tie_weights)
    training = (train_cfg.max_iters, train_cfg.batch_size * train_cfg.grad_accum, model_cfg.block_size)
    compared = scale(counts["total"], training if train_cfg.max_iters else None, data_tokens)
    m = model_cfg
    shape = ("a bigram table" if m.arch == "bigram" else
             f"{m.n_layer} layers, {m.n_head} heads, n_embd {m.n_embd}, block_size {m.block_size}")
    title = f"{what}: {counts['total']:,} parameters ({shape}, vocabulary {m.vocab_size:,})"
    if args.json:
        print(json.dumps({"what": what, **counts, "scale": compared}))
    else:
        print("\n".join(as_text(title, counts, compared)))
    return 0
