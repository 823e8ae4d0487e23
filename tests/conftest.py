"""Shared fixtures: where tiny Shakespeare is, one trained rhyme model, small corpora and runs.

Training is the slow part of this suite, so a model that several tests only read is trained once per
session here. Tests that change a run directory copy it first (`copy_run`).
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import tinygpt
from tinygpt.data import SHAKESPEARE_FILE, rhyme_text

# CI keeps tiny Shakespeare in ../shared/data next to the repository (the tests never download it).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("TINYGPT_DATA_DIR", str(DEFAULT_DATA_DIR))

# The models here are tiny, and on a busy machine a second thread per process makes them many times
# slower (threads wait for cores), so tests and the runs they train use one thread.
torch.set_num_threads(1)

# Small enough to train in about a second on one CPU core, big enough to have a validation split.
TINY_GPT = dict(tokenizer="char", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, threads=1,
                progress=False, sample_tokens=0)


@pytest.fixture
def tiny_settings() -> dict:
    """Settings of a GPT that trains in about a second (add data=, out=, max_iters=)."""
    return dict(TINY_GPT)


@pytest.fixture(scope="session")
def shakespeare_file() -> Path:
    path = Path(os.environ["TINYGPT_DATA_DIR"]) / SHAKESPEARE_FILE
    if not path.is_file():
        pytest.skip(f"tiny Shakespeare is not at {path}; set TINYGPT_DATA_DIR to the folder that holds it")
    return path


@pytest.fixture(scope="session")
def rhyme_run(tmp_path_factory):
    """The nursery-rhyme preset trained once, as `tinygpt train` would (returns the TrainResult)."""
    out = tmp_path_factory.mktemp("rhyme") / "run"
    return tinygpt.train(preset="rhyme", out=str(out), progress=False, sample_tokens=0, threads=1)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A character-level corpus: the rhyme three times, 1,353 characters, 23 distinct ones."""
    path = tmp_path_factory.mktemp("corpus") / "tiny.txt"
    path.write_text(rhyme_text() * 3, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def char_run(tmp_path_factory, tiny_corpus) -> Path:
    """A tiny character-level GPT trained 40 steps on `tiny_corpus`, with a 10% validation split."""
    out = tmp_path_factory.mktemp("char") / "run"
    tinygpt.train(data=str(tiny_corpus), out=str(out), max_iters=40, eval_interval=20, **TINY_GPT)
    return out


@pytest.fixture(scope="session")
def chat_run(tmp_path_factory, char_run):
    """char_run fine-tuned 10 steps on a few conversations: a run with a chat template."""
    folder = tmp_path_factory.mktemp("chat")
    data = folder / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "mary"},
                                                     {"role": "assistant", "content": "had a"}]}) + "\n"
                            for _ in range(8)), encoding="utf-8")
    out = folder / "run"
    tinygpt.sft(str(char_run), data=str(data), out=str(out), max_iters=10, eval_interval=5, warmup_iters=0, lr=3e-3,
                threads=1, progress=False, sample_tokens=0, batch_size=4, val_fraction=0.0)
    return out


@pytest.fixture
def copy_run(tmp_path):
    """copy_run(run_dir) -> a private copy of a session run that a test may damage."""

    def copy(run_dir) -> Path:
        target = tmp_path / f"copy-{Path(run_dir).name}"
        shutil.copytree(run_dir, target)
        return target

    return copy
