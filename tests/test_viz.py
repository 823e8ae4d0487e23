"""Seeing inside a run: the numbers behind `tinygpt inspect`, `plot` and `explain`, and the pictures drawn
from them, checked by content (size, panels, the colour of a masked cell), not only by existence."""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image

import tinygpt
from tinygpt.app.run import Run
from tinygpt.cli import main
from tinygpt.config import ModelConfig
from tinygpt.core.errors import TinyGPTError
from tinygpt.model import build_model
from tinygpt.store.checkpoint import read_metrics
from tinygpt.tokenizers import CharTokenizer
from tinygpt.training import curves
from tinygpt.training.tensorboard import TensorBoardLog
from tinygpt.viz import plots, probe
from tinygpt.viz.explain import explain
from tinygpt.viz.plots import MASKED, cell_centre
from tinygpt.viz.subject import default_run

PROMPT = "mary had a little"


@pytest.fixture(scope="module")
def rhyme(rhyme_run):
    """The trained nursery-rhyme model (conftest trains it once per session)."""
    return tinygpt.load(rhyme_run.out_dir)


def untrained_run(**settings) -> Run:
    """A freshly initialised character GPT over 'abcdefgh', for checks that need no training."""
    torch.manual_seed(0)
    tok = CharTokenizer(list("abcdefgh"))
    base = dict(vocab_size=8, block_size=8, n_layer=2, n_head=2, n_embd=16)
    model = build_model(ModelConfig(**{**base, **settings}).validate()).eval()
    return Run(Path("untrained"), model, tok, {}, torch.device("cpu"))


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)  # (height, width, 3)


def rgb(colour) -> np.ndarray:
    from matplotlib.colors import to_rgb

    return np.round(np.array(to_rgb(colour)) * 255).astype(int)


# ---- tokens and next-token probabilities ----------------------------------------------------------

def test_top_k_lists_the_prompts_tokens_ids_and_the_rhymes_next_word(rhyme):
    result = probe.top_k(rhyme, PROMPT, k=3)
    assert result["tokens"] == ["mary", "had", "a", "little"]
    assert result["ids"] == rhyme.tokenizer.encode(PROMPT)
    [last] = result["positions"]
    assert last["position"] == 3 and last["token"] == "little"
    assert last["top"][0]["token"] == "lamb" and last["top"][0]["prob"] > 0.9  # "little" -> "lamb" in the rhyme
    probs = [x["prob"] for x in last["top"]]
    assert probs == sorted(probs, reverse=True) and len(probs) == 3


def test_all_positions_gives_one_table_per_token_and_each_distribution_sums_to_one(rhyme):
    result = probe.top_k(rhyme, PROMPT, k=1, all_positions=True)
    assert [r["token"] for r in result["positions"]] == ["mary", "had", "a", "little"]
    assert [r["top"][0]["token"] for r in result["positions"][1:]] == ["a", "little", "lamb"]
    sums = probe.next_token_probs(rhyme, result["ids"]).sum(dim=-1)
    assert torch.allclose(sums, torch.ones(4), atol=1e-5)


def test_a_prompt_longer_than_the_context_keeps_its_last_block_size_tokens(rhyme):
    result = probe.top_k(rhyme, "mary had a little lamb little lamb little", k=1)
    assert result["tokens"] == ["a", "little", "lamb", "little", "lamb", "little"]
    assert "only the last 6" in result["note"]


def test_an_unknown_word_is_refused_by_the_tokenizer_with_the_vocabulary(rhyme):
    with pytest.raises(TinyGPTError, match="unknown word.*'pony'.*this model knows only"):
        probe.top_k(rhyme, "mary had a pony")


# ---- attention weights are the ones the model used ------------------------------------------------

@pytest.mark.parametrize("settings", [
    dict(attention="fused"),
    dict(attention="heads"),
    dict(attention="fused", pos_emb="rope", qk_norm=True),
    dict(attention="heads", pos_emb="rope", attn_scale="n_embd"),
    dict(attention="fused", attn_proj=False, mlp_ratio=0, norm="rmsnorm"),
    dict(attention="heads", qkv_bias=True, activation="gelu_tanh"),  # GPT-2's wiring
], ids=["fused", "heads", "fused-rope-qknorm", "heads-rope-nembd-scale", "no-proj-no-mlp-rmsnorm", "heads-qkv-bias"])
def test_attention_weights_times_values_reproduce_the_attention_modules_output(settings):
    run = untrained_run(**settings)
    with torch.no_grad():  # biases start at zero; make them count
        for name, p in run.model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(len(name)))
    t = probe.trace(run, "abcabcha")
    for i, block in enumerate(t.blocks):
        w = block.weights  # (nh, T, T)
        assert w.shape == (2, 8, 8)
        assert torch.allclose(w.sum(dim=-1), torch.ones(2, 8), atol=1e-6), "every row is a distribution"
        assert torch.all(torch.triu(w, diagonal=1) == 0), "nothing above the diagonal: no peeking ahead"
        rebuilt = probe.heads_to_output(run.model.blocks[i].attn, w[None], block.values[None])[0]  # (T, C)
        assert torch.allclose(rebuilt, block.attn_out, atol=1e-5)
    logits, _ = run.model(torch.tensor([t.ids]))
    assert torch.allclose(t.logits, logits[0], atol=1e-6), "recording the pass did not change it"


