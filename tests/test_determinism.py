"""Same seed and settings on the same machine give the same losses, and a resumed run equals one never
stopped, while other work keeps the cores busy: the thread count follows the model and the machine, never
the load."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinygpt.core.devices import cpu_cores

# Big enough that PyTorch splits its operations among threads (a different thread count changes the
# last digits), small enough to take seconds.
SETTINGS = ["--tokenizer", "char", "--seed", "7", "--n-layer", "1", "--n-embd", "128", "--block-size", "64",
            "--batch-size", "12", "--eval-interval", "10", "--no-progress", "--sample-tokens", "0"]
SPIN_SECONDS = 240  # the spinners stop by themselves even if the test is killed


def train(corpus: Path, out: Path, *extra: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "tinygpt", "train", "--data", str(corpus), "--out", str(out),
                           *SETTINGS, *extra], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.fixture
def busy_cores():
    """One process spinning on every core, for the length of the test."""
    code = f"import time\nend = time.time() + {SPIN_SECONDS}\nwhile time.time() < end: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(cpu_cores())]
    yield
    for p in spinners:
        p.kill()
        p.wait()


@pytest.mark.skipif(cpu_cores() < 2, reason="one core: there is only one thread count")
def test_a_resumed_run_equals_a_straight_one_while_the_machine_is_busy(tiny_corpus, tmp_path, busy_cores):
    straight = train(tiny_corpus, tmp_path / "straight", "--max-iters", "20")
    train(tiny_corpus, tmp_path / "stopped", "--max-iters", "10")
    resumed = train(tiny_corpus, tmp_path / "stopped", "--resume", str(tmp_path / "stopped"), "--max-iters", "20")
    assert resumed["step"] == straight["step"] == 20
    assert resumed["val_loss"] == straight["val_loss"] and resumed["train_loss"] == straight["train_loss"]
    # The setting is sensitive to the thread count: two threads give other last digits, so the equality
    # above holds because both runs computed with the count the rule gives this model (one thread, for its
    # 1 GFLOP steps), busy or not.
    two_threads = train(tiny_corpus, tmp_path / "two", "--max-iters", "20", "--threads", "2")
    assert two_threads["val_loss"] != straight["val_loss"]
    assert abs(two_threads["val_loss"] - straight["val_loss"]) < 1e-3  # the same run otherwise
