"""The speed levers (issue 4) are correct: each one changes how fast a model learns, never what a
model computes where that must not change (causality, cached sampling, the whole-split loss), and a
time budget ends training on time."""

import json
import math

import pytest
import torch

import tinygpt
from tinygpt.config import ModelConfig, TrainConfig, build_configs
from tinygpt.config.presets import load_preset
from tinygpt.core.errors import TinyGPTError
from tinygpt.generation import SamplingConfig, generate_ids
from tinygpt.model import build_model
from tinygpt.model.layers import Rotary, relu_squared
from tinygpt.objectives import language as objectives_module
from tinygpt.training import loop as loop_module
from tinygpt.training.optim import AdamW, Muon, build_optimizer, lr_factor, newton_schulz, set_lr

# Every modern lever at once: rotary, QK-norm, ReLU squared, zero-initialised projections, RMSNorm.
MODERN = dict(pos_emb="rope", qk_norm=True, activation="relu2", zero_init_proj=True, norm="rmsnorm", bias=False)


def gpt(**settings):
    cfg = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
    return build_model(ModelConfig(**{**cfg, **settings}).validate())


# ---- Muon ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 48), (48, 16), (32, 32)])
def test_newton_schulz_makes_every_singular_value_close_to_one(shape):
    # A gradient whose directions differ 100-fold in size: plain descent would move mostly along one.
    gen = torch.Generator().manual_seed(0)
    r = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], r, generator=gen))  # (m, r) orthonormal columns
    v, _ = torch.linalg.qr(torch.randn(shape[1], r, generator=gen))  # (n, r)
    g = u @ torch.diag(torch.logspace(0, 2, r)) @ v.T  # singular values 1 ... 100
    s = torch.linalg.svdvals(newton_schulz(g))
    assert s.min().item() > 0.6 and s.max().item() < 1.25  # the quintic's band around 1 (an SVD gives exactly 1)


