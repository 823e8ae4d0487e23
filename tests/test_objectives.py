"""The training loop trains whatever objective it is given: batches, loss and evaluation come from the
objective, and everything else (checkpoints, exact resume, metrics, the run directory) from the loop."""

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tinygpt
from tinygpt.config import ModelConfig, TrainConfig
from tinygpt.store import rundir
from tinygpt.tokenizers import CharTokenizer
from tinygpt.training import Evaluation, Objective, Trainer

ALPHABET = list("abcdefgh")


class EchoTheFirstToken(Objective):
    """A task a text corpus never sets: after any prefix, predict the sequence's first token.

    Only positions 1 and later are scored (position 0 has nothing to echo yet): the loss is the
    objective's own, with -100 marking unscored targets.
    """

    def __init__(self, batch_size: int = 8, block_size: int = 8):
        self.tokenizer = CharTokenizer(ALPHABET)
        self.block_size = block_size
        self.batch_size = batch_size
        self.tokens_per_batch = batch_size * block_size
        self.data_info = {"name": "echo", "task": "repeat the first token"}
        self.notes = ["a test objective"]
        self.has_validation = True
        self.losses_seen = 0

    def batch(self, generator):
        x = torch.randint(len(ALPHABET), (self.batch_size, self.block_size), generator=generator)  # (B, T)
        y = x[:, :1].expand(-1, self.block_size).clone()  # (B, T): the first token everywhere
        y[:, 0] = -100  # not scored
        return x, y

    def loss(self, model, batch):
        self.losses_seen += 1
        x, y = batch
        logits, _ = model(x)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-100)

    def evaluate(self, model, runtime, final=False):
        gen = torch.Generator().manual_seed(99)  # the same held-out batches every time
        model.eval()
        with torch.no_grad():
            batch = tuple(t.to(runtime.device) for t in self.batch(gen))
            val = self.loss(model, batch).item()
        model.train()
        return Evaluation({"train_loss": val, "val_loss": val, "echo_accuracy": None}, score=val)


SETTINGS = dict(n_layer=1, n_head=2, n_embd=32, block_size=8)
TRAINING = dict(max_iters=60, eval_interval=20, lr=1e-2, warmup_iters=5, threads=1, progress=False,
                sample_tokens=0, batch_size=8)


def train_echo(out: Path, resume: bool = False, on_step=None, **changes) -> tuple:
    objective = EchoTheFirstToken()
    cfg = TrainConfig(**{**TRAINING, **changes}, out=str(out))
    trainer = Trainer(ModelConfig(**SETTINGS), cfg, out, resume=resume, objective=objective, on_step=on_step)
    return trainer.train(), objective


def test_a_new_objective_trains_through_the_same_loop(tmp_path):
    result, objective = train_echo(tmp_path / "echo")
    assert objective.losses_seen >= 60  # the loop asked the objective for every loss
    assert result.step == 60 and result.tokens == 60 * 64
    # Echoing is easy for attention: far below the loss of guessing among 8 tokens.
    assert result.val_loss < 0.25 * math.log(len(ALPHABET))
    records = rundir.RunDir(tmp_path / "echo").read_metrics()
    assert [r["step"] for r in records] == [0, 20, 40, 60]
    assert all("echo_accuracy" in r for r in records)  # the objective decides what is recorded
    config = rundir.RunDir(tmp_path / "echo").read_config()
    assert config.data["task"] == "repeat the first token" and config.model.vocab_size == len(ALPHABET)
    run = tinygpt.load(tmp_path / "echo")  # an ordinary run directory: load and sample it
    assert run.tokenizer.decode(run.tokenizer.encode("abc")) == "abc"


def test_a_new_objective_resumes_exactly(tmp_path):
    straight, _ = train_echo(tmp_path / "straight")

    def stop_at_30(trainer):
        if trainer.step == 30:
            trainer.request_stop()

    with pytest.raises(tinygpt.training.TrainingInterrupted):
        train_echo(tmp_path / "stopped", on_step=stop_at_30)
    resumed, _ = train_echo(tmp_path / "stopped", resume=True)
    assert resumed.step == straight.step == 60
    assert resumed.val_loss == straight.val_loss  # bit for bit


RUN_FILE = re.compile(r"/\s*[\"'](config\.json|tokenizer\.json|model\.safetensors|metrics\.jsonl|checkpoints|"
                      r"latest\.safetensors|best\.safetensors|loss\.png|tensorboard)[\"']")


def test_run_paths_and_config_json_have_one_home():
    """Only rundir.py joins the paths of a run directory, so only it reads and writes config.json
    (convert/gpt2.py reads and convert/hf_export.py writes the files of a Hugging Face checkpoint
    folder, and data/prepared.py the tokenizer.json of a prepared-data folder: neither is a run)."""
    src = Path(tinygpt.__file__).parent
    joined = sorted(path.relative_to(src).as_posix() for path in src.rglob("*.py")
                    if RUN_FILE.search(path.read_text(encoding="utf-8")))
    assert joined == ["convert/gpt2.py", "convert/hf_export.py", "data/prepared.py", "store/rundir.py"]
    assert RUN_FILE.search('run / "metrics.jsonl"') and not RUN_FILE.search('"no metrics.jsonl"')
