"""LoRA (issue 27): `--lora-rank R` on a fine-tuning run trains low-rank adapters beside frozen weights, saves
them in PEFT's format (PEFT itself loads them onto `tinygpt export BASE --to hf` and computes tinygpt's logits),
and the run reads, samples and exports as any run, its adapters merged."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait for the network

import pytest  # noqa: E402
import torch  # noqa: E402
from refusals import checksums, one_line  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.cli import main  # noqa: E402
from tinygpt.core.errors import TrainingInterrupted  # noqa: E402
from tinygpt.data import rhyme_text  # noqa: E402
from tinygpt.store.rundir import RunDir  # noqa: E402

BASE = dict(tokenizer="char", n_layer=2, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=20,
            eval_interval=20, threads=1, progress=False, sample_tokens=0)
# Settings a plain GPT2LMHeadModel computes: the export takes GPT-2's form and names (the folded 1/sqrt(n_embd)
# scale included), where the defaults take the custom-code form.
GPT2_FORM = dict(bias=False, attn_scale="n_embd", activation="gelu_tanh", tie_weights=True)
# Fast enough to move B well away from zero in a few steps, so the adapters change the logits.
LORA = dict(lora_rank=4, lora_alpha=8.0, max_iters=10, eval_interval=5, lr=1e-2, warmup_iters=0, batch_size=4,
            threads=1, progress=False, sample_tokens=0)


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    path = tmp_path_factory.mktemp("lora-data") / "text.txt"
    path.write_text(rhyme_text() * 3, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, text):
    """runs(form) -> (base run, LoRA run on it): trained once per module."""
    made = {}

    def get(form):
        if form not in made:
            folder = tmp_path_factory.mktemp(f"lora-{form}")
            base = folder / "base"
            tinygpt.train(data=str(text), out=str(base), **BASE, **(GPT2_FORM if form == "gpt2" else {}))
            adapted = folder / "lora"
            tinygpt.train(init_from=str(base), out=str(adapted), lora_targets="all", **LORA)
            made[form] = base, adapted
        return made[form]

    return get


def logits(run_dir, ids, checkpoint="best"):
    with torch.no_grad():
        return tinygpt.load(run_dir, device="cpu", checkpoint=checkpoint).model(ids)[0]


IDS = torch.tensor([[1, 5, 3, 7, 2, 9, 4, 4, 1, 0, 6, 8]])


def test_step_zero_is_the_base_and_only_the_adapters_move(runs):
    base, adapted = runs("custom")
    records = RunDir(adapted).read_metrics()
    assert records[0]["val_loss"] == pytest.approx(RunDir(base).read_metrics()[-1]["val_loss"], abs=1e-6)  # B = 0
    assert records[-1]["val_loss"] < records[0]["val_loss"]  # it learnt
    base_state = load_file(RunDir(base).weights_path)
    checkpoint = load_file(RunDir(adapted).checkpoint_path("latest"))
    for name, tensor in base_state.items():  # every base weight frozen, bit for bit
        assert torch.equal(checkpoint[f"model.{name}"], tensor), name
    adapters = [k for k in checkpoint if ".lora_" in k and k.startswith("model.")]
    assert len(adapters) == 2 * 4 * 2  # A and B, four projections, two blocks
    moments = [k for k in checkpoint if k.startswith("optim.") and k.endswith(".exp_avg_sq")]
    assert len(moments) == len(adapters)  # the optimizer holds the adapters alone
    assert RunDir(adapted).read_config().num_params == RunDir(base).read_config().num_params


def test_the_merged_weights_are_the_base_plus_scale_times_B_A(runs):
    base, adapted = runs("custom")
    base_state, merged = load_file(RunDir(base).weights_path), load_file(RunDir(adapted).weights_path)
    best = load_file(RunDir(adapted).checkpoint_path("best"))
    assert set(merged) == set(base_state)  # an ordinary run's tensors
    for i in range(2):
        for target in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"):
            name = f"blocks.{i}.{target}"
            A, B = best[f"model.{name}.lora_A.weight"], best[f"model.{name}.lora_B.weight"]
            expected = base_state[f"{name}.weight"] + (8.0 / 4) * B @ A
            assert torch.allclose(merged[f"{name}.weight"], expected, atol=1e-6)
            assert not torch.allclose(merged[f"{name}.weight"], base_state[f"{name}.weight"], atol=1e-4)
    # checkpoints/latest holds base and adapters apart: loading it merges them (training stopped at its best step)
    assert torch.allclose(logits(adapted, IDS), logits(adapted, IDS, checkpoint="latest"), atol=1e-6)


@pytest.mark.parametrize("form", ["custom", "gpt2"])
def test_peft_loads_the_adapter_onto_the_exported_base_with_tinygpts_logits(runs, tmp_path, capsys, form):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, adapted = runs(form)
    assert main(["export", str(base), "--to", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "modeling_tinygpt.py").exists() == (form == "custom")  # the form the test is about
    remote = {"trust_remote_code": True} if form == "custom" else {}
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tmp_path / "hf", **remote),
                                      RunDir(adapted).adapter_dir).eval()
    config = json.loads((RunDir(adapted).adapter_dir / "adapter_config.json").read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8)
    with torch.no_grad():
        theirs = model(IDS).logits
    ours = logits(adapted, IDS)
    assert (theirs - ours).abs().max().item() <= 1e-5
    assert (ours - logits(base, IDS)).abs().max().item() > 1e-2  # the adapters do change the function


def test_an_adapter_run_stopped_and_resumed_equals_one_never_stopped(runs, tmp_path):
    base, _ = runs("custom")
    settings = dict(LORA, lora_dropout=0.1)  # dropout draws random numbers: the resumed run must draw the same
    straight = tinygpt.train(init_from=str(base), out=str(tmp_path / "straight"), **settings)

    def stop_at_5(trainer):
        if trainer.step == 5:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted):
        tinygpt.train(init_from=str(base), out=str(tmp_path / "stopped"), on_step=stop_at_5, **settings)
    resumed = tinygpt.train(resume=str(tmp_path / "stopped"), threads=1)
    assert (resumed.step, resumed.val_loss, resumed.train_loss) == (straight.step, straight.val_loss,
                                                                    straight.train_loss)
    a, b = (load_file(RunDir(tmp_path / name).checkpoint_path("latest")) for name in ("straight", "stopped"))
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("model."))


def test_an_adapter_run_samples_evaluates_and_exports_as_any_run(runs, tmp_path, capsys):
    _, adapted = runs("custom")
    capsys.readouterr()  # what training the runs printed
    assert main(["sample", str(adapted), "--prompt", "mary", "--temperature", "0", "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.startswith("mary")
    assert main(["eval", str(adapted)]) == 0  # the merged weights score what training's last evaluation did
    assert capsys.readouterr().out.startswith(f"val loss {RunDir(adapted).read_metrics()[-1]['val_loss']:.4f} ")
    assert main(["export", str(adapted), "--to", "hf", "--out", str(tmp_path / "merged")]) == 0
    assert f"note: the LoRA adapters are merged into these weights; {adapted / 'adapter'} holds them alone" in \
        capsys.readouterr().out
    exported = load_file(tmp_path / "merged" / "model.safetensors")
    merged = load_file(RunDir(adapted).weights_path)
    assert all(torch.equal(exported[k], merged[k].float()) for k in merged)  # export writes the merged weights


def test_dpo_trains_adapters_by_the_same_flags(runs, tmp_path, capsys):
    base, _ = runs("custom")
    capsys.readouterr()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": "had a lamb", "rejected": "had a snow"}) + "\n"
                             for p in ("mary ", "it ", "the ", "to ")), encoding="utf-8")
    assert main(["dpo", str(base), "--data", str(pairs), "--out", str(tmp_path / "dpo"), "--lora-rank", "2",
                 "--max-iters", "2", "--val-fraction", "0", "--batch-size", "2", "--threads", "1",
                 "--no-progress"]) == 0
    assert "LoRA rank 2 on attn.qkv,attn.proj (" in capsys.readouterr().out
    assert (tmp_path / "dpo" / "adapter" / "adapter_model.safetensors").is_file()


def test_sft_trains_adapters_by_the_same_flags(runs, tmp_path, capsys):
    base, _ = runs("custom")
    capsys.readouterr()
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "mary"},
                                              {"role": "assistant", "content": "had a"}]}) + "\n", encoding="utf-8")
    assert main(["sft", str(base), "--data", str(chats), "--out", str(tmp_path / "sft"), "--lora-rank", "2",
                 "--lora-targets", "attn.qkv", "--max-iters", "2", "--val-fraction", "0", "--batch-size", "2",
                 "--threads", "1", "--no-progress"]) == 0
    assert "LoRA rank 2 on attn.qkv (256 trainable parameters" in capsys.readouterr().out
    config = json.loads((tmp_path / "sft" / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["attn.qkv"]


# ---- bad input: one line each, nothing saved lost ----------------------------------------------------------

@pytest.mark.parametrize("flags, fragment", [
    (["--lora-rank", "0"], "--lora-rank 0 trains no adapter; give a rank of 1 or more"),
    (["--lora-rank", "-3"], "lora_rank must be 1 or more"),
    (["--lora-rank", "17"], "--lora-rank 17 is more than attn.qkv can hold: its weight is 48 x 16, so an update of "
                            "it has rank at most 16; choose a rank from 1 to 16"),
    (["--lora-rank", "4", "--lora-targets", "attn.q"], "--lora-targets names 'attn.q', not a projection LoRA adapts"),
    (["--lora-rank", "4", "--lora-targets", ","], "--lora-targets names no projection; name some of attn.qkv"),
    (["--lora-rank", "4", "--lora-targets", "all,mlp.fc"], "--lora-targets names all beside other projections"),
    (["--lora-rank", "4", "--lora-alpha", "0"], "lora_alpha must be above 0"),
    (["--lora-rank", "4", "--lora-dropout", "1"], "lora_dropout must be in [0, 1), got 1.0"),
    (["--lora-rank", "4", "--attention", "heads"], "add --attention fused"),
    (["--lora-rank", "4", "--optimizer", "muon"], "use --optimizer adamw with --lora-rank"),
])
def test_a_lora_request_the_model_cannot_take_is_one_line_and_the_old_run_stays(runs, tmp_path, capsys, flags,
                                                                                fragment):
    base, adapted = runs("custom")
    before = checksums(adapted)
    code = main(["train", "--init-from", str(base), "--out", str(adapted), "--overwrite", "--max-iters", "2", *flags])
    one_line(code, capsys.readouterr().err, fragment)
    assert checksums(adapted) == before


def test_lora_without_a_trained_model_or_on_another_architecture_is_refused(text, tmp_path, capsys):
    one_line(main(["train", "--data", str(text), "--lora-rank", "8", "--out", str(tmp_path / "r")]),
             capsys.readouterr().err, "--lora-rank 8 adapts a trained model", "pass --init-from RUN")
    tinygpt.train(data=str(text), out=str(tmp_path / "bigram"), arch="bigram", **dict(BASE, max_iters=1))
    one_line(main(["train", "--init-from", str(tmp_path / "bigram"), "--lora-rank", "2"]), capsys.readouterr().err,
             "LoRA adapts a GPT's projections, and", "is a bigram model")
    assert not (tmp_path / "r").exists()
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "mary ", "chosen": "had", "rejected": "was"}) + "\n", encoding="utf-8")
    one_line(main(["reward", str(tmp_path / "bigram"), "--data", str(pairs), "--lora-rank", "2"]),
             capsys.readouterr().err, "a reward model trains its new scoring head whole", "leave out --lora-rank")


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_rl_trains_adapters_too(runs, tmp_path, algorithm):
    base, _ = runs("custom")
    (tmp_path / "toy.py").write_text("def has_w(prompt, reply):\n    return 'w' in reply\n", encoding="utf-8")
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["mary", "its"] * 2),
                                            encoding="utf-8")
    chats = tmp_path / "chats.jsonl"
    chats.write_text(json.dumps({"prompt": "mary", "completion": "had a"}) + "\n", encoding="utf-8")
    sft = tinygpt.sft(str(base), data=str(chats), out=str(tmp_path / "sft"), lora_rank=2, max_iters=2,
                      val_fraction=0.0, batch_size=2, threads=1, progress=False).out_dir  # an adapter run, merged
    result = tinygpt.rl(str(sft), prompts=str(tmp_path / "prompts.jsonl"), reward=f"{tmp_path / 'toy.py'}:has_w",
                        out=str(tmp_path / "rl"), algorithm=algorithm, lora_rank=2, max_iters=2, eval_interval=2,
                        warmup_iters=0, threads=1, progress=False, sample_tokens=0, batch_size=4, max_new_tokens=4,
                        val_fraction=0.0)
    assert result.step == 2 and (tmp_path / "rl" / "adapter" / "adapter_model.safetensors").is_file()