def test_muon_orthogonalises_same_shaped_matrices_together_with_each_ones_own_result():
    gen = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*shape, generator=gen)) for shape in [(24, 8), (8, 8), (24, 8)]]
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    before = [p.detach().clone() for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    Muon(params, lr=0.1, momentum=0.0, nesterov=False).step()  # the update is then NS(grad) alone
    for p, w, g in zip(params, before, grads):
        scale = max(1.0, p.size(0) / p.size(1)) ** 0.5
        assert torch.allclose(p.detach(), w - 0.1 * scale * newton_schulz(g), atol=1e-6)


def test_a_muon_step_keeps_weights_finite_and_lowers_the_loss_on_a_least_squares_problem():
    gen = torch.Generator().manual_seed(0)
    x, w_true = torch.randn(256, 32, generator=gen), 0.05 * torch.randn(32, 24, generator=gen)
    y = x @ w_true
    w = torch.nn.Parameter(torch.zeros(24, 32))
    opt = Muon([w], lr=0.02, momentum=0.9)
    losses = []
    for _ in range(60):
        loss = ((x @ w.T - y) ** 2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(w).all()
    assert losses[-1] < 0.01 * losses[0]  # 0.084 -> 0.00013
    assert all(b < a for a, b in zip(losses[:10], losses[1:11]))  # it goes down from the first step


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    model = gpt(**MODERN)
    _, train = build_configs({"optimizer": "muon"})
    opt = build_optimizer(model, train, "cpu")
    adamw, muon = opt.optimizers
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    assert muon_names == {f"blocks.{i}.{m}.weight" for i in range(2)
                          for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")}
    adamw_names = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    assert adamw_names == set(names.values()) - muon_names  # embeddings, head and gains
    assert "tok_emb.weight" in adamw_names and "lm_head.weight" in adamw_names


def test_embedding_lr_gives_the_embedding_tables_a_rate_of_their_own_and_follows_the_schedule():
    model = gpt(**dict(MODERN, pos_emb="learned"))
    names = {id(p): n for n, p in model.named_parameters()}
    _, same = build_configs({"optimizer": "muon"})
    assert len(build_optimizer(model, same, "cpu").optimizers[0].param_groups) == 2  # 0: the tables go with lr
    _, train = build_configs({"optimizer": "muon", "lr": 1e-3, "embedding_lr": 0.01, "weight_decay": 0.1})
    opt = build_optimizer(model, train, "cpu")
    groups = opt.optimizers[0].param_groups
    tables = [g for g in groups if g["base_lr"] == 0.01]
    assert len(tables) == 1 and tables[0]["weight_decay"] == 0.1
    assert {names[id(p)] for p in tables[0]["params"]} == {"tok_emb.weight", "pos_emb.weight"}
    assert all(names[id(p)] not in ("tok_emb.weight", "pos_emb.weight") for g in groups if g is not tables[0]
               for p in g["params"])
    assert set_lr(opt, 0.5) == 0.5e-3 and tables[0]["lr"] == 0.5 * 0.01  # the logged rate stays AdamW's lr
    # A step moves the table as AdamW does at that rate: about lr per weight on the first step.
    x = torch.randint(0, 13, (2, 8))
    before = model.tok_emb.weight.detach().clone()
    model(x, x)[1].backward()
    opt.step()
    moved = (model.tok_emb.weight.detach() - before).abs()
    assert moved.max().item() == pytest.approx(0.5 * 0.01, rel=0.05)


def test_embedding_lr_is_checked_like_the_other_rates():
    for value, decay, words in ((-1.0, 0.1, "must be 0 or more"), (50.0, 0.1, "past"), (5.0, 0.5, "x weight_decay")):
        with pytest.raises(TinyGPTError, match=words):
            build_configs({"embedding_lr": value, "weight_decay": decay})


def test_fused_adamw_on_the_cpu_makes_the_same_update_as_the_textbook_adamw():
    torch.manual_seed(0)
    a, b = gpt(), gpt()
    b.load_state_dict(a.state_dict())
    _, train = build_configs({"lr": 3e-3, "weight_decay": 0.1})
    fused = build_optimizer(a, train, "cpu")
    assert fused.optimizers[0].defaults["fused"]
    plain = torch.optim.AdamW([{"params": [p for p in b.parameters() if p.ndim >= 2], "weight_decay": 0.1},
                               {"params": [p for p in b.parameters() if p.ndim < 2], "weight_decay": 0.0}],
                              lr=3e-3, betas=(0.9, 0.99), foreach=False)
    idx = torch.randint(13, (4, 8))
    for _ in range(3):
        for model, opt in ((a, fused), (b, plain)):
            _, loss = model(idx, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name


def test_our_fused_adamw_step_is_bit_for_bit_torch_optims_fused_step():
    torch.manual_seed(0)
    a, b = gpt(), gpt()
    b.load_state_dict(a.state_dict())
    groups = lambda m: [{"params": [p for p in m.parameters() if p.ndim >= 2], "weight_decay": 0.1},  # noqa: E731
                        {"params": [p for p in m.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    ours = AdamW(groups(a), lr=3e-3, betas=(0.9, 0.99), fused=True)
    theirs = torch.optim.AdamW(groups(b), lr=3e-3, betas=(0.9, 0.99), fused=True)
    idx = torch.randint(13, (4, 8))
    for _ in range(3):
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(idx, idx)[1].backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_a_torch_optim_adamw_state_loads_into_ours_and_continues_identically():
    # Checkpoints keep torch.optim's layout, so runs saved by torch.optim.AdamW still resume.
    torch.manual_seed(0)
    a, b = gpt(), gpt()
    b.load_state_dict(a.state_dict())
    idx = torch.randint(13, (4, 8))

    def step(model, opt):
        _, loss = model(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()

    theirs = torch.optim.AdamW(a.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1, foreach=False)
    step(a, theirs)
    b.load_state_dict(a.state_dict())
    ours = AdamW(b.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)
    ours.load_state_dict(theirs.state_dict())
    assert ours.state_dict()["state"].keys() == theirs.state_dict()["state"].keys()
    for model, opt in ((a, theirs), (b, ours)):
        step(model, opt)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-7), name


def test_adamw_advances_a_groups_step_counts_with_one_add_and_saves_them_apart(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    a, b = gpt(), gpt()
    b.load_state_dict(a.state_dict())
    groups = lambda m: [{"params": [p for p in m.parameters() if p.ndim >= 2], "weight_decay": 0.1},  # noqa: E731
                        {"params": [p for p in m.parameters() if p.ndim < 2], "weight_decay": 0.0}]
    ours, theirs = AdamW(groups(a), lr=3e-3, fused=True), torch.optim.AdamW(groups(b), lr=3e-3, fused=True)
    idx = torch.randint(13, (4, 8))

    def step(model, opt):
        opt.zero_grad()
        model(idx, idx)[1].backward()
        opt.step()

    for _ in range(2):
        step(a, ours), step(b, theirs)
    for group in ours.param_groups:  # one tensor of counts per group, each parameter's count a view of it
        counts = {ours.state[p]["step"]._base for p in group["params"]}
        assert len(counts) == 1 and next(iter(counts)).tolist() == [2.0] * len(group["params"])
    # Saved, the counts are tensors of their own (safetensors refuses tensors that share memory) ...
    saved = ours.state_dict()
    flat = {f"{i}.{k}": v for i, s in saved["state"].items() for k, v in s.items()}
    save_file(flat, tmp_path / "optim.safetensors")
    loaded = load_file(tmp_path / "optim.safetensors")
    restored = {"param_groups": saved["param_groups"], "state": {}}
    for name, value in loaded.items():
        i, key = name.split(".", 1)
        restored["state"].setdefault(int(i), {})[key] = value
    # ... and loaded, views of one tensor again; the run continues as torch.optim's does, bit for bit.
    c = gpt()
    c.load_state_dict(a.state_dict())
    again = AdamW(groups(c), lr=3e-3, fused=True)
    again.load_state_dict(restored)
    assert all(len({again.state[p]["step"]._base for p in g["params"]}) == 1 for g in again.param_groups)
    step(c, again), step(b, theirs)
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), b.parameters()))
    assert all(again.state[p]["step"].item() == 3.0 for p in c.parameters())


def test_adamw_counts_stay_right_when_a_parameter_has_no_gradient_on_some_steps():
    torch.manual_seed(0)
    a, b = gpt(), gpt()
    b.load_state_dict(a.state_dict())
    ours, theirs = AdamW(a.parameters(), lr=3e-3, fused=True), torch.optim.AdamW(b.parameters(), lr=3e-3, fused=True)
    idx = torch.randint(13, (4, 8))
    for i in range(3):
        for model, opt in ((a, ours), (b, theirs)):
            opt.zero_grad()
            model(idx, idx)[1].backward()
            if i == 1:  # the head's bias sits this step out: every other count moves, its own does not
                model.lm_head.bias.grad = None
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ours.state[a.lm_head.bias]["step"].item() == 2.0 and ours.state[a.tok_emb.weight]["step"].item() == 3.0


def test_training_sampling_and_evaluating_on_a_cpu_never_import_torchdynamo(tmp_path):
    # torch.optim.Optimizer imports TorchDynamo on first use: 1 s and 70 MB that a CPU run does not need.
    import subprocess
    import sys

    code = (
        "import sys, tinygpt\n"
        f"tinygpt.train(preset='rhyme', out={str(tmp_path / 'run')!r}, max_iters=3, progress=False, threads=1)\n"
        f"run = tinygpt.load({str(tmp_path / 'run')!r})\n"
        "run.generate('mary', max_new_tokens=3)\n"
        "run.evaluate()\n"
        "assert 'torch._dynamo' not in sys.modules, 'TorchDynamo was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


# ---- the model levers ---------------------------------------------------------------------------------

def test_rotary_scores_depend_only_on_how_far_apart_two_positions_are():
    rot = Rotary(head_size=8, max_len=32)
    q, k = torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8), torch.randn(1, 1, 1, 8).expand(1, 1, 32, 8)
    scores = rot(q) @ rot(k).transpose(-2, -1)  # (1, 1, 32, 32): the same q and k at every position
    for offset in (0, 3, 10):
        diagonal = torch.diagonal(scores[0, 0], offset=-offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-4)
    assert not torch.allclose(scores[0, 0, 5, 5], scores[0, 0, 5, 2])  # but the offset does matter


def test_with_every_modern_lever_a_future_token_never_changes_an_earlier_logit():
    torch.manual_seed(0)
    model = gpt(**{**MODERN, "zero_init_proj": False}).eval()  # zero projections would hide any leak
    idx = torch.randint(13, (2, 8))
    changed = idx.clone()
    changed[:, 5] = (idx[:, 5] + 1) % 13
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert (a[:, 5:] - b[:, 5:]).abs().max().item() > 1e-3


def test_zero_initialised_projections_make_every_block_start_as_the_identity():
    torch.manual_seed(0)
    model = gpt(**MODERN).eval()
    idx = torch.randint(13, (2, 8))
    logits, _ = model(idx)
    no_blocks = model.lm_head(model.ln_f(model.tok_emb(idx)))  # rotary adds no table to the input
    assert torch.allclose(logits, no_blocks, atol=1e-6)
    assert model.blocks[0].mlp.proj.weight.abs().sum() == 0 and model.blocks[1].attn.proj.weight.abs().sum() == 0


def test_relu_squared_is_the_square_of_the_positive_part():
    model = gpt(activation="relu2", mlp_ratio=1, mlp_proj=False)
    mlp = model.blocks[0].mlp
    x = torch.randn(1, 3, 16)
    assert torch.allclose(mlp(x), torch.relu(mlp.fc(x)) ** 2)


def test_relu_squared_has_exactly_the_values_and_gradients_of_relu_then_square():
    h = torch.randn(4, 7, 64, generator=torch.Generator().manual_seed(0))
    h[0, 0, :3] = 0.0  # the kink: both give a zero gradient there
    grad = torch.randn_like(h)
    a, b = h.clone().requires_grad_(), h.clone().requires_grad_()
    out_a, out_b = relu_squared(a), torch.relu(b).square()
    (out_a * grad).sum().backward()
    (out_b * grad).sum().backward()
    assert torch.equal(out_a, out_b) and torch.equal(a.grad, b.grad)  # bit for bit, not just close


@pytest.mark.parametrize("sampling", [SamplingConfig(30, temperature=0.0),
                                      SamplingConfig(30, temperature=0.8, top_k=5)])
def test_the_speedrun_model_samples_the_same_tokens_with_and_without_the_cache(sampling):
    preset = load_preset("speedrun-cpu")["settings"]
    settings = {k: v for k, v in preset.items() if k in ModelConfig.__dataclass_fields__}
    torch.manual_seed(0)
    model = build_model(ModelConfig(**{**settings, "vocab_size": 13, "block_size": 8, "n_layer": 2, "n_embd": 32,
                                       "zero_init_proj": False}).validate()).eval()
    prompt = torch.randint(13, (3, 2))
    cached = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(1), use_cache=True)
    plain = generate_ids(model, prompt, sampling, torch.Generator().manual_seed(1), use_cache=False)
    assert cached.shape == (3, 32) and torch.equal(cached, plain)  # 30 new tokens, well past block_size 8


# ---- the schedule and the time budget ----------------------------------------------------------------

def test_warmup_stable_decay_holds_the_peak_then_decays_linearly_to_min_lr():
    cfg = TrainConfig(lr=1e-2, min_lr=1e-3, lr_schedule="wsd", warmup_iters=10, cooldown_frac=0.4)
    assert lr_factor(cfg, 0, 0.0) == pytest.approx(1 / 11)
    assert lr_factor(cfg, 10, 0.1) == lr_factor(cfg, 50, 0.6) == 1.0
    assert lr_factor(cfg, 80, 0.8) == pytest.approx(0.55)  # halfway down the cooldown, from 1 to 0.1
    assert lr_factor(cfg, 100, 1.0) == pytest.approx(0.1)


class FakeClock:
    """The trainer's clock: a training step costs 0.1 s and an evaluation 0.01 s per 100 tokens scored."""

    def __init__(self):
        self.now = 1000.0

    def perf_counter(self):
        return self.now


def test_a_time_budget_ends_training_on_time_with_the_schedule_fitted_to_it(monkeypatch, tiny_corpus, tmp_path):
    clock = FakeClock()
    monkeypatch.setattr(loop_module.time, "perf_counter", clock.perf_counter)
    step, loss = loop_module.Trainer.train_step, objectives_module.split_loss

    def timed_step(self):
        clock.now += 0.1
        return step(self)

    def timed_loss(model, data, *args, **kwargs):
        total, count = loss(model, data, *args, **kwargs)
        clock.now += 0.01 * count / 100
        return total, count

    monkeypatch.setattr(loop_module.Trainer, "train_step", timed_step)
    monkeypatch.setattr(objectives_module, "split_loss", timed_loss)
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), time_budget="6s", lr_schedule="wsd",
                           warmup_iters=5, lr=1e-2, min_lr=1e-3, eval_interval=20, n_layer=1, n_head=2, n_embd=16,
                           block_size=16, batch_size=4, threads=1, progress=False, sample_tokens=0)
    assert 5.8 <= result.elapsed_s <= 6.0  # on time, and the budget used to within one step
    assert 45 <= result.step <= 60  # about 6 s of 0.1 s steps, less the evaluations
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == result.step and records[-1]["elapsed_s"] <= 6.0
    assert records[-1]["lr"] == pytest.approx(1e-3, rel=0.1)  # the decay finished as the time ran out


def test_capped_evaluations_during_training_and_a_whole_split_pass_at_the_end(shakespeare_file, tmp_path):
    messages = []
    result = tinygpt.train(data="shakespeare", out=str(tmp_path / "run"), max_iters=4, eval_interval=2,
                           eval_max_tokens=1000, n_layer=1, n_head=2, n_embd=16, block_size=32, batch_size=4,
                           threads=1, progress=False, sample_tokens=0, log=messages.append)
    assert ("note: the validation split has 111,540 tokens: evaluations during training score its first 992 "
            "(--eval-max-tokens), the final one all of them (a lower --val-fraction shortens it)") in messages
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 4, 4]  # the last step again, over the whole split
    whole = tinygpt.load(tmp_path / "run").evaluate()
    assert whole["tokens"] == 111_539  # every validation token but the first
    assert result.val_loss == pytest.approx(whole["loss"], abs=1e-5)
    assert result.best_val_loss == pytest.approx(whole["loss"], abs=1e-5)
    assert records[-2]["val_loss"] != records[-1]["val_loss"]  # the capped pass saw 992 tokens (31 windows)


def test_the_final_evaluation_of_a_long_split_scores_a_fixed_subset_and_says_so(shakespeare_file, tmp_path, capsys):
    messages = []
    settings = dict(data="shakespeare", max_iters=2, eval_interval=2, eval_max_tokens=1000, final_eval_tokens=4096,
                    n_layer=1, n_head=2, n_embd=16, block_size=32, batch_size=4, threads=1, progress=False,
                    sample_tokens=0)
    result = tinygpt.train(out=str(tmp_path / "run"), log=messages.append, **settings)
    assert ("note: the validation split has 111,540 tokens: evaluations during training score its first 992 "
            "(--eval-max-tokens), the final one 4,096: those and a fixed subset of the rest's windows "
            "(--final-eval-tokens; 0 = all)") in messages
    banner = next(m for m in messages if m.startswith("tinygpt "))
    assert "111,540 val tokens (the final evaluation scores a fixed 4,096 of them)" in banner
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2, 2]
    # `tinygpt eval --max-tokens` scores the same windows; the whole split is another number.
    run = tinygpt.load(tmp_path / "run")
    subset = run.evaluate(max_tokens=4096)
    assert subset["tokens"] == 4096 and subset["loss"] == pytest.approx(result.val_loss, abs=1e-6)
    assert run.evaluate(max_tokens=4096) == subset  # deterministic
    assert run.evaluate()["tokens"] == 111_539
    # Another run on the same split (another seed) is scored on the same windows.
    again = tinygpt.train(out=str(tmp_path / "again"), **{**settings, "seed": 7})
    assert tinygpt.load(again.out_dir).evaluate(max_tokens=4096)["loss"] == pytest.approx(again.val_loss, abs=1e-6)


