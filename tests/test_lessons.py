"""The lessons print worked examples; these tests pin down the numbers a learner is told to expect."""

import json
import math
import re

import pytest
import torch

from tinygpt.cli import main
from tinygpt.lessons import LESSONS, attention, basics, data, norms


@pytest.fixture(scope="module")
def basics_result():
    return basics.run(out=lambda line: None)


@pytest.fixture(scope="module")
def data_result(shakespeare_file):
    return data.run(out=lambda line: None)


@pytest.fixture(scope="module")
def attention_result():
    return attention.run(out=lambda line: None)


# ---- basics: the tutorial's worked numbers (SPEC 1) --------------------------------------------


def test_one_neuron_computes_relu_of_weighted_sum_plus_bias(basics_result):
    # 0.8*0.6 + 0.2*(-0.4) + 0.1 = 0.48 - 0.08 + 0.1 = 0.5, positive, so ReLU leaves it at 0.5
    assert basics_result["neuron"] == pytest.approx({"z": 0.5, "output": 0.5}, abs=1e-12)


def test_relu_zeroes_negative_sums():
    assert basics.neuron((0.8, 0.2), (-0.6, 0.4), 0.1) == pytest.approx((-0.3, 0.0))


def test_network_forward_pass_gives_the_tutorials_numbers_with_a_dead_unit(basics_result):
    assert basics_result["hidden_sums"] == pytest.approx([0.56, -0.1])
    assert basics_result["hidden"] == pytest.approx([0.56, 0.0])  # h2's sum is negative: ReLU kills it
    assert round(basics_result["output"], 4) == 0.4420
    assert round(basics_result["loss"], 4) == 0.3114  # (1 - 0.442)^2


def test_the_tutorials_chain_rule_and_update_are_reproduced(basics_result):
    tutorial = basics_result["tutorial"]
    assert round(tutorial["loss"], 4) == 0.1971  # from the tutorial's prediction 0.556
    assert round(tutorial["dL_dy"], 4) == -0.8880
    assert round(tutorial["gradient"], 4) == -0.4973
    assert round(tutorial["update"]["weight"], 4) == 0.7497
    assert round(tutorial["update"]["output"], 4) == 0.4698
    assert round(tutorial["update"]["loss"], 4) == 0.2811  # down from 0.3114


def test_the_consistent_gradient_is_autograds(basics_result):
    assert round(basics_result["gradient"], 4) == -0.6250  # -2 x 0.5580 x 0.56
    assert abs(basics_result["gradient"] - basics_result["autograd_gradient"]) < 1e-12
    assert round(basics_result["update"]["weight"], 4) == 0.7625
    assert basics_result["update"]["loss"] < basics_result["tutorial"]["update"]["loss"]


def test_one_step_uphill_against_one_step_downhill(basics_result):
    assert basics_result["uphill"] == pytest.approx({"w": 0.6, "loss": 5.76})
    assert basics_result["downhill"] == pytest.approx({"w": 1.4, "loss": 2.56})


def test_eight_steps_of_gradient_descent_from_zero(basics_result):
    ws = [round(row["w"], 4) for row in basics_result["descent"]]
    assert ws == [0.6, 1.08, 1.464, 1.7712, 2.0170, 2.2136, 2.3709, 2.4967]
    assert round(basics_result["descent"][-1]["loss"], 4) == 0.2533


def test_the_pytorch_loop_under_seed_42_gives_the_tutorials_epochs(basics_result):
    epochs = basics_result["torch_epochs"]
    assert len(epochs) == 10
    assert [round(e["prediction"], 4) for e in epochs[0:10:2]] == [0.5456, 0.7946, 0.9066, 0.9579, 0.9812]
    assert round(epochs[0]["loss"], 4) == 0.2065
    assert round(epochs[-1]["prediction"], 4) == 0.9874 and round(epochs[-1]["loss"], 4) == 0.0002


