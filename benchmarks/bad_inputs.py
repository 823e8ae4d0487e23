"""Bad command lines and damaged files, each run as `tinygpt ...` in a process of its own (issue 24).

    python benchmarks/bad_inputs.py                                   # every case, 2 at a time
    python benchmarks/bad_inputs.py --json benchmarks/results/bad_inputs.json
    python benchmarks/bad_inputs.py --only config.json,signals --jobs 1

Every case is a command that must fail (or be interrupted) cleanly: no Python traceback in what it
prints, the exit status the command line promises (2 for a problem with the input, a setting, a file
or a run directory another process writes; 1 when the machine refused: a full or read-only disk; 130
for Ctrl-C), one line on stderr that names the refused setting where there is one ("off topic"
otherwise), and no file already saved changed (every file of the case's folder is
hashed before and after; the lock's note `.lock` is not a saved file). Each case gets a fresh folder with
a copy of a tiny trained run (`run`), a prepared folder (`data`) and the JSON Lines files sft and reward
read. Ctrl-C cases may save (that is what Ctrl-C during training does): for them the check is that the
run still loads, instead of the hashes.

Categories: settings (training settings that cannot be computed), fine-tuning settings (sft, reward,
rl), sampling (the sampling knobs of `tinygpt sample`, and serve's port: the server's own validation is
another part of the issue), config.json, metrics.jsonl, prepared folders, run directories and locks,
disks (a 2 MB tmpfs per case, full or remounted read-only: needs root and mount, else skipped and said
so), signals (SIGINT 0.05 s to 3 s after Python has installed its Ctrl-C handler, which the harness
reads in /proc: before that a Ctrl-C ends any Python program as the kernel does, and in the next 20 ms
or so Python is still starting, before any of tinygpt's code runs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

TINY = ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "16", "--batch-size", "4",
        "--threads", "1", "--no-progress", "--sample-tokens", "0"]
FT = ["--threads", "1", "--no-progress", "--batch-size", "4"]  # what sft, reward and rl take of TINY
EXIT = {"input": 2, "machine": 1, "interrupted": 130}
# The `tinygpt` command as installed (the console script, as users run it), else through Python.
SCRIPT = Path(sys.executable).parent / "tinygpt"
TINYGPT = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "tinygpt"]


@dataclass
class Case:
    category: str
    name: str
    argv: list[str]  # the tinygpt arguments; {run}, {data}, {dir}, ... filled from the case's folder
    expect: int = 2
    damage: object = None  # damage(folder): what the case breaks before it runs
    disk: str = ""  # "full" or "read-only": the case's folder is a small tmpfs
    signal_after: float | None = None  # SIGINT this many seconds after the start
    says: str = ""  # the error line must name this (the setting refused), so a case fails for its own reason
    replaces: bool = False  # --overwrite: the old run is given up by request; what is left must load
    timeout: float = 120
    result: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the cases

def settings_cases() -> list[Case]:
    cases = []
    floats = ["lr", "min-lr", "muon-lr", "grad-clip", "weight-decay", "rope-base", "dropout", "beta1", "beta2",
              "muon-momentum", "val-fraction", "mask-fraction", "cooldown-frac"]
    for flag in floats:
        for value in ("nan", "inf", "-inf", "-1", "1e400"):
            cases.append(Case("settings", f"--{flag} {value}", ["train", "--out", "{dir}/new", *TINY,
                                                                  f"--{flag}={value}"], says=_setting(flag)))
    for flag, value in [("lr", "1e30"), ("muon-lr", "1e30"), ("weight-decay", "1e300"), ("rope-base", "1e-320"),
                        ("rope-base", "0.5"), ("lr", "abc"), ("dropout", "1"), ("val-fraction", "1"),
                        ("seed", str(2**64)), ("seed", str(-(2**63) - 1)), ("seed", "10" + "0" * 30),
                        ("seed", "1.5"), ("threads", "1000000"), ("threads", "-1"), ("threads", str(2**31)),
                        ("threads", "two"), ("n-embd", str(2**40)), ("n-embd", "0"), ("n-embd", "-1"),
                        ("n-layer", "0"), ("n-layer", "-3"), ("n-layer", str(10**12)), ("n-head", "0"),
                        ("n-head", "3"), ("block-size", "0"), ("block-size", str(2**40)), ("batch-size", "0"),
                        ("batch-size", "-1"), ("batch-size", str(10**15)), ("max-iters", "-1"),
                        ("max-iters", str(10**12)), ("eval-interval", "0"), ("grad-accum", "0"),
                        ("warmup-iters", "-1"), ("eval-iters", "-1"), ("num-samples", "-1"), ("sample-tokens", "-1"),
                        ("log-interval", "0"), ("plot-every", "-1"), ("mlp-ratio", "-1"), ("time-budget", "-5s"),
                        ("time-budget", "forever"), ("eval-max-tokens", "-1"), ("final-eval-tokens", str(2**63))]:
        cases.append(Case("settings", f"--{flag} {value[:24]}", ["train", "--out", "{dir}/new", *TINY,
                                                                   f"--{flag}={value}"], says=_setting(flag)))
    for value in ("-5", "0", "100", str(10**12)):
        cases.append(Case("settings", f"--tokenizer bpe --vocab-size {value}",
                          ["train", "--out", "{dir}/new", *TINY, "--tokenizer", "bpe", "--vocab-size", value],
                          says="vocab"))
        cases.append(Case("settings", f"prepare --vocab-size {value}",
                          ["prepare", "rhyme", "--out", "{dir}/p", "--tokenizer", "bpe", "--vocab-size", value],
                          says="vocab"))
    cases.append(Case("settings", "prepare --val-fraction nan", ["prepare", "rhyme", "--out", "{dir}/p",
                                                                  "--val-fraction", "nan"]))
    return cases


def _setting(flag: str) -> str:
    return flag.replace("-", "_") if flag not in ("time-budget",) else "time budget"


def fine_tuning_cases() -> list[Case]:
    cases = []
    for verb, data in (("sft", "{dir}/chats.jsonl"), ("reward", "{dir}/pairs.jsonl")):
        for flag, value in [("lr", "nan"), ("weight-decay", "inf"), ("grad-clip", "nan"), ("seed", str(2**64)),
                            ("threads", "100000"), ("dropout", "nan"), ("max-iters", "-1")]:
            cases.append(Case("fine-tuning settings", f"{verb} --{flag} {value[:12]}",
                              [verb, "{run}", "--data", data, "--out", "{dir}/ft", *FT, f"--{flag}={value}"],
                              says=_setting(flag)))
    for flag, value in [("temperature", "nan"), ("temperature", "inf"), ("kl-coef", "inf"), ("gamma", "nan"),
                        ("clip-range", "nan"), ("group-size", "0")]:
        cases.append(Case("fine-tuning settings", f"rl --{flag} {value}",
                          ["rl", "{base}", "--prompts", "{dir}/prompts.jsonl", "--reward", "{dir}/score.py:score",
                           "--out", "{dir}/rl", *FT, f"--{flag}={value}"], says=_setting(flag)))
    return cases


def sampling_cases() -> list[Case]:
    cases = []
    for flag, value in [("temperature", "nan"), ("temperature", "inf"), ("temperature", "-1"), ("temperature", "1e-45"),
                        ("top-p", "nan"), ("top-p", "0"), ("top-p", "1e-45"), ("top-p", "2"), ("top-k", "-1"),
                        ("top-k", str(10**30)), ("repetition-penalty", "0"), ("repetition-penalty", "nan"),
                        ("repetition-penalty", "1e-45"), ("repetition-penalty", "inf"), ("max-new-tokens", "-1"),
                        ("max-new-tokens", str(10**30)), ("seed", str(2**64)), ("seed", "-1")]:
        # SamplingConfig.validate's documented rule: a knob below 1e-6 is brought to it (a temperature that
        # small is greedy); negative seeds are torch's own. These answer, the rest are refused.
        fine = value == "1e-45" or (flag == "seed" and value == "-1")
        cases.append(Case("sampling", f"sample --{flag} {value[:12]}",
                          ["sample", "{run}", "--prompt", "mary", "--max-new-tokens", "4", f"--{flag}={value}"],
                          expect=0 if fine else 2, says="" if fine else _setting(flag)))
    for value in ("70000", "-1", "http"):
        cases.append(Case("sampling", f"serve --port {value}", ["serve", "{run}", "--port", value], timeout=60,
                          says="port"))
    return cases


def damage_config(change):
    def damage(folder: Path):
        path = folder / "run" / "config.json"
        if callable(change):
            doc = json.loads(path.read_text())
            change(doc)
            path.write_text(json.dumps(doc))
        else:
            path.write_bytes(change)
    return damage


CONFIG_DAMAGE = {
    "model.n_embd a string": lambda d: d["model"].update(n_embd="abc"),
    "model.n_embd 1.5": lambda d: d["model"].update(n_embd=1.5),
    "model.n_embd -4": lambda d: d["model"].update(n_embd=-4),
    "model.n_embd null": lambda d: d["model"].update(n_embd=None),
    "model.vocab_size a string": lambda d: d["model"].update(vocab_size="x"),
    "model.vocab_size 0": lambda d: d["model"].update(vocab_size=0),
    "model.arch unknown": lambda d: d["model"].update(arch="alien"),
    "model.dropout 2": lambda d: d["model"].update(dropout=2),
    "train.lr a string": lambda d: d["train"].update(lr="fast"),
    "train.lr null": lambda d: d["train"].update(lr=None),
    "train.lr NaN": lambda d: d["train"].update(lr=float("nan")),
    "train.seed a list": lambda d: d["train"].update(seed=[1]),
    "no model.n_head": lambda d: d["model"].pop("n_head"),
    "no train.max_iters": lambda d: d["train"].pop("max_iters"),
    "model a list": lambda d: d.update(model=[]),
    "train a string": lambda d: d.update(train="x"),
    "data a list": lambda d: d.update(data=[1]),
    "data.verb a number": lambda d: d.update(data={**d["data"], "verb": 5}),
    "num_params a string": lambda d: d.update(num_params="x"),
    "preset a number": lambda d: d.update(preset=5),
    "an unknown key": lambda d: d["model"].update(warp=1),
    "a JSON list": b"[1, 2]",
    "a bare number": b"42",
    "not JSON": b"{model: 1",
    "binary": b"\x00\xff\xfe\x00",
    "empty": b"",
}


def config_cases() -> list[Case]:
    commands = {"eval": ["eval", "{run}"], "train --resume": ["train", "--resume", "{run}"],
                "sample": ["sample", "{run}", "--prompt", "m", "--max-new-tokens", "2"]}
    return [Case("config.json", f"{name}: {command}", argv, damage=damage_config(change))
            for name, change in CONFIG_DAMAGE.items() for command, argv in commands.items()]


METRICS_DAMAGE = {
    "binary": b"\x00\xff\xfe\n",
    "a bare number": b"42\n",
    "a list": b"[1, 2]\n",
    "a string": b'"step"\n',
    "no step": b'{"tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n',
    "step a string": b'{"step": "x", "tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n',
    "step negative": b'{"step": -4, "tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n',
    "step 2.5": b'{"step": 2.5, "tokens": 1, "elapsed_s": 0.1, "train_loss": 3.0}\n',
    "train_loss a string": b'{"step": 2, "tokens": 1, "elapsed_s": 0.1, "train_loss": "low"}\n',
    "tokens a list": b'{"step": 2, "tokens": [1], "elapsed_s": 0.1, "train_loss": 3.0}\n',
    "a damaged line mid-file": b'{"step": 0, "tokens": 0, "elap\n{"step": 2, "tokens": 1, "elapsed_s": 0.1, '
                               b'"train_loss": 3.0}\n',
    "an empty object": b"{}\n",
}


def metrics_cases() -> list[Case]:
    def damage_metrics(raw: bytes):
        return lambda folder: (folder / "run" / "metrics.jsonl").write_bytes(raw)

    commands = {"plot": ["plot", "{run}", "-o", "{dir}/loss.png"], "train --resume": ["train", "--resume", "{run}"]}
    return [Case("metrics.jsonl", f"{name}: {command}", argv, damage=damage_metrics(raw))
            for name, raw in METRICS_DAMAGE.items() for command, argv in commands.items()]


def _flip(name: str, at: int = 3):
    def damage(folder: Path):
        raw = bytearray((folder / "data" / name).read_bytes())
        raw[at] ^= 1
        (folder / "data" / name).write_bytes(bytes(raw))
    return damage


def _meta(change):
    def damage(folder: Path):
        path = folder / "data" / "prepared.json"
        doc = json.loads(path.read_text())
        change(doc)
        path.write_text(json.dumps(doc))
    return damage


def _ids_past_vocab(folder: Path):
    """ids past the vocabulary, with prepared.json's sha256 made to match: only the id check can find them."""
    data = folder / "data"
    raw = bytearray((data / "val.bin").read_bytes())
    raw[10:12] = (60000).to_bytes(2, "little")
    (data / "val.bin").write_bytes(bytes(raw))
    doc = json.loads((data / "prepared.json").read_text())
    doc["files_sha256"]["val.bin"] = hashlib.sha256(bytes(raw)).hexdigest()
    (data / "prepared.json").write_text(json.dumps(doc))