def test_a_subset_of_a_pass_keeps_the_first_windows_and_a_seeded_draw_of_the_rest():
    from tinygpt.data import pass_windows, subset_windows

    whole = pass_windows(10_001, 16)
    assert sum(n for _, n in whole) == 10_000 and whole[-1] == (9_984, 16)
    assert subset_windows(10_001, 16, 0, 0) == whole == subset_windows(10_001, 16, 64, 20_000)
    chosen = subset_windows(10_001, 16, 64, 1_024)
    assert chosen[:4] == whole[:4] and sum(n for _, n in chosen) == 1_024
    starts = [s for s, _ in chosen]
    assert starts == sorted(set(starts)) and all(s % 16 == 0 and s + 16 <= 10_000 for s in starts)
    assert chosen == subset_windows(10_001, 16, 64, 1_024)  # the same every time
    assert starts[-1] > 5_000  # drawn from the whole rest of the split, not its start


# ---- shorter windows first -----------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["gpt", "encoder"])
def test_a_window_schedule_trains_short_windows_first_then_whole_ones(monkeypatch, tiny_corpus, tmp_path, arch):
    lengths = []
    draw = objectives_module.random_batch

    def recorded(data, batch_size, block_size, generator):
        lengths.append(block_size)
        return draw(data, batch_size, block_size, generator)

    monkeypatch.setattr(objectives_module, "random_batch", recorded)
    result = tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), arch=arch, window_schedule="4:0.25,8:0.5",
                           max_iters=8, eval_interval=4, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=3,
                           threads=1, progress=False, sample_tokens=0)
    assert lengths == [4, 4, 8, 8, 16, 16, 16, 16]  # steps 0-1: a quarter of 8; 2-3: up to half; then block_size
    assert result.tokens == 3 * sum(lengths)  # what the metrics and tokens/s count
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["tokens"] for r in records] == [0, 3 * (4 + 4 + 8 + 8), 3 * sum(lengths)]
    assert tinygpt.load(tmp_path / "run").model.config.block_size == 16  # the model keeps its whole context


