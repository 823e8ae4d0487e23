"""The rest of the Transformer: the encoder, cross-attention and the encoder-decoder.

An encoder sees both ways, a decoder only backwards; cross-attention's teaching heads compute the
fused path's function; cached decoding, re-running the target, and re-running the encoder at every
step give the same tokens; one beam is greedy; pre- and post-norm both train; a short run on the
built-in dates beats chance by far; and every bad input is one line.
"""

import json

import pytest
import torch

import tinygpt
from tinygpt.cli import main
from tinygpt.config import ModelConfig
from tinygpt.core.errors import TinyGPTError
from tinygpt.core.tokens import IGNORE
from tinygpt.data.dates import date_pairs, exact_match
from tinygpt.data.pairs import read_pairs
from tinygpt.generation.beam import beam_search, target_score
from tinygpt.generation.sampling import SamplingConfig
from tinygpt.generation.translate import translate_ids
from tinygpt.model import build_model
from tinygpt.model.cross_attention import CrossAttention, MultiHeadCrossAttention, merge_cross
from tinygpt.objectives.masked import mask_tokens

TINY = dict(vocab_size=23, block_size=16, n_layer=2, n_head=2, n_embd=16)


def tiny(arch: str, **changes):
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, **{**TINY, **changes}).validate()).eval()


# ---- which positions see which ----------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["fused", "heads"])
def test_an_encoder_position_sees_later_tokens_and_a_decoder_position_does_not(attention):
    idx = torch.tensor([[1, 2, 3, 4, 5, 6]])
    later = idx.clone()
    later[0, 5] = 9  # change the last token only
    for arch, changes_first in (("encoder", True), ("gpt", False)):
        model = tiny(arch, attention=attention)
        before, _ = model(idx)
        after, _ = model(later)
        assert (not torch.allclose(before[0, 0], after[0, 0])) == changes_first, arch


def test_the_encoders_teaching_path_computes_the_fused_paths_function():
    fused = tiny("encoder")
    heads = tiny("encoder", attention="heads")
    heads.load_canonical_state_dict(fused.canonical_state_dict())
    idx = torch.randint(23, (3, 9))
    torch.testing.assert_close(heads(idx)[0], fused(idx)[0], atol=1e-5, rtol=1e-5)


def test_cross_attention_teaching_heads_equal_the_fused_call_with_padding():
    cfg = ModelConfig(**TINY, qkv_bias=True).validate()
    torch.manual_seed(1)
    fused, taught = CrossAttention(cfg), MultiHeadCrossAttention(cfg)
    taught.load_state_dict(merge_cross_inverse(fused.state_dict(), cfg.n_head))
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)  # 5 target positions read 7 source positions
    mask = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])  # the second source is 4 tokens long
    torch.testing.assert_close(taught(x, taught.keys_values(memory), mask), fused(x, fused.keys_values(memory), mask),
                               atol=1e-6, rtol=1e-5)
    # and padding really is hidden: the second row's output ignores what its pads hold
    changed = memory.clone()
    changed[1, 4:] = 100.0
    torch.testing.assert_close(fused(x, fused.keys_values(changed), mask)[1], fused(x, fused.keys_values(memory),
                                                                                   mask)[1])


def merge_cross_inverse(fused_state: dict, n_head: int) -> dict:
    from tinygpt.model.cross_attention import split_cross

    state = split_cross(dict(fused_state), "", n_head)
    assert merge_cross(dict(state), "", n_head).keys() == fused_state.keys()
    return state


def test_the_encoder_decoder_on_the_teaching_path_loads_the_fused_checkpoint_and_agrees():
    fused = tiny("encoder-decoder", norm_position="post")
    heads = tiny("encoder-decoder", norm_position="post", attention="heads")
    heads.load_canonical_state_dict(fused.canonical_state_dict())
    src, idx = torch.randint(23, (2, 6)), torch.randint(23, (2, 4))
    torch.testing.assert_close(heads(src, idx)[0], fused(src, idx)[0], atol=1e-5, rtol=1e-5)


def test_post_norm_has_no_final_norm_and_pre_norm_has_one():
    assert sum(p.numel() for p in tiny("gpt").ln_f.parameters()) == 32  # weight and bias of 16
    assert sum(p.numel() for p in tiny("gpt", norm_position="post").ln_f.parameters()) == 0