def _swap_tokenizer(folder: Path):
    shutil.copy(folder / "words" / "tokenizer.json", folder / "data" / "tokenizer.json")


def _leave_part(folder: Path):
    os.replace(folder / "data", folder / "data.part")


PREPARED_DAMAGE = {
    "val.bin one bit flipped": _flip("val.bin"),
    "train.bin one bit flipped": _flip("train.bin"),
    "val.bin truncated": lambda f: os.truncate(f / "data" / "val.bin", 10),
    "train.bin longer": lambda f: (f / "data" / "train.bin").open("ab").write(b"\0\0"),
    "tokenizer swapped": _swap_tokenizer,
    "tokenizer.json missing": lambda f: (f / "data" / "tokenizer.json").unlink(),
    "tokenizer.json not JSON": lambda f: (f / "data" / "tokenizer.json").write_text("{"),
    "prepared.json not JSON": lambda f: (f / "data" / "prepared.json").write_text("{"),
    "prepared.json missing": lambda f: (f / "data" / "prepared.json").unlink(),
    "train_tokens a string": _meta(lambda d: d.update(train_tokens="x")),
    "dtype float64": _meta(lambda d: d.update(dtype="<f8")),
    "dtype a number": _meta(lambda d: d.update(dtype=5)),
    "vocab_size a string": _meta(lambda d: d.update(vocab_size="x")),
    "files_sha256 a list": _meta(lambda d: d.update(files_sha256=[1])),
    "val_tokens negative": _meta(lambda d: d.update(val_tokens=-3)),
    "ids past the vocabulary": _ids_past_vocab,
    "a leftover data.part": _leave_part,
}


