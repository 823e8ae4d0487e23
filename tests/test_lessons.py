"""The lessons print worked examples; these tests pin down the numbers a learner is told to expect."""

import itertools
import math

import pytest
import torch

from tinygpt.lessons import attention, basics


@pytest.fixture(scope="module")
def basics_result():
    return basics.run(out=lambda line: None)


@pytest.fixture(scope="module")
def attention_result():
    return attention.run(out=lambda line: None)


# ---- basics ----------------------------------------------------------------------------------


def test_one_neuron_computes_relu_of_weighted_sum_plus_bias(basics_result):
    # 0.8*0.6 + 0.2*(-0.4) + 0.1 = 0.48 - 0.08 + 0.1 = 0.5, positive, so ReLU leaves it at 0.5
    assert basics_result["neuron_z"] == pytest.approx(0.5, abs=1e-12)
    assert basics_result["neuron_output"] == pytest.approx(0.5, abs=1e-12)


def test_relu_zeroes_negative_sums():
    assert basics.neuron((0.8, 0.2), (-0.6, 0.4), 0.1) == pytest.approx((-0.3, 0.0))


def test_network_forward_pass_gives_the_documented_numbers(basics_result):
    h1, h2 = basics_result["hidden"]
    assert h1 == pytest.approx(0.5)
    assert h2 == pytest.approx(0.3)
    assert basics_result["network_output"] == pytest.approx(0.5)  # 0.9*0.5 - 0.5*0.3 + 0.2
    assert basics_result["loss"] == pytest.approx(0.25)  # (0.5 - 1.0)^2


def test_hand_chain_rule_matches_autograd(basics_result):
    # dL/dw = 2(y - t) * v1 * relu'(z1) * x1 = -1.0 * 0.9 * 1 * 0.8
    assert basics_result["hand_grad"] == pytest.approx(-0.72, abs=1e-12)
    assert abs(basics_result["hand_grad"] - basics_result["autograd_grad"]) < 1e-6


def test_gradient_descent_walks_monotonically_to_three(basics_result):
    ws = basics_result["gd_trajectory"]
    assert ws[0] == 1.0
    assert ws[1] == pytest.approx(1.4)  # 1 - 0.1 * 2 * (1 - 3)
    assert all(a < b < 3 for a, b in itertools.pairwise(ws))
    # each step keeps 80% of the distance to 3: 2 * 0.8**20 = 0.023
    assert 3 - ws[-1] == pytest.approx(2 * 0.8 ** (len(ws) - 1))
    assert 3 - ws[-1] < 0.025


def test_sgd_training_drives_the_output_to_the_target(basics_result):
    losses = basics_result["sgd_losses"]
    assert len(losses) == 10
    assert losses[0] == pytest.approx(0.25)
    assert all(b < a for a, b in itertools.pairwise(losses))
    # measured: last printed loss 1.05e-10, output after the 10th update 0.999997
    assert losses[-1] < 1e-9
    assert abs(basics_result["sgd_final_output"] - 1.0) < 1e-5


def test_basics_printout_shows_the_key_numbers():
    lines = []
    basics.run(out=lines.append)
    text = "\n".join(lines)
    assert "0.48 - 0.08 + 0.1 = 0.50" in text
    assert "= 0.50" in text and "0.2500" in text
    assert "dL/dw   = -1.0000 * 0.9 * 1.0 * 0.8 = -0.7200" in text
    assert "torch autograd gives dL/dw = -0.7200" in text
    assert "w <- w - 0.1*slope = 1.4000" in text
    assert "step 10: output" in text
    assert "after 10 steps the output is 0.999997" in text


# ---- attention -------------------------------------------------------------------------------


def test_attention_input_has_lecture_shape(attention_result):
    assert attention_result["x"].shape == (4, 8, 2)


def test_the_three_averages_agree(attention_result):
    r = attention_result
    assert r["max_diff_matmul"] < 1e-6
    assert r["max_diff_softmax"] < 1e-6
    assert (r["xbow_loop"] - r["xbow_softmax"]).abs().max() < 1e-6
    # the loop really is a running mean: last position = mean of the whole sequence
    assert torch.allclose(r["xbow_loop"][:, -1], r["x"].mean(dim=1), atol=1e-6)


def test_averaging_weights_are_lower_triangular_with_equal_shares(attention_result):
    wei = attention_result["wei_matmul"]
    expected_row_3 = torch.tensor([0.25, 0.25, 0.25, 0.25, 0, 0, 0, 0])
    assert torch.allclose(wei[3], expected_row_3)
    assert torch.allclose(wei, attention_result["wei_softmax"], atol=1e-7)


def test_self_attention_weights_are_causal_and_rows_sum_to_one(attention_result):
    wei = attention_result["attention_weights"]
    assert wei.shape == (4, 8, 8)
    assert attention_result["attention_max_above_diagonal"] == 0.0
    assert torch.triu(wei, diagonal=1).abs().max() == 0.0
    assert torch.allclose(wei.sum(dim=-1), torch.ones(4, 8), atol=1e-6)
    assert attention_result["attention_row_sum_error"] < 1e-6
    assert attention_result["attention_out"].shape == (4, 8, 16)


def test_self_attention_weights_depend_on_the_data(attention_result):
    wei = attention_result["attention_weights"]
    # unlike the plain average, two sequences get different weights
    assert not torch.allclose(wei[0], wei[1])
    assert not torch.allclose(wei[0], attention_result["wei_matmul"])


def test_scaling_by_sqrt_head_size_brings_score_variance_to_one(attention_result):
    r = attention_result
    head_size = r["head_size"]
    assert head_size == 16
    # over 50 seeds the scaled variance ranged 0.986-1.017 (std 0.007); allow 5%
    assert r["var_scaled"] == pytest.approx(1.0, rel=0.05)
    assert r["var_unscaled"] == pytest.approx(head_size, rel=0.05)
    assert r["var_unscaled"] / r["var_scaled"] == pytest.approx(head_size, rel=1e-5)


def test_large_scores_saturate_the_softmax(attention_result):
    r = attention_result
    # unscaled scores (variance 16) give one favourite position most of the weight
    assert r["top_weight_unscaled"] > 0.5
    assert r["top_weight_scaled"] < 0.25
    # the 5-score demo: max weight 0.277 becomes 0.767 when the scores are multiplied by 8
    assert r["softmax_max_weight"] == pytest.approx(0.2774, abs=1e-4)
    assert r["softmax_sharpened_max_weight"] == pytest.approx(0.7666, abs=1e-4)
    assert r["softmax_sharpened_max_weight"] > 2.5 * r["softmax_max_weight"]


def test_attention_printout_shows_each_check(capsys):
    attention.run()
    text = capsys.readouterr().out
    assert text.count("same as the loop? True") == 2
    assert "same weights as way 2? True" in text
    assert "largest weight above the diagonal = 0.0" in text
    assert "var(q @ k^T / sqrt(16)) = 0.995" in text
    assert "max weight 0.7666" in text


def test_lessons_are_deterministic():
    first = attention.run(out=lambda line: None)
    second = attention.run(out=lambda line: None)
    assert torch.equal(first["attention_weights"], second["attention_weights"])
    assert math.isclose(first["var_scaled"], second["var_scaled"])
    assert basics.run(out=lambda line: None)["sgd_losses"] == basics.run(out=lambda line: None)["sgd_losses"]
