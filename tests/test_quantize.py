"""--quantize int8 (issue 26, item 4): the linear layers' weights stored as int8 with a scale per row, for
sampling and evaluating; what it costs in loss is measured in benchmarks/, what it computes is checked here."""

import pytest
import torch
import torch.nn as nn
from refusals import one_line, run_cli

import tinygpt
from tinygpt.config import ModelConfig
from tinygpt.core.errors import TinyGPTError
from tinygpt.model import build_model
from tinygpt.model.quantize import FEW_ROWS, Int8Linear, quantize_int8


@pytest.mark.parametrize("in_features", [64, 96, 33])  # 33: not a multiple of 8, the kernel's block
@pytest.mark.parametrize("rows", [1, FEW_ROWS, 50])  # the int8 kernel's rows, and the dequantized path's
def test_an_int8_layer_computes_its_float_layer_to_a_percent(in_features, rows):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, 40)
    x = torch.randn(2, rows, in_features)
    want, got = linear(x), Int8Linear(linear)(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert ((got - want).norm() / want.norm()).item() < 0.01


def test_the_int8_weights_are_each_rows_nearest_steps_of_its_scale():
    torch.manual_seed(0)
    linear = nn.Linear(16, 8, bias=False)
    q = Int8Linear(linear)
    assert q.weight_int8.dtype == torch.int8 and q.weight_int8.abs().max().item() == 127  # each row's largest
    step = q.scale.float()[:, None]
    assert ((q.weight - linear.weight).abs() <= step / 2 + 1e-7).all()  # rounded to the nearest step


def test_quantizing_a_gpt_replaces_every_linear_layer_and_keeps_its_predictions():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=32).validate()).eval()
    ids = torch.randint(0, 40, (3, 16))
    with torch.no_grad():
        want = model(ids)[0]
        assert quantize_int8(model) == 2 * 4 + 1  # per block: qkv, proj, fc, proj; and the head
        got = model(ids)[0]
        step = model(ids[:1, :1])[0]  # one token: the int8 kernel
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert ((got - want).norm() / want.norm()).item() < 0.02
    assert torch.allclose(step[0, 0], got[0, 0], atol=0.05)


def test_load_quantizes_and_refuses_an_unknown_kind(char_run):
    run = tinygpt.load(char_run, quantize="int8")
    assert run.quantize == "int8"
    assert tinygpt.load(char_run).quantize == "none"
    with pytest.raises(TinyGPTError, match="quantize must be one of none, int8"):
        tinygpt.load(char_run, quantize="int4")


def test_sample_and_eval_take_quantize_int8(capsys, char_run):
    code, out, err = run_cli(capsys, "sample", char_run, "--prompt", "mary", "--max-new-tokens", "20", "--seed", "1",
                             "--quantize", "int8")
    assert code == 0 and out.startswith("mary"), err
    code, out, err = run_cli(capsys, "eval", char_run, "--json", "--quantize", "int8")
    assert code == 0 and '"loss"' in out, err
    one_line(*run_cli(capsys, "sample", char_run, "--quantize", "int4")[::2], "--quantize", "int4")


def test_serve_refuses_to_watch_quantized_weights(capsys, char_run):
    one_line(*run_cli(capsys, "serve", char_run, "--watch", "--quantize", "int8")[::2], "--watch", "--quantize")