def prepared_cases() -> list[Case]:
    commands = {"train --data": ["train", "--data", "{dir}/data", "--out", "{dir}/new", *TINY],
                "eval --data": ["eval", "{run}", "--data", "{dir}/data"]}
    return [Case("prepared folders", f"{name}: {command}", argv, damage=damage)
            for name, damage in PREPARED_DAMAGE.items() for command, argv in commands.items()]


def _hold_lock(folder: Path):
    """A process that holds the run's lock for a minute, as a training would (killed after the case)."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom tinygpt.core import lock\n"
            f"p = Path({str(folder / 'run' / '.lock')!r})\nlock.take(p, 'run')\nlock.claim(p)\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    holder.stdout.readline()
    return lambda: (holder.kill(), holder.wait())


def run_cases() -> list[Case]:
    busy = [("train into it", ["train", "--data", "{dir}/text.txt", "--out", "{run}", *TINY]),
            ("train --resume", ["train", "--resume", "{run}"]),
            ("train --overwrite", ["train", "--data", "{dir}/text.txt", "--out", "{run}", "--overwrite", *TINY]),
            ("sft into it", ["sft", "{base}", "--data", "{dir}/chats.jsonl", "--out", "{run}", *FT]),
            ("reward into it", ["reward", "{base}", "--data", "{dir}/pairs.jsonl", "--out", "{run}", *FT])]
    cases = [Case("run directories", f"a run being trained: {name}", argv, damage=_hold_lock, says="is in use")
             for name, argv in busy]
    cases += [
        Case("run directories", "a new run over a finished one", ["train", "--data", "{dir}/text.txt", "--out", "{run}",
                                                                  *TINY]),
        Case("run directories", "--out is a file", ["train", "--out", "{dir}/text.txt", *TINY]),
        Case("run directories", "--out under a file", ["train", "--out", "{dir}/text.txt/run", *TINY]),
        Case("run directories", "--resume a missing run", ["train", "--resume", "{dir}/missing"]),
        Case("run directories", "--resume a file", ["train", "--resume", "{dir}/text.txt"]),
        Case("run directories", "--resume a folder without a run", ["train", "--resume", "{dir}/words"]),
        Case("run directories", "--resume an sft run with train", ["train", "--resume", "{dir}/sftrun"]),
        Case("run directories", "--overwrite a folder of other files", ["train", "--out", "{dir}/words", "--overwrite",
                                                                        *TINY]),
        Case("run directories", "prepare into a prepared folder", ["prepare", "rhyme", "--out", "{dir}/data"]),
        Case("run directories", "prepare --out a file", ["prepare", "rhyme", "--out", "{dir}/text.txt"]),
        Case("run directories", "sample a missing run", ["sample", "{dir}/missing", "--prompt", "m"]),
        Case("run directories", "checkpoints/latest damaged: --resume",
             ["train", "--resume", "{run}"],
             damage=lambda f: _flip_file(f / "run" / "checkpoints" / "latest.safetensors")),
        Case("run directories", "model.safetensors damaged: sample", ["sample", "{run}", "--prompt", "m"],
             damage=lambda f: _flip_file(f / "run" / "model.safetensors")),
    ]
    return cases


def _flip_file(path: Path):
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 1
    path.write_bytes(bytes(raw))


def disk_cases() -> list[Case]:
    cases = []
    for disk in ("full", "read-only"):
        expect = EXIT["machine"]
        for name, argv in [("train a new run", ["train", "--data", "{dir}/text.txt", "--out", "{dir}/new", *TINY]),
                           ("train --resume", ["train", "--resume", "{run}", "--max-iters", "40"]),
                           ("train --overwrite", ["train", "--data", "{dir}/text.txt", "--out", "{run}", "--overwrite",
                                                  *TINY]),
                           ("sft", ["sft", "{run}", "--data", "{dir}/chats.jsonl", "--out", "{dir}/ft", *FT]),
                           ("prepare", ["prepare", "shakespeare", "--out", "{dir}/p", "--quiet"]),
                           ("plot over its picture", ["plot", "{run}", "-o", "{run}/loss.png"]),
                           ("inspect --attention", ["inspect", "{run}", "--prompt", "mary", "--attention",
                                                    "{dir}/att.png"]),
                           ("export --to hf", ["export", "{run}", "--to", "hf", "--out", "{dir}/hf"])]:
            cases.append(Case("disks", f"{disk}: {name}", argv, expect=expect, disk=disk,
                              says="read-only" if disk == "read-only" else "no space left",
                              replaces="--overwrite" in argv))
    return cases


def signal_cases() -> list[Case]:
    cases = []
    # From 0.05 s: in the first 20 ms or so after its handler is installed Python is still starting (site,
    # its .pth files): a Ctrl-C there is Python's own traceback, before any of tinygpt's code runs.
    for after in (0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0):
        cases.append(Case("signals", f"Ctrl-C {after} s into train", ["train", "--data", "{dir}/text.txt", "--out",
                                                                       "{dir}/new", "--max-iters", "100000", *TINY],
                          expect=130, signal_after=after))
    for after in (0.3, 0.8, 1.4):
        cases.append(Case("signals", f"Ctrl-C {after} s into prepare", ["prepare", "shakespeare", "--out", "{dir}/p"],
                          expect=130, signal_after=after))
    for after in (0.3, 1.0, 2.5):
        cases.append(Case("signals", f"Ctrl-C {after} s into sft", ["sft", "{run}", "--data", "{dir}/chats.jsonl",
                                                                     "--out", "{dir}/ft", "--max-iters", "100000",
                                                                     *FT], expect=130, signal_after=after))
        cases.append(Case("signals", f"Ctrl-C {after} s into --resume", ["train", "--resume", "{run}", "--max-iters",
                                                                          "100000"], expect=130, signal_after=after))
    return cases


CATEGORIES = {"settings": settings_cases, "fine-tuning settings": fine_tuning_cases, "sampling": sampling_cases,
              "config.json": config_cases, "metrics.jsonl": metrics_cases, "prepared folders": prepared_cases,
              "run directories": run_cases, "disks": disk_cases, "signals": signal_cases}


# ----------------------------------------------------------------------------- materials

def make_materials(root: Path):
    """A tiny trained run, an sft run of it, a prepared folder, and the files sft, reward and rl read."""
    import tinygpt
    from tinygpt.data import rhyme_text

    text = root / "text.txt"
    text.write_text(rhyme_text() * 3, encoding="utf-8")
    tiny = dict(tokenizer="char", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, threads=1,
                progress=False, sample_tokens=0)
    tinygpt.train(data=str(text), out=str(root / "run"), max_iters=4, eval_interval=2, log=lambda line: None, **tiny)
    chats = [{"messages": [{"role": "user", "content": "mary"}, {"role": "assistant", "content": "had a"}]}] * 8
    (root / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats))
    pairs = [{"prompt": "mary", "chosen": "had a lamb", "rejected": "had a snow"}] * 8
    (root / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (root / "prompts.jsonl").write_text("".join(json.dumps({"prompt": "mary"}) + "\n" for _ in range(8)))
    (root / "score.py").write_text("def score(prompt, reply):\n    return float('lamb' in reply)\n")
    tinygpt.sft(str(root / "run"), data=str(root / "chats.jsonl"), out=str(root / "sftrun"), max_iters=2,
                eval_interval=2, threads=1, progress=False, batch_size=4, val_fraction=0.0, log=lambda line: None)
    tinygpt.prepare(str(text), str(root / "data"))
    tinygpt.prepare(str(text), str(root / "words"), tokenizer="word")


# ----------------------------------------------------------------------------- running one case

def saved_files(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (the lock's note excepted: it names the last writer)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != ".lock" and not path.is_symlink():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def small_disk(folder: Path, kind: str):
    """`folder` as a 2 MB tmpfs holding the case's files, then full or read-only."""
    staged = folder.with_name(folder.name + "-staged")
    os.replace(folder, staged)
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)], check=True, capture_output=True)
    try:
        for name in ("run", "text.txt", "chats.jsonl"):
            source = staged / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, folder / name)
        if kind == "full":
            stat = os.statvfs(folder)
            with open(folder / "filler", "wb") as f:
                f.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 16 * 1024))
        else:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def can_mount(root: Path) -> str:
    """'' when this process can mount a tmpfs (root with the capability), else why not."""
    probe = root / "mount-probe"
    probe.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        return (proc.stderr or proc.stdout).strip()[:100] or "mount failed"
    subprocess.run(["umount", str(probe)], capture_output=True)
    return ""


