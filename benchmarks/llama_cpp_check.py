"""The exports run elsewhere with tinygpt's numbers: llama.cpp on the GGUF file, transformers on the folder.

    pip install llama-cpp-python          # builds llama.cpp from source (~30 min on 2 busy cores)
    python benchmarks/llama_cpp_check.py  # trains four small runs on tiny Shakespeare (~2 min), checks them

Each run is trained here, exported with `tinygpt export --to hf` and, when llama.cpp's gpt2
architecture holds it, `--to gguf`. For every prompt it compares:

- transformers: the logits of the prompt and of random ids filling the context (max abs difference),
  and `model.generate(do_sample=False)` against `tinygpt sample --temperature 0`'s tokens;
- llama.cpp (through llama-cpp-python): its tokenization of the prompt against tinygpt's ids, the
  logits of every prompt position, and greedy tokens: llama.cpp's own argmax, one `eval` per
  token, against tinygpt's, up to the end of the context.

Results go to benchmarks/results/llama_cpp_check.json. Without llama-cpp-python the llama.cpp part
is recorded as not run, with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = ["ROMEO:\nWhat say", "First Citizen:\nBefore we proceed", "KING HENRY:\nO, my lord", "\n"]
UNICODE = "JULIET:\nÇa va, mon cœur? 日本 \u2014"  # byte-level BPE only: tiny Shakespeare's characters are ASCII
COMMON = dict(data="shakespeare", n_layer=2, n_head=4, n_embd=64, block_size=64, batch_size=16, eval_interval=100,
              eval_max_tokens=4096, threads=1, progress=False, sample_tokens=0, seed=7)
RUNS = {  # what each shows
    "char-gpt2-folded-scale": dict(tokenizer="char", bias=False, tie_weights=True, activation="gelu_tanh",
                                   attn_scale="n_embd", max_iters=300),  # zero biases, the scale in the queries
    "bpe-gpt2": dict(tokenizer="bpe", vocab_size=512, bias=True, qkv_bias=True, head_bias=False,
                     activation="gelu_tanh", tie_weights=True, max_iters=300),  # GPT-2's own settings
    "char-exact-gelu": dict(tokenizer="char", bias=False, tie_weights=True, activation="gelu",
                            max_iters=300),  # nanoGPT's: llama.cpp computes GELU's tanh approximation
    "char-speedrun": dict(preset="speedrun-cpu", time_budget="", n_embd=64, max_iters=300),  # custom code only
}


def prompts(run) -> list[str]:
    return PROMPTS + ([UNICODE] if run.tokenizer.kind == "bpe" else [])


def tinygpt_greedy(run, ids: list[int], n: int) -> str:
    """What `tinygpt sample --temperature 0` prints for the prompt `ids`: the prompt and n greedy tokens."""
    prompt = run.decode(ids)
    done = subprocess.run([sys.executable, "-m", "tinygpt", "sample", str(run.dir), "--prompt", prompt,
                           "--temperature", "0", "--max-new-tokens", str(n)], capture_output=True, text=True,
                          check=True)
    return done.stdout.removesuffix("\n")


def check_hf(run, folder: Path, form: str) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    remote = {"trust_remote_code": True} if form == "custom" else {}
    model = AutoModelForCausalLM.from_pretrained(folder, **remote).eval()
    tok = AutoTokenizer.from_pretrained(folder, **remote)
    cfg = run.model_config
    g = torch.Generator().manual_seed(0)
    filled = torch.randint(0, cfg.vocab_size, (4, cfg.block_size), generator=g)
    diffs, same = [], []
    with torch.no_grad():
        diffs.append((run.model(filled)[0] - model(filled).logits).abs().max().item())
        for prompt in prompts(run):
            ids = run.encode(prompt)
            x = torch.tensor([ids])
            diffs.append((run.model(x)[0] - model(x).logits).abs().max().item())
            n = cfg.block_size - len(ids)
            out = model.generate(x, max_new_tokens=n, do_sample=False)
            same.append(tok(prompt)["input_ids"] == ids and tok.decode(out[0]) == tinygpt_greedy(run, ids, n))
    return {"form": form, "max_abs_logit_diff": max(diffs), "tokens_and_greedy_text_equal": all(same),
            "prompts": len(same)}


def check_llama(run, gguf_path: Path) -> dict:
    try:
        import llama_cpp
    except ImportError as e:
        return {"ran": False, "reason": f"llama-cpp-python is not installed ({e})"}
    import numpy as np
    import torch

    cfg = run.model_config
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=cfg.block_size, n_batch=cfg.block_size,
                          logits_all=True, n_threads=1, verbose=False)
    rows = []
    for prompt in prompts(run):
        ids = run.encode(prompt)
        theirs_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        scores = np.array(llm.scores[: len(ids)])  # (T, vocab_size)
        with torch.no_grad():
            ours = run.model(torch.tensor([ids]))[0][0].numpy()
        diff = float(np.abs(scores - ours).max())
        generated = []
        while llm.n_tokens < cfg.block_size:  # llama.cpp's own greedy choice, one token at a time
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            generated.append(nxt)
            llm.eval([nxt])
        text = llm.detokenize(ids + generated, special=True).decode("utf-8", errors="replace")
        expected = tinygpt_greedy(run, ids, len(generated))
        first_diff = next((i for i, (a, b) in enumerate(zip(text, expected)) if a != b), None)
        rows.append({"prompt": prompt, "tokenization_equal": theirs_ids == ids, "new_tokens": len(generated),
                     "greedy_text_equal": text == expected, "first_differing_char": first_diff,
                     "max_abs_logit_diff": diff})
    return {"ran": True, "llama_cpp_python": llama_cpp.__version__, "prompts": rows,
            "all_tokens_equal": all(r["greedy_text_equal"] and r["tokenization_equal"] for r in rows),
            "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in rows)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="*", default=list(RUNS), choices=list(RUNS), help="which runs to check")
    parser.add_argument("--out", default=str(HERE / "results" / "llama_cpp_check.json"))
    args = parser.parse_args()

    import torch

    import tinygpt

    torch.set_num_threads(1)
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other work",
               "command": "python benchmarks/llama_cpp_check.py", "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.runs:
            t0 = time.perf_counter()
            out = Path(tmp) / name
            tinygpt.train(out=str(out), **dict(COMMON, **RUNS[name]))
            run = tinygpt.load(out, device="cpu")
            hf = tinygpt.export(out, to="hf", out=Path(tmp) / f"{name}-hf")
            entry = {"settings": RUNS[name], "params": run.config.num_params,
                     "transformers": check_hf(run, hf.path, hf.form)}
            try:
                done = tinygpt.export(out, to="gguf", out=Path(tmp) / f"{name}.gguf")
                entry["gguf_notes"] = done.notes
                entry["llama_cpp"] = check_llama(run, done.path)
            except tinygpt.TinyGPTError as e:
                entry["gguf_refused"] = str(e).split(": ", 1)[1]
            entry["wall_s"] = round(time.perf_counter() - t0, 1)
            results["runs"][name] = entry
            print(name, json.dumps(entry, ensure_ascii=False), flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
