"""tinygpt's DPO against TRL's DPOTrainer (and its SFT against SFTTrainer): the same model, data and beta.

    python benchmarks/dpo_trl.py                 # ~1 min on 2 cores; needs trl (pip install 'tinygpt[test]')
    python benchmarks/dpo_trl.py --keep runs/dpo-trl

A tiny character-level GPT is trained, fine-tuned by `tinygpt sft`, then by `tinygpt dpo` for a few
steps, so the policy differs from its reference (at the first step of a DPO run the two are the same
model, every reward is 0 and the loss is log 2 on both sides, which would compare nothing). Both runs
are exported with `tinygpt export --to hf`. TRL's DPOTrainer gets the exported dpo run as its model and
the exported sft run as its ref_model, float32, dropout off, and computes the loss of its first step on
one batch holding every pair (its collated batch through `compute_loss`: the number the first optimizer
step follows, unrounded, with the metrics it logs). tinygpt computes the loss of the same batch and the
same metrics (objectives/dpo.py). They must agree to 1e-4, for the sigmoid loss, for IPO, and for the
sigmoid loss with the SFT term (tinygpt's sft_weight 1; TRL's loss_type ["sigmoid", "sft"]).
The same for SFT: the sft run's loss on 15 conversations in the prompt-completion form, by `tinygpt
sft`'s objective (the assistant's tokens and `<|end|>`) and by TRL's SFTTrainer (completion_only_loss).

Where the two cannot agree, and why:
- Plain-text pairs: TRL appends the tokenizer's EOS to every plain reply (here `<|end|>`, the exported
  run's EOS) and scores it; tinygpt scores a plain reply as written, as `tinygpt reward` does. So a plain
  pair agrees only when its replies already end with the EOS text; `plain_with_eos` below shows that,
  `plain` shows the difference (one more token in each reply's log-probability on TRL's side).
- Conversational pairs agree token for token: TRL's completion is where the tokenized prompt (with the
  generation prompt, `<|assistant|>`) and prompt + reply diverge, the reply's text and `<|end|>`;
  tinygpt's scored tokens are the assistant's after `<|assistant|>`, its `<|end|>` included. A template
  that writes text after `<|end|>` (a newline) would be scored by TRL and not by tinygpt.
- Long sequences: TRL keeps the start (truncation_mode keep_start) at max_length (1024 by default);
  tinygpt keeps the first block_size + 1 tokens. The pairs here fit both.
- The model must export as a plain GPT2LMHeadModel (no head bias here): TRL's fused LM head reads the
  backbone's hidden states (`model.base_model`), which the custom-code form (modeling_tinygpt.py, one
  module with no separate backbone) does not expose; TRL fails there with an AttributeError.
- TRL's logged training metrics are means over the steps since the last log; tinygpt's metrics.jsonl
  records evaluations of the model at a step. For one step on one batch they are the same numbers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4
METRICS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
           "logps/rejected")
TINY = dict(tokenizer="char", n_layer=2, n_head=2, n_embd=32, block_size=48, batch_size=8, threads=1,
            progress=False, sample_tokens=0, dropout=0.0, head_bias=False)


def pairs_of(kind: str) -> list[dict]:
    """Twelve preference pairs: the chosen reply holds "lamb" where the rejected holds "snow"."""
    pairs = []
    for prompt in ("mary had a", "it was", "the lamb"):
        for word in ("little", "white", "went", "sure"):
            chosen, rejected = f" {word} lamb", f" {word} snow"
            if kind == "conversational":
                pairs.append({"prompt": [{"role": "user", "content": prompt}],
                              "chosen": [{"role": "assistant", "content": chosen.strip()}],
                              "rejected": [{"role": "assistant", "content": rejected.strip()}]})
            else:
                end = "<|end|>" if kind == "plain_with_eos" else ""
                pairs.append({"prompt": prompt, "chosen": chosen + end, "rejected": rejected + end})
    return pairs


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make_runs(folder: Path) -> tuple[Path, Path]:
    """A base run, its sft run (with the chat template), and a dpo run of a few steps from it."""
    import tinygpt
    from tinygpt.data import rhyme_text

    (folder / "rhyme.txt").write_text(rhyme_text() * 3, encoding="utf-8")
    tinygpt.train(data=str(folder / "rhyme.txt"), out=str(folder / "base"), max_iters=60, eval_interval=60, **TINY)
    chats = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": f"{w} lamb"}]}
             for p in ("mary had a", "it was", "the lamb") for w in ("little", "white", "went", "sure")]
    tinygpt.sft(str(folder / "base"), data=str(write_jsonl(folder / "chats.jsonl", chats)), out=str(folder / "sft"),
                max_iters=30, eval_interval=30, warmup_iters=0, lr=3e-3, val_fraction=0.0,
                **{k: v for k, v in TINY.items() if k not in ("tokenizer", "n_layer", "n_head", "n_embd",
                                                             "block_size")})
    data = write_jsonl(folder / "train_pairs.jsonl", pairs_of("conversational"))
    tinygpt.dpo(str(folder / "sft"), str(data), out=str(folder / "dpo"), max_iters=5, eval_interval=5,
                warmup_iters=0, lr=3e-3, val_fraction=0.0, batch_size=8, threads=1, progress=False, sample_tokens=0)
    for run in ("sft", "dpo"):
        tinygpt.export(str(folder / run), to="hf", out=str(folder / f"{run}-hf"))
    return folder / "sft", folder / "dpo"


def tinygpt_side(sft: Path, dpo: Path, data: Path, beta: float, loss_type: str) -> dict:
    """tinygpt's loss on one batch of every pair of `data` (the dpo run's model against the sft run's), and
    the metrics under TRL's names."""
    import torch

    import tinygpt
    from tinygpt.config import TrainConfig
    from tinygpt.config.dpo import DPOConfig
    from tinygpt.objectives.dpo import DirectPreference
    from tinygpt.store.rundir import RunDir
    from tinygpt.training.runtime import Runtime

    cfg = TrainConfig(data=str(data), init_from=str(sft), val_fraction=0.0, batch_size=1)
    policy, reference = tinygpt.load(dpo).model, tinygpt.load(sft).model
    loss_type, _, sft_term = loss_type.partition("+")  # "sigmoid+sft": the SFT term with weight 1
    settings = DPOConfig(beta=beta, loss_type=loss_type, sft_weight=1.0 if sft_term else 0.0)
    objective = DirectPreference.prepare(cfg, settings, policy.config.block_size, RunDir(data.parent / "unused"))
    runtime = Runtime.local(torch.device("cpu"))
    objective.score_reference(reference, runtime)
    every = torch.arange(objective.n_train)
    with torch.no_grad():
        loss = objective.loss(policy.eval(), objective.take(every)).item()
    found = objective.pair_stats(policy, every, runtime)
    return {"loss": loss, **{name: found[name] for name in METRICS}}