def test_under_a_time_budget_the_windows_grow_with_the_time(monkeypatch, tiny_corpus, tmp_path):
    clock = FakeClock()  # each step takes 0.1 s of a 3 s budget
    monkeypatch.setattr(loop_module.time, "perf_counter", clock.perf_counter)
    step, draw, lengths = loop_module.Trainer.train_step, objectives_module.random_batch, []

    def timed_step(self):
        clock.now += 0.1
        return step(self)

    def recorded(data, batch_size, block_size, generator):
        lengths.append(block_size)
        return draw(data, batch_size, block_size, generator)

    monkeypatch.setattr(loop_module.Trainer, "train_step", timed_step)
    monkeypatch.setattr(objectives_module, "random_batch", recorded)
    tinygpt.train(data=str(tiny_corpus), out=str(tmp_path / "run"), time_budget="3s", window_schedule="4:0.25,8:0.5",
                  warmup_iters=2, eval_interval=1000, n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=3,
                  threads=1, progress=False, sample_tokens=0)
    assert lengths == sorted(lengths) and lengths[0] == 4 and lengths[-1] == 16 and 8 in lengths
    assert 0.2 < lengths.count(4) / len(lengths) < 0.3  # a quarter of the time


def test_a_window_schedule_follows_the_time_under_a_budget():
    from tinygpt.training.progress import Schedule

    clock = FakeClock()
    clock.elapsed = lambda: clock.now - 1000.0
    schedule = Schedule(TrainConfig(time_budget="10s", max_iters=0), clock)
    assert [schedule.done(step) for step in (0, 99)] == [0.0, 0.0]  # steps do not count, time does
    clock.now += 2.5
    assert schedule.done(3) == 0.25
    clock.now += 100
    assert schedule.done(4) == 1.0
    assert Schedule(TrainConfig(max_iters=40), clock).done(10) == 0.25


