"""Checkpoints you can trust: a damaged byte is caught by a checksum and named in one line, files from
before checksums still load, and a trainer killed at any moment (inside a checkpoint write too) leaves a
run directory that loads, resumes, and ends at exactly the loss of a run never killed."""

import importlib.util
import random
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

import tinygpt
from tinygpt.cli import main
from tinygpt.store.checkpoint import load_checkpoint, load_tensors

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "crash_safety.py"


def flip_a_tensor_byte(path: Path):
    """Invert one byte in the middle of the tensor data (after the header, which safetensors checks itself)."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    data[(start + len(data)) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def strip_checksum(path: Path):
    """Rewrite a file as tinygpt wrote it before checksums: the same tensors and metadata, no checksum."""
    tensors, metadata = load_tensors(path)
    del metadata["checksum"]
    save_file(tensors, str(path), metadata=metadata)


def one_line_error(capsys, *args) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("tinygpt: error: "), err
    return err


# ---- checksums ---------------------------------------------------------------------------------------

def test_every_file_the_trainer_writes_carries_a_crc32_that_matches(char_run):
    for name in ("model.safetensors", "checkpoints/latest.safetensors", "checkpoints/best.safetensors"):
        _, metadata = load_tensors(char_run / name)
        kind, _, digits = metadata["checksum"].partition(":")
        assert kind == "crc32" and len(digits) == 8 and int(digits, 16) >= 0


def test_a_flipped_byte_in_the_weights_is_named_and_latest_still_loads(char_run, copy_run):
    run = copy_run(char_run)
    flip_a_tensor_byte(run / "model.safetensors")
    with pytest.raises(tinygpt.TinyGPTError) as e:
        tinygpt.load(run)
    message = str(e.value)
    assert message.startswith(f"{run / 'model.safetensors'} is damaged: its contents no longer match the checksum")
    assert "checkpoints/latest.safetensors may still load" in message and "\n" not in message
    # The fix the message names works, and gives the model the run ended with (latest = best at step 40).
    assert tinygpt.load(run, checkpoint="latest").generate("mary", max_new_tokens=8, seed=0) == \
        tinygpt.load(char_run).generate("mary", max_new_tokens=8, seed=0)


def test_a_flipped_byte_in_the_latest_checkpoint_is_named_and_the_weights_still_load(char_run, copy_run):
    run = copy_run(char_run)
    latest = run / "checkpoints" / "latest.safetensors"
    flip_a_tensor_byte(latest)
    with pytest.raises(tinygpt.TinyGPTError, match=f"^{latest} is damaged: .*best.safetensors may still load"):
        tinygpt.load(run, checkpoint="latest")
    with pytest.raises(tinygpt.TinyGPTError, match=f"^{latest} is damaged: .*replace it with an intact copy"):
        load_checkpoint(latest)  # the file alone does not know its run
    assert tinygpt.load(run).generate("mary", max_new_tokens=3, seed=0)


def test_a_changed_metadata_value_is_caught_too(char_run, copy_run):
    run = copy_run(char_run)
    path = run / "model.safetensors"
    data = path.read_bytes()
    assert data.count(b'"step":"40"') == 1  # same length: the header still parses
    path.write_bytes(data.replace(b'"step":"40"', b'"step":"41"'))
    with pytest.raises(tinygpt.TinyGPTError, match="model.safetensors is damaged"):
        tinygpt.load(run)


@pytest.mark.parametrize("name, flags", [("model.safetensors", []),
                                         ("checkpoints/latest.safetensors", ["--checkpoint", "latest"])])
def test_sample_exits_2_with_one_line_naming_the_damaged_file(capsys, char_run, copy_run, name, flags):
    run = copy_run(char_run)
    flip_a_tensor_byte(run / name)
    err = one_line_error(capsys, "sample", run, "--prompt", "mary", "--max-new-tokens", "3", *flags)
    assert f"{run / name} is damaged" in err


def test_resume_refuses_a_damaged_latest_checkpoint_and_best_can_take_its_place(capsys, char_run, copy_run):
    run = copy_run(char_run)
    ckpt = run / "checkpoints"
    flip_a_tensor_byte(ckpt / "latest.safetensors")
    err = one_line_error(capsys, "train", "--resume", run, "--max-iters", "45", "--no-progress", "--sample-tokens", "0")
    assert f"{ckpt / 'latest.safetensors'} is damaged" in err
    assert "copy it over latest.safetensors to resume from its step" in err
    shutil.copyfile(ckpt / "best.safetensors", ckpt / "latest.safetensors")
    assert main(["train", "--resume", str(run), "--max-iters", "45", "--no-progress", "--sample-tokens", "0"]) == 0
    assert load_checkpoint(ckpt / "latest.safetensors")["progress"]["step"] == 45


def test_files_written_before_checksums_load_as_before(char_run, copy_run):
    run = copy_run(char_run)
    for name in ("model.safetensors", "checkpoints/latest.safetensors"):
        strip_checksum(run / name)
        assert "checksum" not in load_tensors(run / name)[1]
    for which in ("best", "latest"):
        assert tinygpt.load(run, checkpoint=which).generate("mary", max_new_tokens=8, seed=0) == \
            tinygpt.load(char_run, checkpoint=which).generate("mary", max_new_tokens=8, seed=0)


# ---- killed at random moments --------------------------------------------------------------------------

def test_a_run_killed_four_times_still_loads_resumes_and_ends_at_the_uninterrupted_loss(shakespeare_file, tmp_path):
    spec = importlib.util.spec_from_file_location("crash_safety", BENCHMARK)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run, straight = tmp_path / "killed", tmp_path / "straight"
    first = bench.train_command(run, max_iters=500)
    # This seed kills the first attempt 3.4 s in (training, on this machine), the third 0.2 s in (starting up),
    # and the second and fourth inside the fourth checkpoint write each of them sees.
    events = bench.kill_loop(run, first, bench.resume_command(run), ["random", "write", "random", "write"],
                             random.Random(0), max_delay_s=4.0, log_file=tmp_path / "train.log", say=lambda _: None)
    assert len(events) == 4
    assert sum(e["inside_write"] is not None for e in events) >= 1
    for e in events:  # after every kill, whatever has been written loads
        assert set(e["loads"].values()) <= {"ok", "absent"}, e
        assert e["loads"]["latest"] == ("absent" if e["latest_step_after"] is None else "ok")
    bench.finish(run, straight, first, tmp_path / "train.log")
    same = bench.compare_runs(run, straight)
    assert same["final_val_loss_equal"] and same["final_val_loss_killed"] < 3.0
    assert same["latest_checkpoint_identical"]  # weights, optimizer and random state, bit for bit
    assert same["metrics_equal_where_both_have_a_step"] and same["steps_only_in_killed_run"] == []
