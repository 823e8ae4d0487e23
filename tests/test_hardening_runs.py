"""A run directory has one writer, a full or read-only disk is one line with the saved run intact, and Ctrl-C
at any moment is one line and exit 130 (issue 24)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from refusals import checksums, one_line, run_cli

import tinygpt
from tinygpt.core import lock
from tinygpt.store.checkpoint import append_metrics

TINY = ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "8", "--batch-size", "4", "--threads", "1",
        "--no-progress", "--sample-tokens", "0"]


# The `tinygpt` command as installed (the console script), else through Python.
SCRIPT = Path(sys.executable).parent / "tinygpt"
TINYGPT = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "tinygpt"]


def tinygpt_process(*args, cwd) -> subprocess.Popen:
    """`tinygpt ARGS` in a process of its own, Ctrl-C left to Python's default (as in a terminal)."""
    return subprocess.Popen([*TINYGPT, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# ---- one writer -------------------------------------------------------------------------------------------

def test_a_second_writer_is_refused_naming_the_first_and_a_killed_holder_leaves_no_stale_lock(capsys, tmp_path):
    run = tmp_path / "run"
    holder = tinygpt_process("train", "--data", "rhyme", "--out", run, "--max-iters", "100000", "--eval-interval",
                             "20", *TINY, cwd=tmp_path)
    try:
        deadline = time.time() + 90
        while not ((run / "checkpoints" / "latest.safetensors").is_file() and (run / ".lock").stat().st_size):
            assert holder.poll() is None and time.time() < deadline, holder.communicate()
            time.sleep(0.1)
        note = json.loads((run / ".lock").read_text())
        assert note["pid"] == holder.pid and note["command"].startswith("tinygpt train --data rhyme --out")
        # The holder goes on saving: a temporary file of a checkpoint being written comes and goes.
        before = {name for name in checksums(run) if not name.endswith(".tmp")}
        for argv in (["train", "--data", "rhyme", "--out", run, *TINY],  # a second training into it
                     ["train", "--resume", run],  # a resume of the run still training
                     ["train", "--data", "rhyme", "--out", run, "--overwrite", *TINY]):  # an overwrite of it
            code, out, err = run_cli(capsys, *argv)
            one_line(code, err, f"run directory {run} is in use: process {holder.pid} (tinygpt train --data rhyme",
                     "let it finish (or stop it) first")
            assert out == ""
        # Readers need no lock.
        assert run_cli(capsys, "plot", run, "-o", tmp_path / "loss.png")[0] == 0
        assert before <= set(checksums(run))  # nothing of the first run's was touched by the refused ones
    finally:
        holder.kill()  # kill -9: the kernel lets go of its lock
        holder.wait()
    step = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    code, out, err = run_cli(capsys, "train", "--resume", run, "--max-iters", step + 5)
    assert code == 0 and f"done: step {step + 5}," in out, err
    assert not lock._held  # and the lock is let go when training ends


def test_a_failed_start_lets_go_of_the_lock_in_a_python_session(tmp_path, tiny_settings):
    out, text = tmp_path / "run", tmp_path / "text.txt"
    text.write_text("mary had a little lamb\n" * 20)
    tinygpt.train(data=str(text), out=str(out), max_iters=2, **tiny_settings)
    with pytest.raises(tinygpt.TinyGPTError, match="already holds a run"):
        tinygpt.train(data=str(text), out=str(out), max_iters=2, **tiny_settings)
    assert not lock._held
    text.write_text("little lamb had a mary\n" * 20)
    with pytest.raises(tinygpt.TinyGPTError, match="changed since this run started"):  # found after the lock
        tinygpt.train(resume=str(out), max_iters=4)
    assert not lock._held


def test_a_new_run_refuses_a_folder_whose_files_it_would_write_over(capsys, tmp_path):
    tinygpt.prepare("rhyme", str(tmp_path / "data"))
    before = checksums(tmp_path / "data")
    for extra in ([], ["--overwrite"]):
        code, _, err = run_cli(capsys, "train", "--data", "rhyme", "--out", tmp_path / "data", *TINY, *extra)
        one_line(code, err, f"{tmp_path / 'data'} holds no tinygpt run but has tokenizer.json, which a run would "
                            "write over; choose another --out")
    assert checksums(tmp_path / "data") == before


# ---- full and read-only disks -----------------------------------------------------------------------------

@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m"):
    """A tmpfs of `size` at `folder`: a disk that fills up, and can be made read-only (needs root and mount)."""
    folder.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(proc.stderr or proc.stdout).strip()[:80]}): the full-disk "
                    "and read-only cases need root and mount")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave_kb: int = 16):
    stat = os.statvfs(folder)
    free = stat.f_bavail * stat.f_frsize
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_kb * 1024))