def test_under_torchrun_every_process_takes_the_mean_progress_of_a_time_budget(monkeypatch):
    from types import SimpleNamespace

    from tinygpt.training import progress

    clock = FakeClock()
    clock.elapsed = lambda: 2.0  # this process: 2 s of a 10 s budget
    exchanges = []
    monkeypatch.setattr(progress.ddp, "sum_across",  # the other process: 3 s
                        lambda dist, done: exchanges.append(done) or [done + 0.3])
    schedule = progress.Schedule(TrainConfig(time_budget="10s", max_iters=0, warmup_iters=0), clock,
                                 SimpleNamespace(enabled=True, world_size=2))
    # One learning rate and one window length on every process, not one per clock.
    assert schedule.done(0) == pytest.approx(0.25) and schedule.fraction(0) == pytest.approx(0.25)
    assert len(exchanges) == 1  # both read one measurement of the step: one exchange, not one per reader
    clock.elapsed = lambda: 4.0
    assert schedule.fraction(1) == pytest.approx(0.35) and len(exchanges) == 2  # the next step measures again


@pytest.mark.parametrize("schedule, problem", [
    ("16", "is not LENGTH:FRACTION"), ("16:1.5", "is not LENGTH:FRACTION"), ("0:0.2", "is not LENGTH:FRACTION"),
    ("a:0.2", "is not LENGTH:FRACTION"), ("32:0.2,16:0.5", "must grow"), ("16:0.5,32:0.2", "must grow")])
