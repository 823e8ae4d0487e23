"""Where models and lessons come from and go: `tinygpt presets` (the named recipes), `tinygpt import`
(GPT-2 checkpoints as runs), `tinygpt export` (runs for transformers and llama.cpp) and `tinygpt
lesson` (the teaching texts, runnable)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parsers(sub):
    p = sub.add_parser("import", help="turn a GPT-2 checkpoint (Hugging Face layout) into a run directory",
                       description="Import GPT-2 weights, from a folder (config.json, model.safetensors, "
                                   "tokenizer.json) or from the Hugging Face Hub as hf:NAME, into a run "
                                   "directory to sample, inspect, evaluate or fine-tune (--init-from).")
    p.add_argument("source", metavar="SOURCE", help="a folder, or hf:NAME (e.g. hf:openai-community/gpt2)")
    p.add_argument("--out", default=None, help="run directory to write (default: runs/<name>)")
    p.set_defaults(func=import_checkpoint)

    p = sub.add_parser("export", help="write a run for Hugging Face transformers (--to hf) or llama.cpp (--to gguf)",
                       description="Export a run: --to hf writes a folder that transformers' AutoModelForCausalLM "
                                   "and AutoTokenizer load (plain GPT-2 when the run fits it, otherwise with its own "
                                   "modeling file, trust_remote_code=True); --to gguf writes one GGUF file for "
                                   "llama.cpp (runs that fit its GPT-2 architecture). Same logits, same greedy tokens.")
    p.add_argument("run", metavar="RUN", help="run directory written by `tinygpt train`")
    p.add_argument("--to", required=True, metavar="FORMAT", help="hf or gguf")
    p.add_argument("--out", default=None, help="folder (hf) or .gguf file to write (default: beside the run, "
                                               "NAME-hf or NAME.gguf)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=export_run)

    p = sub.add_parser("presets", help="list the named recipes and the numbers they reach",
                       description="List the named recipes, a line each.")
    p.set_defaults(func=presets)

    from ..lessons import LESSONS

    width = max(len(lesson.name) for lesson in LESSONS)
    p = sub.add_parser("lesson", help=f"run a small lesson with the teaching texts' numbers: "
                       f"{', '.join(lesson.name for lesson in LESSONS)}",
                       description="Print a lesson step by step, with its real numbers. The lessons:\n"
                                   + "\n".join(f"  {lesson.name:<{width}}  {lesson.summary}" for lesson in LESSONS),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", metavar="NAME", choices=[lesson.name for lesson in LESSONS], help="which lesson")
    p.add_argument("--json", action="store_true", help="print the lesson's numbers as one JSON object instead")
    p.add_argument("--data", default=None, metavar="FILE",
                   help="the data lesson on your own text (a UTF-8 file) instead of tiny Shakespeare")
    p.set_defaults(func=lesson)


def presets(args) -> int:
    from ..config.presets import load_preset, preset_names

    names = preset_names()
    width = max(len(n) for n in names)
    pad = " " * (width + 2)
    for name in names:
        doc = load_preset(name)
        print(f"{name:<{width}}  {doc.get('description', '')}")
        print(f"{pad}reproduces: {doc.get('reproduces', '-')}")
        print(f"{pad}expect:     {doc.get('expect', '-')}")
        if doc.get("measured"):
            print(f"{pad}measured:   {doc['measured']}")
    print("run one with: tinygpt train --preset NAME (with no preset, `tinygpt train` runs rhyme)")
    return 0


def import_checkpoint(args) -> int:
    from ..convert.gpt2 import import_gpt2
    from ..core.hub import hub_name
    from ..store.rundir import RunDir

    repo = hub_name(args.source)
    if repo is not None:
        print(f"downloading {repo} from the Hugging Face Hub (or its cache) ...", flush=True)
    name = Path((repo or args.source).rstrip("/")).name or "imported"
    run = RunDir(import_gpt2(args.source, args.out or Path("runs") / name))
    config = run.read_config()
    m = config.model
    print(f"imported {args.source}: {config.num_params:,} parameters ({m.n_layer} layers, {m.n_head} heads, "
          f"n_embd {m.n_embd}, block_size {m.block_size}), {m.vocab_size:,} tokens; saved in {run}")
    print(f"next: tinygpt sample {run} --prompt ...   |   tinygpt train --init-from {run} --data FILE")
    return 0


def export_run(args) -> int:
    from ..convert.export import export

    done = export(args.run, args.to, args.out, args.force)
    if done.form == "gguf":
        print(f"exported {args.run} to {done.path} (GGUF, llama.cpp's gpt2 architecture, float32)")
    elif done.form == "gpt2":
        print(f"exported {args.run} to {done.path} as GPT2LMHeadModel: plain transformers, no custom code")
    else:
        print(f"exported {args.run} to {done.path} with its own modeling file (load with trust_remote_code=True), "
              f"because GPT-2 cannot hold: {'; '.join(done.reasons)}")
    for note in done.notes:
        print(f"note: {note}")
    return 0


def lesson(args) -> int:
    from ..lessons import as_data
    from ..lessons import lesson as named

    chosen = named(args.name)
    if args.json:
        print(json.dumps(as_data(chosen.run(out=lambda line: None, data=args.data))))
    else:
        chosen.run(data=args.data)
    return 0