def test_a_full_disk_is_one_line_and_the_saved_run_stays_loadable(capsys, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        run = disk / "run"
        assert run_cli(capsys, "train", "--data", "rhyme", "--out", run, "--max-iters", "4", "--eval-interval", "2",
                       *TINY)[0] == 0
        assert run_cli(capsys, "plot", run, "-o", run / "loss.png")[0] == 0
        before = checksums(run)
        fill(disk)
        for argv, fragment in [
            (["train", "--resume", run, "--max-iters", "8"], f"no space left on device writing {run}/"),
            (["prepare", "shakespeare", "--out", disk / "data", "--quiet"], f"no space left on device writing {disk}"),
            (["plot", run, "-o", run / "loss.png"], f"no space left on device writing {run / 'loss.png'}"),
        ]:
            code, _, err = run_cli(capsys, *argv)
            one_line(code, err, fragment, "nothing saved was changed", status=1)
            assert checksums(run) == before, argv
        metrics = (run / "metrics.jsonl").read_bytes()
        with pytest.raises(OSError):  # a record that does not fit is taken back, not left half-written
            append_metrics(run / "metrics.jsonl", {"step": 9, "tokens": 0, "note": "x" * 3_000_000})
        assert (run / "metrics.jsonl").read_bytes() == metrics
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "run"]  # no .part, no temporary file
        assert not [p for p in run.rglob("*.tmp")]
        (disk / "filler").unlink()
        assert tinygpt.load(run).generate("mary", max_new_tokens=3)
        code, out, _ = run_cli(capsys, "train", "--resume", run, "--max-iters", "8")  # space again: it continues
        assert code == 0 and "done: step 8" in out


def test_a_read_only_folder_is_one_line_and_changes_nothing(capsys, tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        run = disk / "run"
        assert run_cli(capsys, "train", "--data", "rhyme", "--out", run, "--max-iters", "2", *TINY)[0] == 0
        before = checksums(run)
        # Root writes through file permissions, so a read-only mount it is (CI runs as root).
        proc = subprocess.run(["mount", "-o", "remount,ro", str(disk)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot remount the tmpfs read-only: {proc.stderr.strip()[:80]}")
        for argv, fragment in [
            (["train", "--resume", run, "--max-iters", "4"], f"read-only file system: cannot write {run}/"),
            (["train", "--data", "rhyme", "--out", run, "--overwrite", *TINY], "read-only file system"),
            (["prepare", "rhyme", "--out", disk / "data"], f"read-only file system: cannot write {disk}/data"),
            (["plot", run, "-o", run / "loss.png"], f"read-only file system: cannot write {run / 'loss.png'}"),
        ]:
            code, _, err = run_cli(capsys, *argv)
            one_line(code, err, fragment, "nothing saved was changed", status=1)
        assert checksums(run) == before
        assert run_cli(capsys, "eval", run)[0] == 0  # readers read


# ---- Ctrl-C -----------------------------------------------------------------------------------------------

def python_is_up(pid: int):
    """Wait until Python has installed its Ctrl-C handler (SigCgt in /proc): before, and for the next 20 ms or so
    of Python's own start, a Ctrl-C ends any Python program as Python does, before tinygpt's code runs."""
    deadline = time.time() + 30
    while time.time() < deadline:
        status = Path(f"/proc/{pid}/status")
        if not status.is_file():
            return
        caught = next((line for line in status.read_text().splitlines() if line.startswith("SigCgt:")), "SigCgt: 0")
        if int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.002)


@pytest.mark.parametrize("after_s", [0.1, 0.3, 0.9])
def test_ctrl_c_while_pytorch_imports_is_one_line_and_exit_130(tmp_path, after_s):
    proc = tinygpt_process("train", "--data", "rhyme", "--out", tmp_path / "run", *TINY, cwd=tmp_path)
    python_is_up(proc.pid)
    time.sleep(after_s)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if line.strip()] in (
        ["tinygpt: interrupted"],  # before training began
        ["tinygpt: quit at step 0 before the first checkpoint was saved; nothing to resume"])
    assert "Traceback" not in err and out == ""
