"""Data-parallel training with torchrun: two CPU processes compute what one process computes.

Both runs use the same seed and the same global batch (batch_size is summed over processes), so
DDP's gradient averaging makes every step identical up to float rounding.
"""

import json
import subprocess
import sys

import pytest

from tinygpt.data import rhyme_text

ARGS = ["--data", "{data}", "--tokenizer", "char", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
        "--block-size", "16", "--batch-size", "8", "--grad-accum", "2", "--max-iters", "20",
        "--eval-interval", "10", "--no-progress", "--sample-tokens", "0", "--threads", "1"]


def _train(cmd_prefix, data, out):
    args = [a.format(data=data) for a in ARGS] + ["--out", str(out)]
    proc = subprocess.run(cmd_prefix + ["-m", "tinygpt", "train", *args], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines], proc.stdout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("ddp") / "corpus.txt"
    path.write_text(rhyme_text() * 40, encoding="utf-8")  # ~22k characters
    return path


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, corpus):
    single, _ = _train([sys.executable], corpus, tmp_path / "one")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    double, stdout = _train(torchrun, corpus, tmp_path / "two")

    # Only rank 0 writes: one record per evaluation (steps 0, 10, 20), not one per process.
    assert [r["step"] for r in double] == [0, 10, 20]
    assert stdout.count("done: step 20") == 1
    for a, b in zip(single, double):
        assert a["tokens"] == b["tokens"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-5)
    assert double[-1]["val_loss"] < double[0]["val_loss"]  # and it did learn
