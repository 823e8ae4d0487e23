"""`tinygpt params`: where a model's parameters are, summing to the run's own count."""

import json

import pytest

import tinygpt
from tinygpt.cli import main
from tinygpt.config.model import ModelConfig
from tinygpt.model import build_model
from tinygpt.viz.params import component_of, count_parameters


@pytest.fixture(scope="module")
def rhyme_one_step(tmp_path_factory):
    """A real rhyme run (one step is enough: counting needs the shapes, not trained weights)."""
    out = tmp_path_factory.mktemp("params") / "rhyme"
    tinygpt.train(preset="rhyme", out=str(out), max_iters=1, progress=False, sample_tokens=0, threads=1)
    return out


def params_json(capsys, *argv) -> dict:
    assert main(["params", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_rhyme_runs_parameters_sum_to_its_27747(rhyme_one_step, capsys):
    r = params_json(capsys, str(rhyme_one_step))
    config = json.loads((rhyme_one_step / "config.json").read_text())
    assert r["total"] == config["num_params"] == 27_747
    parts = {name: c["params"] for name, c in r["components"].items()}
    # token 35 x 32 + position 6 x 32; per layer qkv 96 x 32 + proj 32 x 32 + 32; 32 -> 128 -> 32; 2 norms
    assert parts == {"embeddings": 1_312, "attention": 8_256, "feed-forward": 16_704, "norms": 320, "head": 1_155}
    assert sum(parts.values()) == r["total"]
    assert sum(c["share"] for c in r["components"].values()) == pytest.approx(1.0)
    assert r["layers"] == [{"attention": 4_128, "feed-forward": 8_352, "norms": 128, "total": 12_608}] * 2
    assert r["outside_layers"] == {"embeddings": 1_312, "norms": 64, "head": 1_155}


@pytest.mark.parametrize(("preset", "total"), [("lecture-small", 209_729), ("lecture", 10_788_929)])
def test_a_presets_parameters_sum_to_its_published_count(preset, total, capsys, shakespeare_file):
    r = params_json(capsys, "--preset", preset)
    assert r["total"] == total
    assert sum(c["params"] for c in r["components"].values()) == total
    assert sum(layer["total"] for layer in r["layers"]) + sum(r["outside_layers"].values()) == total
    assert sum(t["params"] for t in r["tensors"]) == total


def test_the_lecture_model_is_compared_with_gpt2_and_gpt3(capsys, shakespeare_file):
    assert main(["params", "--preset", "lecture"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("preset lecture: 10,788,929 parameters (6 layers, 6 heads, n_embd 384, block_size 256")
    assert "feed-forward     7,089,408   65.7%" in text
    assert "blocks.*.attn.qkv.weight     1152 x 384     442,368   6    2,654,208" in text
    assert "trains on 5,000 steps x 64 x 256 = 81,920,000 tokens of a 1,115,394-token text" in text
    assert "GPT-2 (smallest)    124M parameters, 11 times as many" in text
    assert "GPT-3               175B parameters, 16,220 times as many; trained on 300 billion tokens" in text


def test_every_kind_of_model_is_counted_in_full():
    for settings in (dict(arch="bigram"), dict(attention="heads", norm="handwritten"), dict(tie_weights=True),
                     dict(arch="reward"), dict(pos_emb="rope", qk_norm=True, norm="rmsnorm")):
        model = build_model(ModelConfig(vocab_size=65, n_layer=2, **settings))
        counts = count_parameters(model, tied=settings.get("tie_weights", False))
        assert counts["total"] == model.num_params(), settings
        assert sum(c["params"] for c in counts["components"].values()) == counts["total"], settings
        assert "other" not in counts["components"], settings


def test_parameter_names_map_to_components():
    assert component_of("blocks.3.attn.heads.1.key.weight") == ("attention", 3)
    assert component_of("blocks.0.mlp.fc.bias") == ("feed-forward", 0)
    assert component_of("blocks.1.ln2.weight") == ("norms", 1)
    assert component_of("ln_f.weight") == ("norms", None)
    assert component_of("lm_head.weight") == ("head", None)
    assert component_of("table.weight") == ("embeddings", None)


def test_params_refuses_a_run_and_a_preset_together(capsys):
    assert main(["params", "runs/x", "--preset", "rhyme"]) == 2
    assert "count either a run or a preset, not both" in capsys.readouterr().err