def test_a_window_schedule_that_does_not_make_sense_is_refused_in_one_line(schedule, problem):
    with pytest.raises(TinyGPTError, match=problem):
        TrainConfig(window_schedule=schedule).validate()
    assert TrainConfig(window_schedule=" 16:0.15, 32:0.4 ").validate().window_stages() == [(16, 0.15), (32, 0.4)]


def test_a_window_schedule_is_refused_where_the_examples_are_whole(tmp_path):
    with pytest.raises(TinyGPTError, match="this run trains on whole examples"):
        tinygpt.train(data="dates", arch="encoder-decoder", out=str(tmp_path / "run"), window_schedule="4:0.5",
                      max_iters=1, n_layer=1, n_head=2, n_embd=16, threads=1, progress=False, sample_tokens=0)
    assert not (tmp_path / "run").exists()  # refused before anything is written


# ---- the presets ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["speedrun-cpu", "speedrun-gpu"])
def test_the_speedrun_presets_are_valid_and_use_the_levers(name):
    settings = load_preset(name)["settings"]
    model, train = build_configs(settings)
    assert train.data == "shakespeare" and train.tokenizer == "char"
    assert train.optimizer == "muon" and train.lr_schedule == "wsd"
    assert model.pos_emb == "rope" and model.activation == "relu2"
    assert train.eval_iters == 0  # exact passes, never random batches
    if name == "speedrun-cpu":
        assert train.window_stages() and not train.time_budget  # shorter windows first, a fixed step count
    if name == "speedrun-gpu":
        assert train.dtype == "auto"  # bfloat16 autocast on a GPU that has it