# ---- decoding ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    """A small encoder-decoder trained for a few seconds on the built-in dates."""
    out = tmp_path_factory.mktemp("runs") / "dates"
    result = tinygpt.train(preset="seq2seq-demo", out=str(out), n_embd=32, max_iters=250, eval_interval=125,
                           progress=False)
    return result


def test_a_short_run_on_the_dates_beats_chance_by_far(dates_run):
    first = json.loads((dates_run.out_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert abs(first["val_loss"] - torch.log(torch.tensor(36.0)).item()) < 0.2  # 36 tokens: a uniform guess
    assert dates_run.val_loss < 0.6  # from 3.6: e^-0.6 = 0.55 of the probability on the right token
    run = tinygpt.load(dates_run.out_dir)
    held_out = date_pairs()[-40:]
    outputs = run.translate([s for s, _ in held_out])
    right_chars = sum(sum(a == b for a, b in zip(o, t)) for o, (_, t) in zip(outputs, held_out))
    assert right_chars / sum(len(t) for _, t in held_out) > 0.5  # chance: 1 in 36


def test_cached_uncached_and_reencoding_decoders_write_the_same_tokens(dates_run):
    run = tinygpt.load(dates_run.out_dir)
    sources = [run.encode(s) for s in ("1987-11-05", "2024-3-1", "1900-01-01")]  # one shorter: padding
    bos, eos = run.tokenizer.token_to_id("<|bos|>"), run.tokenizer.token_to_id("<|eos|>")
    for sampling, seeds in ((SamplingConfig(30, temperature=0.0), None), (SamplingConfig(30, temperature=1.0), 3)):
        def generators(seeds=seeds):
            return None if seeds is None else [torch.Generator().manual_seed(seeds + i) for i in range(3)]

        cached = translate_ids(run.model, sources, sampling, bos, eos, generators())
        assert translate_ids(run.model, sources, sampling, bos, eos, generators(), use_cache=False) == cached
        assert translate_ids(run.model, sources, sampling, bos, eos, generators(), use_cache=False,
                             encode_every_step=True) == cached
        assert all(len(c) > 3 for c in cached)


def test_translate_runs_the_encoder_once_per_batch_of_sources(dates_run):
    run = tinygpt.load(dates_run.out_dir)
    calls = []
    hook = run.model.encoder[0].register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    try:
        outputs = run.translate(["1987-11-05", "2001-02-03", "1950-12-31"])
        assert calls == [3]  # one pass over the three sources, then only the decoder, one token a step
        calls.clear()
        bos, eos = run.tokenizer.token_to_id("<|bos|>"), run.tokenizer.token_to_id("<|eos|>")
        translate_ids(run.model, [run.encode("1987-11-05")], SamplingConfig(30, temperature=0.0), bos, eos,
                      encode_every_step=True)
        assert len(calls) == len(outputs[0]) + 1  # re-encoding: once for every token written, and the end
    finally:
        hook.remove()


def exhaustive_best(model, source, limit, bos, eos, vocab):
    """The best target by the search's own score (total log-probability over length, <|eos|> counted),
    found by scoring every target of up to `limit` tokens, one batch per length."""
    import itertools

    import torch.nn.functional as F

    memory = model.encode(torch.tensor([source]))
    others = [t for t in range(vocab) if t != eos]
    candidates = [(0.0 if limit == 0 else None, [])]
    for n in range(limit + 1):
        targets = [list(t) for t in itertools.product(others, repeat=n)]
        ended = n < limit  # a target of `limit` tokens ends there, without <|eos|>
        wanted = torch.tensor([t + [eos] if ended else t for t in targets])  # (N, L)
        inputs = torch.tensor([[bos] + (t if ended else t[:-1]) for t in targets])  # (N, L)
        if wanted.size(1) == 0:
            continue
        logits = model.decode(inputs, memory.keep([0] * len(targets)))  # (N, L, V)
        totals = F.log_softmax(logits.float(), -1).gather(2, wanted[:, :, None]).sum((1, 2))  # (N,)
        candidates += [(total / wanted.size(1), t) for total, t in zip(totals.tolist(), targets)]
    return max(c for c in candidates if c[0] is not None)


def peaked(seed: int, scale: float):
    """A tiny random encoder-decoder of 5 tokens whose next-token distributions are far from uniform."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(arch="encoder-decoder", vocab_size=5, block_size=8, n_layer=1,
                                    n_encoder_layer=1, n_head=2, n_embd=16).validate()).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(scale)
    return model


def test_beam_search_finds_what_exhaustive_search_finds_and_never_scores_below_greedy():
    # 60 small models; on 6 of their 300 (model, width) searches, stopping once num_beams hypotheses had
    # finished returned a target the model scores below its greedy one.
    bos, eos, limit, source = 0, 1, 4, [2, 3, 4, 2]
    for seed in range(30):
        for scale in (4.0, 8.0):
            model = peaked(seed, scale)
            best_score, best = exhaustive_best(model, source, limit, bos, eos, 5)
            greedy = translate_ids(model, [source], SamplingConfig(limit, temperature=0.0), bos, eos)[0]
            greedy_score = target_score(model, source, greedy, bos, eos, ended=len(greedy) < limit)
            # Enough beams to hold every live target: beam search is then exhaustive.
            assert beam_search(model, source, 4 ** limit, limit, bos, eos) == best
            for beams in (1, 2, 3, 4, 8, 16):
                found = beam_search(model, source, beams, limit, bos, eos)
                score = target_score(model, source, found, bos, eos, ended=len(found) < limit)
                assert greedy_score - 1e-5 <= score <= best_score + 1e-5, (seed, scale, beams)


def test_beam_search_on_the_dates_is_never_below_greedy_by_the_models_score(dates_run):
    run = tinygpt.load(dates_run.out_dir)
    bos, eos = run.tokenizer.token_to_id("<|bos|>"), run.tokenizer.token_to_id("<|eos|>")
    for source, _ in date_pairs()[-12:]:
        ids = run.encode(source)
        greedy = translate_ids(run.model, [ids], SamplingConfig(30, temperature=0.0), bos, eos)[0]
        greedy_score = target_score(run.model, ids, greedy, bos, eos)
        for beams in (2, 3, 4, 5):
            found = beam_search(run.model, ids, beams, 30, bos, eos)
            assert target_score(run.model, ids, found, bos, eos) >= greedy_score - 1e-5
    assert run.translate("1987-11-05", num_beams=1) == run.translate("1987-11-05")


def test_translate_reads_sources_from_stdin_one_per_line(dates_run, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("1987-11-05\n2001-02-03\n"))
    assert main(["translate", str(dates_run.out_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    run = tinygpt.load(dates_run.out_dir)
    assert lines == run.translate(["1987-11-05", "2001-02-03"])


def test_eval_reports_target_loss_bits_per_character_and_exact_match(dates_run):
    result = tinygpt.load(dates_run.out_dir).evaluate()
    assert result["split"] == "val" and result["pairs"] == 500
    assert result["loss"] == pytest.approx(dates_run.best_val_loss, rel=1e-4)
    assert 0 < result["bits_per_char"] < 1.0 and 0.0 <= result["exact_match"] <= 100.0


def test_the_cross_attention_picture_is_target_by_source_and_its_rows_sum_to_one(dates_run, tmp_path, capsys):
    png = tmp_path / "cross.png"
    args = ["inspect", str(dates_run.out_dir), "--source", "1987-11-05", "--target", "5 november 1987",
            "--cross-attention", str(png), "--json"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    weights = torch.tensor(result["weights"])  # (L, nh, T, S)
    assert weights.shape == (2, 4, len("5 november 1987") + 1, len("1987-11-05"))
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]), atol=1e-5, rtol=0)
    assert result["rows"][-1] == "<|eos|>" and result["columns"][:4] == ["1", "9", "8", "7"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resuming_an_encoder_decoder_run_continues_it_exactly(tmp_path):
    settings = dict(preset="seq2seq-demo", n_embd=16, n_head=2, n_layer=1, eval_interval=10, progress=False)
    straight = tinygpt.train(out=str(tmp_path / "a"), max_iters=20, **settings)
    tinygpt.train(out=str(tmp_path / "b"), max_iters=10, **settings)
    resumed = tinygpt.train(resume=str(tmp_path / "b"), max_iters=20)
    assert resumed.step == 20 and resumed.val_loss == straight.val_loss


# ---- pre- and post-norm ------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["gpt", "encoder", "encoder-decoder"])
@pytest.mark.parametrize("position", ["pre", "post"])
def test_pre_norm_and_post_norm_both_train(arch, position):
    model = tiny(arch, norm_position=position).train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(20, (8, 12), generator=gen)
    targets = torch.where(torch.rand(8, 12, generator=gen) < 0.3, x, IGNORE) if arch == "encoder" else x.roll(-1, 1)
    inputs = torch.where(targets != IGNORE, 22, x) if arch == "encoder" else x  # 22: the mask's id here
    batch = (x.flip(1), inputs, targets) if arch == "encoder-decoder" else (inputs, targets)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        _, loss = model(*batch)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


# ---- the encoder's objective ---------------------------------------------------------------------------


def test_masking_hides_about_the_fraction_and_scores_only_what_it_hid():
    x = torch.randint(50, (64, 64))
    inputs, targets = mask_tokens(x, mask_id=50, fraction=0.15, generator=torch.Generator().manual_seed(0))
    hidden = targets != IGNORE
    assert 0.13 < hidden.float().mean() < 0.17
    assert torch.equal(targets[hidden], x[hidden])
    assert torch.equal(inputs[~hidden], x[~hidden])  # what is not scored is shown as it is
    assert 0.75 < (inputs[hidden] == 50).float().mean() < 0.85  # 80% of the hidden become <mask>


@pytest.fixture(scope="module")
def rhyme_encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rhyme-encoder"
    return tinygpt.train(preset="rhyme", arch="encoder", max_iters=400, out=str(out), progress=False, threads=1,
                         log=lambda line: None)


def test_fill_lists_likely_words_for_a_mask_in_the_rhyme(rhyme_encoder, capsys):
    r = rhyme_encoder
    assert main(["fill", str(r.out_dir), "--prompt", "mary had a <mask> lamb", "--top-k", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "<mask> 1 (token 3):" and len(out) == 4
    rows = tinygpt.load(r.out_dir).fill("mary had a <mask> lamb", 3)
    probs = [x["prob"] for x in rows[0]["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0 + 1e-6
    assert "<mask>" not in [x["token"] for x in rows[0]["top"]]
    assert main(["sample", str(r.out_dir), "--prompt", "mary"]) == 2
    assert "is an encoder" in capsys.readouterr().err


def test_inspect_on_an_encoder_lists_the_tokens_at_each_mask(rhyme_encoder, capsys):
    run = str(rhyme_encoder.out_dir)
    assert main(["inspect", run, "--prompt", "<mask> had a <mask> lamb", "--top-k", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [row["position"] for row in result["positions"]] == [0, 3]  # the gaps, not the last token
    assert all(row["token"] == "<mask>" for row in result["positions"])
    assert main(["inspect", run, "--prompt", "mary had a little lamb", "--json"]) == 0  # no gap: the last token
    assert [row["position"] for row in json.loads(capsys.readouterr().out)["positions"]] == [4]
    assert main(["inspect", run, "--prompt", "<mask> had", "--all-positions", "--json"]) == 0
    assert [row["position"] for row in json.loads(capsys.readouterr().out)["positions"]] == [0, 1]


def test_an_encoders_attention_maps_are_full_and_explain_points_elsewhere(rhyme_encoder, tmp_path, capsys):
    png = tmp_path / "attention.png"
    assert main(["inspect", str(rhyme_encoder.out_dir), "--prompt", "mary had a little lamb", "--attention", str(png),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    weights = torch.tensor(result["attention"]["weights"])  # (L, nh, T, T)
    assert weights.shape == (2, 2, 5, 5)
    assert torch.triu(weights, diagonal=1).sum() > 0.5  # earlier positions read later ones
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5), atol=1e-5, rtol=0)
    assert result["reads"] == "at"
    assert main(["explain", str(rhyme_encoder.out_dir), "--prompt", "mary"]) == 2
    assert "is an encoder, which fills in hidden tokens" in capsys.readouterr().err


def test_an_encoder_decoder_on_plain_text_asks_for_pairs(tmp_path):
    with pytest.raises(TinyGPTError, match="an encoder-decoder trains on source/target pairs, not on the text 'rhyme'"):
        tinygpt.train(arch="encoder-decoder", data="rhyme", out=str(tmp_path / "x"), progress=False)


# ---- bad inputs: one line each ------------------------------------------------------------------------


@pytest.mark.parametrize("content, message", [
    ('{"source": "a"}\n', "pairs.jsonl:1: the pair has no 'target'"),
    ('{"source": "", "target": "b"}\n', "pairs.jsonl:1: the source is empty"),
    ('{"source": 3, "target": "b"}\n', "pairs.jsonl:1: 'source' must be a string"),
])
def test_bad_jsonl_pairs_are_named_by_file_and_line(tmp_path, content, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(content)
    with pytest.raises(TinyGPTError, match=message):
        read_pairs(str(path))


def test_a_tsv_line_without_its_second_column_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("a\tb\nno tab here\n")
    with pytest.raises(TinyGPTError, match=r"pairs.tsv:2: expected two tab-separated columns, source<TAB>target, "
                                           "found no tab"):
        read_pairs(str(path))


def test_pairs_read_from_tsv_and_jsonl_are_the_same(tmp_path):
    (tmp_path / "p.tsv").write_text("1987-11-05\t5 november 1987\n\n2001-02-03\t3 february 2001\n")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"source": s, "target": t})
                                                for s, t in [("1987-11-05", "5 november 1987"),
                                                             ("2001-02-03", "3 february 2001")]))
    tsv, _ = read_pairs(str(tmp_path / "p.tsv"))
    jsonl, _ = read_pairs(str(tmp_path / "p.jsonl"))
    assert [(p.source, p.target) for p in tsv] == [(p.source, p.target) for p in jsonl]
    assert tsv[1].where.endswith("p.tsv:3")


def test_the_wrong_kind_of_run_is_one_line(dates_run, rhyme_run, capsys):
    assert main(["translate", str(rhyme_run.out_dir), "--source", "mary"]) == 2
    assert "not an encoder-decoder: it has no source to translate from" in capsys.readouterr().err
    assert main(["fill", str(rhyme_run.out_dir), "--prompt", "mary had a <mask> lamb"]) == 2
    assert "reads a text from the left only and has no <mask> token" in capsys.readouterr().err
    assert main(["translate", str(dates_run.out_dir), "--source", "  "]) == 2
    assert "a source is empty" in capsys.readouterr().err
    assert main(["export", str(dates_run.out_dir), "--to", "hf", "--out", str(dates_run.out_dir) + "-hf"]) == 2
    assert "encoder-decoder model, not a decoder-only language model" in capsys.readouterr().err
    assert main(["sft", str(dates_run.out_dir), "--data", "chats.jsonl"]) == 2
    assert "is an encoder-decoder model; tinygpt sft trains a decoder-only GPT" in capsys.readouterr().err


def test_the_demo_task_is_deterministic_distinct_and_rewrites_and_reorders():
    pairs = date_pairs()
    assert pairs == date_pairs() and len({s for s, _ in pairs}) == len(pairs) == 5000
    source, target = pairs[0]
    year, month, day = source.split("-")
    assert target.split()[0] == str(int(day)) and target.split()[2] == year and target.split()[1].isalpha()
    assert exact_match(["a", "b"], ["a", "c"]) == 50.0


# ---- the lesson -----------------------------------------------------------------------------------------


def test_the_transformer_lesson_shows_three_masks_a_cross_step_by_hand_and_measured_gradients():
    from tinygpt.lessons import transformer

    lines = []
    r = transformer.run(out=lines.append)
    masks = r["masks"]
    assert torch.equal(masks["causal"], torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    assert masks["none"].all() and masks["cross"].all() and masks["cross"].shape == (3, 4)
    step = r["cross"]
    torch.testing.assert_close(step["weights"].sum(-1), torch.ones(3))
    torch.testing.assert_close(step["by_hand"], step["module"], atol=1e-6, rtol=0)
    grads = r["gradients"]
    assert all(g["first"] > 0 and g["last"] > 0 for g in grads.values())
    assert grads["pre"]["first"] != grads["post"]["first"]  # the same start, a different arrangement
    assert any("the module (CrossHead) gives the same output? True" in line for line in lines)


def test_sources_can_have_a_tokenizer_of_their_own(tmp_path):
    out = tmp_path / "own"
    result = tinygpt.train(preset="seq2seq-demo", out=str(out), source_tokenizer="char", tokenizer="word",
                           n_embd=32, n_layer=1, max_iters=30, eval_interval=30, progress=False, log=lambda line: None)
    run = tinygpt.load(out)
    assert run.source_tokenizer.kind == "char" and run.tokenizer.kind == "word"
    assert run.model_config.source_vocab_size == run.source_tokenizer.vocab_size == 12  # digits, '-', a line break
    assert run.model.src_emb.weight.shape == (12, 32)
    assert "november" in run.tokenizer.stoi and run.tokenizer.encode("5 november 1987") != []
    assert len(run.translate("1987-11-05").split()) >= 1
    resumed = tinygpt.train(resume=str(out), max_iters=40)
    assert resumed.step == 40 and resumed.num_params == result.num_params