def test_basics_printout_shows_the_tutorials_numbers_and_says_where_its_text_disagrees():
    lines = []
    basics.run(out=lines.append)
    text = "\n".join(lines)
    assert "0.48 - 0.08 + 0.1 = 0.50" in text
    assert "ReLU(-0.10) = 0.00" in text and "'dead' unit" in text
    assert "ReLU(0.392 + 0.0 + 0.05) = 0.4420" in text
    assert "the tutorial prints (1.0 - 0.5560)^2 = 0.1971 here" in text and "0.4420 gives 0.3114" in text
    assert "dL/dw = (-0.8880) x 1.0 x 0.56 = -0.4973" in text
    assert "= 0.7497; forward again: y 0.4420 -> 0.4698, loss 0.3114 -> 0.2811" in text
    assert "torch autograd gives -0.6250" in text
    assert "a step with the slope (uphill):     w = 0.6, loss 5.76" in text
    assert "step 8: w = 2.4967, loss 0.2533" in text
    assert "epoch 9: prediction 0.9874, loss 0.0002" in text


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
    # the lecture's five scores, and the same times 8: peaky, towards one-hot
    assert [round(v, 4) for v in r["softmax"].tolist()] == [0.1925, 0.1426, 0.2351, 0.1426, 0.2872]
    assert [round(v, 4) for v in r["softmax_sharpened"].tolist()] == [0.0326, 0.0030, 0.1615, 0.0030, 0.8000]


def test_the_lectures_toy_turns_sums_into_running_averages(attention_result):
    r = attention_result
    assert r["toy_b"].tolist() == [[2, 7], [6, 4], [6, 5]]  # torch.manual_seed(42), randint(0, 10, (3, 2))
    assert r["toy_sums"].tolist() == [[14, 16]] * 3
    assert [[round(v, 4) for v in row] for row in r["toy_averages"].tolist()] == [[2, 7], [4, 5.5], [4.6667, 5.3333]]


def test_the_lectures_variance_draw_is_seeded_and_near_one(attention_result):
    draw = attention_result["lecture_draw"]
    # seed 1337, (4, 8, 16): measured 1.0877, 1.0594, 1.1527 (the lecture's unseeded 1.0449, 1.0700, 1.0918)
    assert [round(draw[k], 4) for k in ("var_k", "var_q", "var_wei")] == [1.0877, 1.0594, 1.1527]
    assert draw["var_unscaled"] == pytest.approx(16 * draw["var_wei"], rel=1e-5)


def test_attention_printout_shows_each_check(capsys):
    attention.run()
    text = capsys.readouterr().out
    assert text.count("same as the loop? True") == 2
    assert "same weights as way 2? True" in text
    assert "largest weight above the diagonal = 0.0" in text
    assert "var(q @ k^T / sqrt(16)) = 0.995" in text
    assert "softmax(scores*8)  [0.0326, 0.0030, 0.1615, 0.0030, 0.8000]  max weight 0.8000" in text


def test_lessons_are_deterministic():
    first = attention.run(out=lambda line: None)
    second = attention.run(out=lambda line: None)
    assert torch.equal(first["attention_weights"], second["attention_weights"])
    assert math.isclose(first["var_scaled"], second["var_scaled"])
    assert basics.run(out=lambda line: None)["torch_epochs"] == basics.run(out=lambda line: None)["torch_epochs"]


# ---- data: the lecture's path from text to batches (SPEC 2) -------------------------------------


def test_tiny_shakespeare_has_the_lectures_size_vocabulary_and_encoding(data_result):
    r = data_result
    assert r["characters"] == 1_115_394
    assert r["vocab_size"] == 65 and r["vocab"].startswith("\n !$&") and r["vocab"].endswith("xyz")
    assert r["encoded"] == [46, 47, 47, 1, 58, 46, 43, 56, 43] and r["decoded"] == "hii there"
    assert (r["train_tokens"], r["val_tokens"]) == (1_003_854, 111_540)  # int(0.9 * N) trains


def test_the_first_block_of_nine_holds_eight_examples(data_result):
    examples = data_result["examples"]
    assert len(examples) == 8
    assert examples[0] == {"context": [18], "target": 47}
    assert examples[2] == {"context": [18, 47, 56], "target": 57}
    assert examples[-1] == {"context": [18, 47, 56, 57, 58, 1, 15, 47], "target": 58}


def test_the_seed_1337_batch_is_the_lectures(data_result):
    x, y = data_result["batch_inputs"], data_result["batch_targets"]
    assert x.tolist() == [[24, 43, 58, 5, 57, 1, 46, 43], [44, 53, 56, 1, 58, 46, 39, 58],
                          [52, 58, 1, 58, 46, 39, 58, 1], [25, 17, 27, 10, 0, 21, 1, 54]]
    assert y[:, :-1].tolist() == x[:, 1:].tolist()  # the targets are the inputs shifted by one
    assert y[:, -1].tolist() == [39, 1, 46, 39]


def test_the_untrained_bigram_scores_worse_than_uniform_guessing(data_result):
    assert round(data_result["bigram_loss"], 4) == 4.8786
    assert round(data_result["uniform_loss"], 2) == 4.17
    # unit-Gaussian scores: about ln 65 + 1/2 on average (measured over the training split: 4.7262)
    assert data_result["bigram_loss_whole_train"] == pytest.approx(math.log(65) + 0.5, abs=0.1)