def test_the_three_minute_recipe_is_the_speedrun_on_bpe_tokens_for_a_time_budget():
    doc = load_preset("speedrun-cpu-3m")
    model, train = build_configs(doc["settings"])
    fast_model, fast_train = build_configs(load_preset("speedrun-cpu")["settings"])
    assert train.tokenizer == "bpe" and train.vocab_size == 512
    assert train.time_budget == "3m" and train.max_iters == 0  # the budget alone decides when to stop
    assert train.optimizer == fast_train.optimizer and train.window_stages() == fast_train.window_stages()
    assert (model.pos_emb, model.activation, model.qk_norm) == (fast_model.pos_emb, "relu2", True)
    assert (model.n_layer, model.n_embd) == (3, 160)  # bigger than speedrun-cpu's 2 x 96: on these tokens it pays
    # Judged a character, not a token: a BPE token's loss does not compare with a character's.
    assert doc["check"]["metric"] == "val_loss_per_char" and doc["check"]["max"] == 1.50


def test_the_three_minute_recipe_trains_and_is_scored_a_character(shakespeare_file, tmp_path, capsys):
    from tinygpt.cli import main

    settings = dict(load_preset("speedrun-cpu-3m")["settings"], time_budget="", max_iters=2, n_embd=32, n_head=2,
                    eval_max_tokens=256, threads=1, progress=False, sample_tokens=0)
    result = tinygpt.train(out=str(tmp_path / "run"), **settings)
    assert result.step == 2 and math.isfinite(result.val_loss)
    capsys.readouterr()  # training's lines
    assert main(["eval", str(tmp_path / "run"), "--json", "--checkpoint", "latest"]) == 0
    scored = json.loads(capsys.readouterr().out)
    # benchmarks/reproduce.py's val_loss_per_char: nats a character, the loss of the split's tokens spread over
    # the characters they stand for (about two each).
    per_char = scored["bits_per_char"] * math.log(2)
    assert per_char == pytest.approx(scored["loss"] * scored["tokens"] / scored["characters"], rel=1e-6)
    assert 1.5 < scored["characters"] / scored["tokens"] < 2.5


def test_the_gpu_speedrun_recipe_trains_on_a_cpu_without_compile(shakespeare_file, tmp_path):
    settings = dict(load_preset("speedrun-gpu")["settings"], compile=False, device="cpu", max_iters=3,
                    time_budget="", n_layer=1, n_embd=24, block_size=32, batch_size=4, eval_max_tokens=256,
                    threads=1, progress=False, sample_tokens=0)
    result = tinygpt.train(out=str(tmp_path / "run"), **settings)
    assert result.step == 3 and math.isfinite(result.val_loss) and result.val_loss < math.log(65) + 0.5