def test_the_trained_model_attends_the_same_on_its_fused_and_teaching_paths(rhyme_run, rhyme):
    teaching = tinygpt.load(rhyme_run.out_dir, attention="heads")
    fused_w, heads_w = probe.trace(rhyme, PROMPT).weights, probe.trace(teaching, PROMPT).weights
    assert fused_w.shape == (2, 2, 4, 4)
    assert torch.allclose(fused_w, heads_w, atol=1e-5)
    assert fused_w[:, :, 0, 0].eq(1).all(), "the first token can only attend to itself"


def test_the_bigram_model_has_no_attention_to_show():
    run = untrained_run(arch="bigram")
    with pytest.raises(TinyGPTError, match="bigram.*no attention"):
        probe.trace(run, "abc")
    assert probe.top_k(run, "abc", k=2)["positions"][0]["token"] == "c"  # its probabilities still work


# ---- the attention picture ----------------------------------------------------------------------

def test_attention_picture_has_a_panel_per_layer_and_head_with_the_future_greyed_out(rhyme, tmp_path):
    t = probe.trace(rhyme, PROMPT)
    drawn = plots.plot_attention(t.weights.numpy(), t.tokens, tmp_path / "attention.png")
    image = pixels(tmp_path / "attention.png")
    assert image.shape[:2] == drawn["size"][::-1]
    assert [(p["layer"], p["head"]) for p in drawn["panels"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert np.allclose(drawn["weights"], t.weights.numpy())
    blues = colormaps["Blues"]
    for p in drawn["panels"]:
        x, y = cell_centre(p["box"], 4, row=0, col=3)  # query "mary" looking at "little": the future
        assert (image[y, x] == rgb(MASKED)).all()
        # The first row attends only to itself, weight 1: the darkest blue (sampled beside the printed "1.00").
        x, y = cell_centre(p["box"], 4, row=0, col=0)
        dx = (p["box"][2] - p["box"][0]) // 10
        assert np.abs(image[y, x - dx] - rgb(blues(1.0))).max() <= 2


def test_attention_picture_cannot_be_written_into_a_missing_folder(tmp_path):
    with pytest.raises(TinyGPTError, match="folder .*missing.* does not exist"):
        plots.plot_attention(np.ones((1, 1, 2, 2)) / 2, ["a", "b"], tmp_path / "missing" / "a.png")


# ---- embeddings ---------------------------------------------------------------------------------

def test_neighbours_are_the_tokens_with_the_highest_cosine_similarity(rhyme):
    result = probe.neighbours(rhyme, "lamb", k=5)
    emb = rhyme.model.tok_emb.weight.detach().numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    i = rhyme.tokenizer.encode("lamb")[0]
    cos = unit @ unit[i]
    cos[i] = -np.inf
    expected = np.argsort(-cos)[:5]
    assert [n["id"] for n in result["neighbours"]] == expected.tolist()
    assert [n["cosine"] for n in result["neighbours"]] == pytest.approx(cos[expected].tolist(), abs=1e-5)
    assert "lamb" not in [n["token"] for n in result["neighbours"]]


def test_neighbours_of_a_word_the_model_does_not_know_is_a_clear_error(rhyme):
    with pytest.raises(TinyGPTError, match="unknown word.*'dog'"):
        probe.neighbours(rhyme, "dog")
    with pytest.raises(TinyGPTError, match="one word"):
        probe.neighbours(rhyme, "little lamb")


def test_pca_projects_every_word_on_the_two_directions_of_largest_variance(rhyme, tmp_path):
    pca = probe.pca_2d(rhyme)
    assert len(pca["labels"]) == 35 and "<END>" in pca["labels"] and "mary" in pca["labels"]
    emb = rhyme.model.tok_emb.weight.detach().double().numpy()
    centred = emb - emb.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
    top2 = centred @ vectors[:, [-1, -2]]  # (V, 2), up to the sign of each axis
    assert np.allclose(np.abs(pca["points"]), np.abs(top2), atol=1e-4)
    assert pca["explained"] == pytest.approx((values[[-1, -2]] / values.sum()).tolist(), abs=1e-5)

    drawn = plots.plot_embeddings(pca["points"], pca["labels"], tmp_path / "emb.png", pca["explained"])
    assert pixels(tmp_path / "emb.png").shape == (800, 800, 3) and drawn["size"] == (800, 800)
    assert drawn["labelled"] == list(range(35)), "every word of the rhyme gets its label"
    assert len(drawn["panels"]) == 1


# ---- loss curves --------------------------------------------------------------------------------

def test_loss_plot_overlays_runs_with_the_numbers_from_their_metrics(rhyme_run, char_run, tmp_path):
    drawn = curves.plot_loss([rhyme_run.out_dir, char_run], tmp_path / "loss.png", x="tokens", log=True)
    assert pixels(tmp_path / "loss.png").shape == (500, 800, 3)
    rhyme_series, char_series = drawn["series"]
    records = read_metrics(Path(char_run) / "metrics.jsonl")
    assert char_series["x"] == [r["tokens"] for r in records]
    assert char_series["val"] == [r["val_loss"] for r in records]
    assert rhyme_series["x"][-1] == 1500 * 16 * 6  # steps x batch x block: the tokens the rhyme model saw
    # Both folders are called "run", so the legend names them by path. The rhyme preset trains on
    # all of the text, so it has no validation curve to draw.
    assert drawn["lines"] == [f"{rhyme_run.out_dir} train", f"{char_run} train", f"{char_run} val"]


def test_loss_plot_against_seconds_and_steps(char_run, tmp_path):
    by_step = curves.loss_series(char_run, "step")
    by_time = curves.loss_series(char_run, "seconds")
    assert by_step["x"] == [0, 20, 40]
    assert by_time["x"] == sorted(by_time["x"]) and by_time["train"] == by_step["train"]


def test_loss_plot_of_a_folder_without_metrics_is_a_clear_error(tmp_path):
    with pytest.raises(TinyGPTError, match="no metrics.jsonl"):
        curves.plot_loss([tmp_path], tmp_path / "loss.png")


# ---- the walkthrough ----------------------------------------------------------------------------

def test_explain_follows_the_prompt_through_the_model_with_its_real_numbers(rhyme):
    lines = []
    result = explain(rhyme, PROMPT, out=lines.append)
    text = "\n".join(lines)
    ids = rhyme.tokenizer.encode(PROMPT)
    assert "mary | had | a | little (4 tokens)" in text
    assert f"mary={ids[0]}, had={ids[1]}, a={ids[2]}, little={ids[3]}" in text
    assert "(35 x 32)" in text and "(6 x 32)" in text and "shape (4, 32)" in text
    assert "Block 1 of 2" in text and "Block 2 of 2" in text
    assert "softmax(query . key / sqrt(32))" in text  # the rhyme keeps the tutorial's sqrt(n_embd) scale
    assert "32 -> 128" in text
    top = probe.top_k(rhyme, PROMPT, k=1)["positions"][0]["top"][0]
    assert result["next_token"] == top["token"] == "lamb"
    assert f"picks it {top['prob']:.1%} of the time" in text
    # Per head, what each position attends to most is the argmax of its row of weights.
    weights = probe.trace(rhyme, PROMPT).weights
    for layer, heads in enumerate(result["attended"]):
        for head, picks in enumerate(heads):
            assert [p["attends_to"] for p in picks] == weights[layer, head].argmax(dim=-1).tolist()


def test_explain_describes_rotary_models_without_a_position_table():
    lines = []
    explain(untrained_run(pos_emb="rope"), "abc", out=lines.append)
    assert any("rotary" in line for line in lines)
    assert not any("position table" in line and "+ position" in line for line in lines)


def test_without_a_run_the_cached_rhyme_model_is_used(rhyme_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shutil.copytree(rhyme_run.out_dir, tmp_path / "tinygpt" / "runs" / "rhyme")
    assert main(["explain"]) == 0
    out = capsys.readouterr()
    assert "What this GPT does with 'mary had a little'" in out.out and "training" not in out.err


def test_without_a_run_or_a_cached_model_the_rhyme_model_is_trained_first(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls, said = [], []
    monkeypatch.setattr(tinygpt, "train", lambda **kw: calls.append(kw))
    monkeypatch.setattr("tinygpt.store.rundir.RunDir.finished", lambda run: bool(calls))
    where = default_run(say=said.append)
    assert where == tmp_path / "tinygpt" / "runs" / "rhyme"
    assert calls == [dict(preset="rhyme", out=str(where), progress=False, sample_tokens=0)]
    assert said and "training the nursery-rhyme model" in said[0]


# ---- the command line ---------------------------------------------------------------------------

def test_inspect_json_holds_tokens_probabilities_neighbours_and_the_pictures(rhyme_run, tmp_path, capsys):
    att, emb = tmp_path / "att.png", tmp_path / "emb.png"
    code = main(["inspect", str(rhyme_run.out_dir), "--prompt", PROMPT, "--json", "--top-k", "3",
                 "--attention", str(att), "--neighbours", "lamb", "--embeddings", str(emb)])
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["tokens"] == ["mary", "had", "a", "little"]
    assert doc["positions"][0]["top"][0]["token"] == "lamb" and len(doc["positions"][0]["top"]) == 3
    assert np.array(doc["attention"]["weights"]).shape == (2, 2, 4, 4)
    assert doc["neighbours"]["token"] == "lamb" and len(doc["embeddings"]["points"]) == 35
    # 2 x 2 panels of 3 inches, plus room for the title and the colour bar, at 100 dots per inch.
    assert Image.open(att).size == (720, 660) and Image.open(emb).size == (800, 800)


def test_inspect_prints_a_probability_table(rhyme_run, capsys):
    assert main(["inspect", str(rhyme_run.out_dir), "--prompt", "mary had", "--all-positions"]) == 0
    out = capsys.readouterr().out
    assert "next token after 'mary' (position 0)" in out and "next token after 'had' (position 1)" in out
    assert out.count("rank  token") == 2


@pytest.mark.parametrize("argv, message", [
    (["inspect", "RUN", "--prompt", "mary had a pony"], "unknown word(s) 'pony'"),
    (["inspect", "RUN", "--prompt", "mary", "--neighbours", "dog"], "unknown word(s) 'dog'"),
    (["inspect", "RUN", "--prompt", "mary", "--attention", "/no/such/folder/a.png"], "folder /no/such/folder does"),
    (["inspect", "RUN", "--prompt", "mary", "--embeddings", "emb.txt"], "not a picture format"),
    (["explain", "RUN"], "--prompt"),
    (["plot", "RUN/checkpoints"], "no metrics.jsonl"),
])
def test_bad_input_is_one_line_and_exit_status_2(rhyme_run, argv, message, capsys):
    argv = [a.replace("RUN", str(rhyme_run.out_dir)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_plot_command_writes_the_picture(char_run, tmp_path, capsys):
    assert main(["plot", str(char_run), "-o", str(tmp_path / "l.png"), "--x", "seconds"]) == 0
    assert "2 curve(s) of 1 run(s) against seconds" in capsys.readouterr().out
    assert Image.open(tmp_path / "l.png").size == (800, 500)


# ---- watching training --------------------------------------------------------------------------

def test_tensorboard_without_the_package_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if it were missing
    with pytest.raises(TinyGPTError, match=r"pip install 'tinygpt\[tensorboard\]'"):
        TensorBoardLog(tmp_path / "tb")


def test_training_writes_tensorboard_events_and_refreshes_loss_png(tiny_corpus, tmp_path):
    pytest.importorskip("tensorboard")
    from conftest import TINY_GPT
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    tinygpt.train(data=str(tiny_corpus), out=str(out), max_iters=20, eval_interval=10, tensorboard=True,
                  plot_every=10, **TINY_GPT)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    records = read_metrics(out / "metrics.jsonl")
    assert [(e.step, e.value) for e in events.Scalars("loss/val")] == [
        (r["step"], pytest.approx(r["val_loss"], rel=1e-6)) for r in records]
    assert Image.open(out / "loss.png").size == (800, 500)


def test_negative_plot_every_is_refused():
    with pytest.raises(TinyGPTError, match="plot_every must be 0 or more"):
        tinygpt.train(preset="rhyme", plot_every=-1)


def test_the_progress_bar_counts_down_a_time_budget(monkeypatch):
    from tinygpt.config import TrainConfig
    from tinygpt.training.progress import Clock, Schedule

    clock = Clock()
    schedule = Schedule(TrainConfig(time_budget="2m"), clock)
    monkeypatch.setattr(clock, "elapsed", lambda: 30.2)
    assert schedule.time_left() == "1:30"
    monkeypatch.setattr(clock, "elapsed", lambda: 200.0)
    assert schedule.time_left() == "0:00"


def test_a_large_vocabularys_pca_takes_the_covariance_way_to_the_same_axes(monkeypatch):
    torch.manual_seed(0)
    rows = torch.randn(600, 24) @ torch.randn(24, 24)  # (N, C): correlated, so the axes are well apart
    rows = rows - rows.mean(dim=0)
    exact, exact_var = probe.principal_axes(rows)  # an SVD: N <= SVD_ROWS
    monkeypatch.setattr(probe, "SVD_ROWS", 100)
    fast, fast_var = probe.principal_axes(rows)  # the covariance's eigenvectors
    torch.testing.assert_close(fast.abs(), exact.abs(), atol=1e-4, rtol=0)  # the same directions, up to sign
    torch.testing.assert_close(fast_var / fast_var.sum(), exact_var / exact_var.sum(), atol=1e-5, rtol=0)