def test_the_word_level_version_shifts_the_rhymes_words(data_result):
    r = data_result
    assert (r["words"], r["word_vocab_size"]) == (106, 35)
    assert r["word_inputs"][1:] == r["word_targets"][:-1] and len(r["word_inputs"]) == 6


def test_the_data_lesson_runs_on_the_learners_own_text(tmp_path, capsys):
    own = tmp_path / "own.txt"
    own.write_text("the cat sat on the mat and the dog sat on the log\n")
    assert main(["lesson", "data", "--data", str(own), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["characters"] == 50 and r["vocab"] == "\n acdeghlmnost"
    assert r["decoded"] == "the cat s"  # 'hii there' has letters this text lacks, so its first 9 characters
    assert r["train_tokens"] == 45 and r["examples"][0] == {"context": [13], "target": 7}  # t -> h
    assert r["word_inputs"] == [7, 1, 6, 5, 7, 4] and r["word_targets"] == [1, 6, 5, 7, 4, 0]


def test_the_data_lesson_refuses_a_text_too_short_for_a_block(tmp_path, capsys):
    short = tmp_path / "short.txt"
    short.write_text("hello")
    assert main(["lesson", "data", "--data", str(short)]) == 2
    assert capsys.readouterr().err.strip().endswith(f"needs a text of at least 12 characters; {short} has 5")


# ---- norms: LayerNorm by hand, and residual paths ------------------------------------------------


@pytest.fixture(scope="module")
def norms_result():
    return norms.run(out=lambda line: None)


def test_layernorm_by_hand_gives_the_lectures_column_and_row_statistics(norms_result):
    layer = norms_result["layernorm"]
    assert (round(layer["column_mean"], 4), round(layer["column_std"], 4)) == (0.1469, 0.8803)
    assert abs(layer["row_mean"]) < 1e-6 and round(layer["row_std"], 4) == 1.0
    batch = norms_result["batchnorm"]  # the other dimension: now the columns are normalised
    assert abs(batch["column_mean"]) < 1e-6 and round(batch["column_std"], 4) == 1.0


def test_the_hand_written_layernorm_is_nn_layernorm_once_the_variance_divides_by_n(norms_result):
    assert norms_result["max_diff_nn_layernorm"] < 1e-6
    assert 0.01 < norms_result["max_diff_lecture_var"] < 0.03  # x.var divides by n - 1


def test_residual_paths_carry_the_gradient_down_and_the_stack_learns(norms_result):
    stacks = norms_result["stacks"]
    plain = stacks["no norm, no residual"]
    assert plain["grad_first"] < 1e-6 * plain["grad_last"]  # measured 9.6e-11 against 3.2e-02
    for norm in ("post", "pre"):
        without, with_ = stacks[f"{norm}-norm, no residual"], stacks[f"{norm}-norm, residual"]
        assert without["loss"] > 2.2  # measured 2.28: barely off ln 10 = 2.30 after 50 steps
        assert with_["loss"] < 0.9  # measured 0.83 (post) and 0.57 (pre)
        assert 0.5 < with_["grad_first"] / with_["grad_last"] < 2  # the first block gets the last's share
    assert stacks["pre-norm, residual"]["loss"] < stacks["post-norm, residual"]["loss"]


# ---- the lesson command -------------------------------------------------------------------------


def test_lesson_help_lists_every_lesson_with_a_line(capsys):
    with pytest.raises(SystemExit):
        main(["lesson", "--help"])
    text = capsys.readouterr().out
    assert [lesson.name for lesson in LESSONS][:4] == ["basics", "data", "attention", "norms"]
    for lesson in LESSONS:
        assert re.search(rf"^  {lesson.name} +\S", text, re.M), lesson.name


def test_every_lesson_prints_its_numbers_as_json(capsys):
    assert main(["lesson", "basics", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert round(r["output"], 4) == 0.4420 and round(r["tutorial"]["gradient"], 4) == -0.4973
    assert main(["lesson", "attention", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert [[round(v, 4) for v in row] for row in r["toy_averages"]] == [[2, 7], [4, 5.5], [4.6667, 5.3333]]


def test_data_is_refused_by_a_lesson_that_does_not_read_text(capsys):
    assert main(["lesson", "basics", "--data", "x.txt"]) == 2
    err = capsys.readouterr().err
    assert err == "tinygpt: error: lesson basics takes no --data; the lessons that read your text: data\n"