def run_case(case: Case, materials: Path, work: Path, env: dict) -> dict:
    folder = work / f"case-{id(case)}"
    folder.mkdir()
    for path in materials.iterdir():
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, folder / path.name)
    undo = case.damage(folder) if case.damage is not None else None
    # {base}: a run to fine-tune into {run} (the sft run: a GPT too)
    names = {"dir": str(folder), "run": str(folder / "run"), "data": str(folder / "data"),
             "base": str(folder / "sftrun")}
    argv = [a.format(**names) for a in case.argv]
    disk = small_disk(folder, case.disk) if case.disk else contextlib.nullcontext()
    started = time.perf_counter()
    with disk:
        before = saved_files(folder)
        proc = subprocess.Popen([*TINYGPT, *argv], cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if case.signal_after is not None:
            python_is_up(proc.pid)
            time.sleep(case.signal_after)
            proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=case.timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            code = "timeout"
        after = saved_files(folder)
    if callable(undo):
        undo()
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    lines = [line for line in err.splitlines() if line.strip()]
    loads = ""
    if case.signal_after is not None or case.replaces:
        changed = []  # Ctrl-C saves, --overwrite gives the old run up, by design: what is left must load
        loads = _loads(folder, env) if not case.disk else ""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder.with_name(folder.name + "-staged"), ignore_errors=True)
    return {"category": case.category, "name": case.name, "argv": " ".join(case.argv), "expected": case.expect,
            "exit": code, "traceback": "Traceback (most recent call last)" in out + err,
            "one_line": len(lines) == 1 or code == case.expect == 0, "changed": changed, "loads": loads,
            "wrong_message": bool(case.says) and not any(case.says in line for line in lines),
            "stderr": lines[-1][:300] if lines else "", "seconds": round(time.perf_counter() - started, 2)}


