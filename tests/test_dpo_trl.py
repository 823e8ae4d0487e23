"""tinygpt's DPO is TRL's DPO (issue 27): on the same model (a run exported with `tinygpt export --to hf`),
the same batch of pairs and the same beta, TRL's DPOTrainer's first-step loss and logged rewards agree
with tinygpt's to 1e-4. benchmarks/dpo_trl.py holds the comparison and says where the two cannot agree
(plain-text replies: TRL appends the EOS and scores it)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("trl")
pytest.importorskip("datasets")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "dpo_trl.py"


def benchmark():
    spec = importlib.util.spec_from_file_location("dpo_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trls_dpo_trainer_computes_tinygpts_first_step_loss_and_rewards(tmp_path):
    cases = benchmark().compare(tmp_path)
    agreeing = ("conversational/sigmoid", "conversational/ipo", "conversational/sigmoid+sft", "plain_with_eos/sigmoid")
    for name in agreeing:
        case = cases[name]
        assert case["agree"], (name, case)
        assert case["tinygpt"]["rewards/margins"] > 0.1  # a policy that is not its reference: numbers that can differ
        assert case["trl"]["loss"] == pytest.approx(case["tinygpt"]["loss"], abs=1e-4)
    # Plain replies without the EOS: TRL scores one more token per reply (the EOS it appends); tinygpt does not.
    plain = cases["plain/sigmoid"]
    assert not plain["agree"] and plain["trl"]["logps/chosen"] < plain["tinygpt"]["logps/chosen"]
    # And SFT: TRL's SFTTrainer with its completion-only loss computes tinygpt sft's loss on the assistant's tokens.
    assert cases["sft/completion_only"]["agree"], cases["sft/completion_only"]