def trl_side(sft_hf: Path, dpo_hf: Path, pairs: list[dict], beta: float, loss_type: str, out: Path) -> dict:
    """TRL's DPOTrainer's first-step loss on one batch of every pair, and the metrics it logs for it."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    load = dict(dtype=torch.float32, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(dpo_hf, **load)
    reference = AutoModelForCausalLM.from_pretrained(sft_hf, **load)
    tokenizer = AutoTokenizer.from_pretrained(dpo_hf)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = DPOConfig(output_dir=str(out), beta=beta, loss_type=loss_type.split("+"),
                     per_device_train_batch_size=len(pairs), max_steps=1, learning_rate=0.0, report_to=[],
                     use_cpu=True, bf16=False, fp16=False, disable_dropout=True, dataloader_num_workers=0,
                     save_strategy="no", logging_steps=1, seed=0)
    trainer = DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=Dataset.from_list(pairs),
                         processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    logged = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    return {"loss": loss, **{name: logged[name] for name in METRICS}}


def sft_side_by_side(folder: Path) -> dict:
    """The sft run's loss on its own conversations (prompt and completion, conversational) by tinygpt (the
    assistant's tokens, objectives/sft.py) and by TRL's SFTTrainer (completion-only loss), one batch of all."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    import tinygpt
    from tinygpt.config import TrainConfig
    from tinygpt.objectives.sft import SupervisedFineTuning, reply_loss
    from tinygpt.store.rundir import RunDir
    from tinygpt.training.runtime import Runtime

    rows = [{"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": f"{w} lamb"}]}
            for p in ("mary had a", "it was", "the lamb") for w in ("little", "white", "went", "sure", "snow")]
    data = write_jsonl(folder / "prompt_completion.jsonl", rows)
    run = tinygpt.load(folder / "sft")
    cfg = TrainConfig(data=str(data), init_from=str(folder / "sft"), val_fraction=0.0, batch_size=1)
    objective = SupervisedFineTuning.prepare(cfg, run.model_config.block_size, RunDir(folder / "unused"))
    total, count = reply_loss(run.model, objective.train_x, objective.train_y, Runtime.local(torch.device("cpu")))

    model = AutoModelForCausalLM.from_pretrained(folder / "sft-hf", dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder / "sft-hf")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    args = SFTConfig(output_dir=str(folder / "trl-sft"), per_device_train_batch_size=len(rows), max_steps=1,
                     learning_rate=0.0, report_to=[], use_cpu=True, bf16=False, fp16=False, save_strategy="no",
                     completion_only_loss=True, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        theirs = trainer.compute_loss(trainer.model, batch).item()
    ours = total / count
    return {"conversations": len(rows), "tinygpt": ours, "trl": theirs, "max_abs_difference": abs(ours - theirs),
            "agree": abs(ours - theirs) <= TOLERANCE}


def compare(folder: Path) -> dict:
    """Every case: (pairs kind, loss type) -> both sides' numbers, the largest difference, agreed or not."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    sft, dpo = make_runs(folder)
    cases = {}
    for kind, loss_type, beta in (("conversational", "sigmoid", 0.1), ("conversational", "ipo", 0.5),
                                  ("conversational", "sigmoid+sft", 0.1), ("plain_with_eos", "sigmoid", 0.1),
                                  ("plain", "sigmoid", 0.1)):
        pairs = pairs_of(kind)
        data = write_jsonl(folder / f"{kind}.jsonl", pairs)
        ours = tinygpt_side(sft, dpo, data, beta, loss_type)
        theirs = trl_side(folder / "sft-hf", folder / "dpo-hf", pairs, beta, loss_type, folder / "trl")
        worst = max(abs(ours[k] - theirs[k]) for k in ours)
        cases[f"{kind}/{loss_type}"] = {"beta": beta, "pairs": len(pairs), "tinygpt": ours, "trl": theirs,
                                        "max_abs_difference": worst, "agree": worst <= TOLERANCE}
        print(f"{kind:15s} {loss_type:7s} beta {beta:g}: loss tinygpt {ours['loss']:.6f} trl {theirs['loss']:.6f}, "
              f"margins {ours['rewards/margins']:.6f} / {theirs['rewards/margins']:.6f}; largest difference "
              f"{worst:.2e}", flush=True)
    sft = cases["sft/completion_only"] = sft_side_by_side(folder)
    print(f"sft (SFTTrainer, completion only): loss tinygpt {sft['tinygpt']:.6f} trl {sft['trl']:.6f}; difference "
          f"{sft['max_abs_difference']:.2e}", flush=True)
    return cases


def main():
    parser = argparse.ArgumentParser(description="tinygpt's DPO loss and metrics against TRL's DPOTrainer's")
    parser.add_argument("--keep", default=None, help="a folder to keep the runs and exports in (default: temporary)")
    parser.add_argument("--out", default=str(HERE / "results" / "dpo_trl.json"), help="where the results go")
    args = parser.parse_args()
    import torch
    import transformers
    import trl

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        cases = compare(folder)
    result = {"command": "python benchmarks/dpo_trl.py", "tolerance": TOLERANCE, "torch": torch.__version__,
              "transformers": transformers.__version__, "trl": trl.__version__,
              "wall_s": round(time.perf_counter() - t0, 1), "cases": cases,
              "expected_to_differ": ["plain/sigmoid"]}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