def python_is_up(pid: int, limit_s: float = 30):
    """Wait until the process catches SIGINT (SigCgt in /proc/PID/status): Python has installed its handler.
    Before that a Ctrl-C ends any Python program as the kernel does, whatever the program; measuring the
    delay from here keeps a loaded machine's slower start out of the cases."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            caught = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                          if line.startswith("SigCgt:"))
            if int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
                return
        time.sleep(0.002)


def _loads(folder: Path, env: dict) -> str:
    """For a Ctrl-C case: '' if every run directory it left with a checkpoint loads, else the error."""
    runs = [p.parent for p in folder.rglob("config.json") if (p.parent / "model.safetensors").is_file()]
    if not runs:
        return ""
    code = "import sys, tinygpt\nfor r in sys.argv[1:]:\n    tinygpt.load(r)\n"
    proc = subprocess.run([sys.executable, "-c", code, *map(str, runs)], capture_output=True, text=True, env=env)
    return "" if proc.returncode == 0 else proc.stderr.strip().splitlines()[-1][:200]


# ----------------------------------------------------------------------------- the table

def table(results: list[dict], skipped: dict[str, str]) -> list[dict]:
    rows = []
    for category in CATEGORIES:
        mine = [r for r in results if r["category"] == category]
        if not mine and category not in skipped:
            continue
        rows.append({"category": category, "cases": len(mine),
                     "tracebacks": sum(r["traceback"] for r in mine),
                     "wrong_exit": sum(r["exit"] != r["expected"] for r in mine),
                     "not_one_line": sum(not r["one_line"] for r in mine),
                     "wrong_message": sum(r["wrong_message"] for r in mine),
                     "saved_files_changed": sum(bool(r["changed"]) for r in mine),
                     "not_loadable": sum(bool(r["loads"]) for r in mine),
                     "skipped": skipped.get(category, "")})
    total = {key: sum(row[key] for row in rows) for key in ("cases", "tracebacks", "wrong_exit", "not_one_line",
                                                              "wrong_message", "saved_files_changed", "not_loadable")}
    rows.append({"category": "all", **total, "skipped": ""})
    return rows


def print_table(rows: list[dict]):
    head = f"{'category':<22}{'cases':>6}{'tracebacks':>11}{'wrong exit':>11}{'not 1 line':>11}" \
           f"{'off topic':>10}{'changed':>8}{'no load':>8}"
    print(head)
    for r in rows:
        print(f"{r['category']:<22}{r['cases']:>6}{r['tracebacks']:>11}{r['wrong_exit']:>11}{r['not_one_line']:>11}"
              f"{r['wrong_message']:>10}{r['saved_files_changed']:>8}{r['not_loadable']:>8}"
              + (f"   skipped: {r['skipped']}" if r['skipped'] else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", default="", help="write the results here (e.g. benchmarks/results/bad_inputs.json)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default: 2)")
    parser.add_argument("--only", default="", help="comma-separated categories (default: all): "
                        + ", ".join(CATEGORIES))
    args = parser.parse_args()

    only = [c.strip() for c in args.only.split(",") if c.strip()] or list(CATEGORIES)
    cases = [case for name in only for case in CATEGORIES[name]()]
    env = {**os.environ, "TINYGPT_DATA_DIR": os.environ.get("TINYGPT_DATA_DIR", str(Path(__file__).resolve()
                                                                                     .parents[2] / "shared" / "data")),
           "PYTHONUNBUFFERED": "1"}
    os.environ["TINYGPT_DATA_DIR"] = env["TINYGPT_DATA_DIR"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as tmp:
        root = Path(tmp)
        materials = root / "materials"
        materials.mkdir()
        make_materials(materials)
        skipped = {}
        if any(c.disk for c in cases) and (why := can_mount(root)):
            skipped["disks"] = f"cannot mount a tmpfs ({why}): needs root and mount"
            cases = [c for c in cases if not c.disk]
        work = root / "work"
        work.mkdir()
        print(f"{len(cases)} cases, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda c: run_case(c, materials, work, env), cases))
    rows = table(results, skipped)
    print_table(rows)
    bad = [r for r in results if r["traceback"] or r["exit"] != r["expected"] or r["changed"] or r["loads"]
           or r["wrong_message"]]
    for r in bad:
        changed = ", changed " + ",".join(r["changed"]) if r["changed"] else ""
        print(f"  {r['category']}: {r['name']}: exit {r['exit']} (expected {r['expected']})"
              f"{', traceback' if r['traceback'] else ''}{changed}"
              f"{', does not load: ' + r['loads'] if r['loads'] else ''}: {r['stderr'][:160]}")
    if args.json:
        doc = {"command": "python benchmarks/bad_inputs.py" + (f" --only {args.only}" if args.only else ""),
               "seconds": round(time.perf_counter() - started, 1), "jobs": args.jobs, "table": rows,
               "cases": results}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{len(results)} cases in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
