"""Checkpoints you can trust: what their checksum costs, and a trainer killed again and again.

    python benchmarks/crash_safety.py                                    # both parts
    python benchmarks/crash_safety.py --json benchmarks/results/crash_safety.json
    python benchmarks/crash_safety.py --part checksum --repeats 9
    python benchmarks/crash_safety.py --part kills --kills 40

checksum: a checkpoint of the `lecture` preset's model (10,788,929 parameters) with its AdamW state
after one step, saved with `save_checkpoint` and loaded with `load_checkpoint` with and without the
checksum, interleaved (one of each per round, the order alternating), medians of --repeats rounds.
It also times each candidate hash of the standard library over the same tensor bytes.

kills: `tinygpt train` on tiny Shakespeare as a subprocess, killed with SIGKILL --kills times, a share
of them (--write-share) while a checkpoint is being written: the harness polls the run directory
every millisecond for a fresh temporary file (`.model.safetensors.tmp`, `checkpoints/.latest...`) and
kills while it exists. After every kill both `tinygpt.load(run)` and `tinygpt.load(run,
checkpoint="latest")` must work, and the next attempt is `tinygpt train --resume RUN`. At the end the
run is finished without kills and compared with the same run trained straight through.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import torch

import tinygpt
from tinygpt.store.checkpoint import load_checkpoint, load_tensors, read_metrics, save_checkpoint, tensors_checksum

# A small model that takes ~10 ms a step on one thread, checkpointed every 10 steps.
TRAIN_FLAGS = ["--data", "shakespeare", "--tokenizer", "char", "--threads", "1", "--seed", "7", "--n-layer", "2",
               "--n-head", "2", "--n-embd", "32", "--block-size", "32", "--batch-size", "8", "--eval-interval", "10",
               "--eval-max-tokens", "1024", "--no-progress", "--sample-tokens", "0"]
# The temporary names `checkpoint.py` writes to before renaming into place.
TEMPORARY = (".model.safetensors.tmp", "checkpoints/.latest.safetensors.tmp", "checkpoints/.best.safetensors.tmp")
LECTURE_SHAPE = dict(block_size=256, n_embd=384, n_head=6, n_layer=6, dropout=0.2, bias=True,
                     init="torch", attn_scale="n_embd")
LECTURE_PARAMS = 10_788_929


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- the checksum's cost

def lecture_checkpoint():
    """The lecture preset's model and its AdamW state after one step, as the trainer would save them."""
    from tinygpt.config import build_configs
    from tinygpt.model import build_model
    from tinygpt.training.optim import build_optimizer

    torch.manual_seed(0)
    model_cfg, train_cfg = build_configs(LECTURE_SHAPE, dict(optimizer="adamw", lr=3e-4, weight_decay=0.01))
    model_cfg.vocab_size = 65  # tiny Shakespeare's characters (a run takes it from its tokenizer)
    model = build_model(model_cfg)
    assert model.num_params() == LECTURE_PARAMS, model.num_params()
    optimizer = build_optimizer(model, train_cfg, "cpu")
    x = torch.randint(0, model_cfg.vocab_size, (4, model_cfg.block_size))  # (B, T)
    _, loss = model(x, x)
    loss.backward()
    optimizer.step()
    rng = {"batch": torch.Generator().manual_seed(0).get_state(), "torch": torch.get_rng_state()}
    progress = {"step": 1, "tokens": x.numel(), "elapsed_s": 1.0, "best_val_loss": 4.2, "best_score": 4.2,
                "best_step": 1}
    return model, optimizer, rng, progress


def _byte_views(tensors: dict[str, torch.Tensor]) -> list[memoryview]:
    return [memoryview(tensors[k].contiguous().reshape(-1).view(torch.uint8).numpy()) for k in sorted(tensors)]


HASHES = ("crc32", "adler32", "sha256", "blake2b")


def hash_bytes(kind: str, views: list[memoryview]):
    """One of the standard library's checksums or hashes over all the views, in order."""
    if kind in ("crc32", "adler32"):
        fn = getattr(zlib, kind)
        value = fn(b"")
        for view in views:
            value = fn(view, value)
        return value
    h = hashlib.new(kind)
    for view in views:
        h.update(view)
    return h.hexdigest()


def measure_checksum(folder: Path, repeats: int) -> dict:
    model, optimizer, rng, progress = lecture_checkpoint()
    with_sum, without_sum = folder / "with.safetensors", folder / "without.safetensors"
    keys = ("save_with", "save_without", "load_verified", "load_unverified", "load_unverified_touched")
    times: dict[str, list[float]] = {k: [] for k in keys}

    def load_and_touch():
        # An unverified load only maps the file; its pages are read when first used. Reading one byte
        # of every page makes it read the file, as any use of the tensors would, without a hash.
        state = load_checkpoint(with_sum, verify=False)
        optim = [v for sd in state["optimizer"] for p in sd["state"].values() for v in p.values() if torch.is_tensor(v)]
        for t in [*state["model"].values(), *state["rng"].values(), *optim]:
            t.reshape(-1).view(torch.uint8)[::4096].sum()

    def timed(key, fn):
        start = time.perf_counter()
        fn()
        times[key].append(time.perf_counter() - start)

    save_checkpoint(with_sum, model, optimizer, rng, progress)  # warm-up: allocator, page cache, imports
    load_checkpoint(with_sum)
    for r in range(repeats):
        saves = [("save_with", lambda: save_checkpoint(with_sum, model, optimizer, rng, progress)),
                 ("save_without", lambda: save_checkpoint(without_sum, model, optimizer, rng, progress,
                                                          checksum=False))]
        loads = [("load_verified", lambda: load_checkpoint(with_sum)),
                 ("load_unverified", lambda: load_checkpoint(with_sum, verify=False)),
                 ("load_unverified_touched", load_and_touch)]
        for pair in (saves, loads):
            for key, fn in pair if r % 2 == 0 else pair[::-1]:
                timed(key, fn)

    tensors, metadata = load_tensors(with_sum)
    views = _byte_views(tensors)
    nbytes = sum(v.nbytes for v in views)
    as_used = "tensors_checksum (crc32, as used)"
    hashes: dict[str, list[float]] = {k: [] for k in (*HASHES, as_used)}
    for _ in range(repeats + 1):  # the first round warms up
        for kind in HASHES:
            start = time.perf_counter()
            hash_bytes(kind, views)
            hashes[kind].append(time.perf_counter() - start)
        start = time.perf_counter()
        tensors_checksum(tensors, metadata)
        hashes[as_used].append(time.perf_counter() - start)
    hashes = {k: v[1:] for k, v in hashes.items()}

    ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    med = {k: ms(v) for k, v in times.items()}
    return {
        "parameters": LECTURE_PARAMS,
        "tensors": len(tensors),
        "file_mb": round(with_sum.stat().st_size / 1e6, 1),
        "tensor_mb": round(nbytes / 1e6, 1),
        "repeats": repeats,
        "median_ms": med,
        "all_ms": {k: [round(x * 1000, 1) for x in v] for k, v in times.items()},
        "save_ratio": round(med["save_with"] / med["save_without"], 3),
        "load_ratio": round(med["load_verified"] / med["load_unverified"], 3),
        "load_ratio_to_touched": round(med["load_verified"] / med["load_unverified_touched"], 3),
        "hash_median_ms": {k: ms(v) for k, v in hashes.items()},
        "hash_mb_per_s": {k: round(nbytes / 1e6 / statistics.median(v)) for k, v in hashes.items()},
        "checksum": metadata["checksum"],
        "note": ("saves include the fsync; loads read the file just written (from the page cache); an "
                 "unverified load only maps the file (its pages are read when the tensors are first used), "
                 "so load_unverified_touched, which reads one byte of every page, is the like-for-like figure"),
    }


# ----------------------------------------------------------------------------- killing the trainer

def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _fresh_temporary(run: Path, stale: dict) -> str | None:
    """The temporary file of a checkpoint write in progress now (not one left by an earlier kill)."""
    for name in TEMPORARY:
        stamp = _stamp(run / name)
        if stamp is not None and stamp != stale.get(name):
            return name
    return None


def _latest_step(run: Path) -> int | None:
    path = run / "checkpoints" / "latest.safetensors"
    return load_checkpoint(path)["progress"]["step"] if path.is_file() else None


def check_loads(run: Path) -> dict:
    """Whether the run directory loads both ways now: 'ok', 'absent' (not written yet) or the error."""
    result = {}
    for which, path in (("best", run / "model.safetensors"), ("latest", run / "checkpoints" / "latest.safetensors")):
        if not path.is_file() or not (run / "config.json").is_file():
            result[which] = "absent"
            continue
        try:
            tinygpt.load(run, checkpoint=which)
            result[which] = "ok"
        except tinygpt.TinyGPTError as e:
            result[which] = f"error: {e}"
    return result


def kill_loop(run: Path, first: list[str], resume: list[str], plans: list[str], rng: random.Random,
              max_delay_s: float, log_file: Path, say=print) -> list[dict]:
    """Start the trainer (with --resume once a checkpoint exists) and SIGKILL it once per plan.

    A plan is 'write' (poll every ~1 ms for a checkpoint write in progress, let a random 0-3 of them
    finish, kill during the next) or 'random' (kill after a random 0-max_delay_s seconds). Returns
    one record per kill.
    """
    events = []
    with open(log_file, "ab") as log:
        for attempt, plan in enumerate(plans):
            resumed = (run / "checkpoints" / "latest.safetensors").is_file()
            step_before = _latest_step(run)
            stale = {name: _stamp(run / name) for name in TEMPORARY}
            started = time.perf_counter()
            proc = subprocess.Popen(resume if resumed else first, stdout=log, stderr=log)
            if plan == "write":
                skip = rng.randrange(4)
                while proc.poll() is None:
                    name = _fresh_temporary(run, stale)
                    if name is not None:
                        if skip == 0:
                            break
                        skip -= 1
                        while proc.poll() is None and (run / name).exists():
                            time.sleep(0.001)  # let this write finish: its file is renamed into place
                        stale[name] = None
                    time.sleep(0.001)
            else:
                deadline = started + rng.uniform(0.0, max_delay_s)
                while proc.poll() is None and time.perf_counter() < deadline:
                    time.sleep(0.001)
            if proc.poll() is not None:
                raise RuntimeError(f"attempt {attempt} ended by itself (exit {proc.returncode}) before its kill; "
                                   f"raise --max-iters, or see {log_file}")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            after = time.perf_counter() - started
            # A temporary file still there, and written by this attempt: the kill landed inside that write.
            # (None for a 'write' plan whose write was renamed between the last poll and the kill.)
            inside = _fresh_temporary(run, stale)
            loads = check_loads(run)
            event = {"attempt": attempt, "plan": plan, "resumed": resumed, "killed_after_s": round(after, 3),
                     "inside_write": inside, "latest_step_before": step_before, "latest_step_after": _latest_step(run),
                     "loads": loads}
            events.append(event)
            say(f"kill {attempt + 1}/{len(plans)}: {plan:6s} after {after:5.2f} s, "
                f"{'inside ' + inside if inside else 'not inside a write':45s} latest step {step_before} -> "
                f"{event['latest_step_after']}, loads best={loads['best'][:60]} latest={loads['latest'][:60]}")
    return events


def compare_runs(killed: Path, straight: Path) -> dict:
    """The run finished through the kills against the one trained straight through."""
    keys = ("step", "tokens", "lr", "train_loss", "val_loss")
    a = [tuple(r.get(k) for k in keys) for r in read_metrics(killed / "metrics.jsonl")]
    b = [tuple(r.get(k) for k in keys) for r in read_metrics(straight / "metrics.jsonl")]
    steps_a, steps_b = [r[0] for r in a], [r[0] for r in b]
    common = set(steps_a) & set(steps_b)
    same_values = all(x == y for x, y in zip([r for r in a if r[0] in common], [r for r in b if r[0] in common]))

    def same_tensors(path_a: Path, path_b: Path) -> bool:
        ta, _ = load_tensors(path_a)
        tb, _ = load_tensors(path_b)
        return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)

    return {
        "final_val_loss_killed": a[-1][4], "final_val_loss_straight": b[-1][4],
        "final_val_loss_equal": a[-1][4] == b[-1][4],
        "metrics_records": [len(a), len(b)],
        "metrics_identical": a == b,
        "metrics_equal_where_both_have_a_step": same_values,
        "steps_missing_from_killed_run": sorted(set(steps_b) - set(steps_a)),
        "steps_only_in_killed_run": sorted(set(steps_a) - set(steps_b)),
        "latest_checkpoint_identical": same_tensors(killed / "checkpoints" / "latest.safetensors",
                                                    straight / "checkpoints" / "latest.safetensors"),
        "model_safetensors_identical": same_tensors(killed / "model.safetensors", straight / "model.safetensors"),
    }


def train_command(out: Path, max_iters: int) -> list[str]:
    return [sys.executable, "-m", "tinygpt", "train", *TRAIN_FLAGS, "--max-iters", str(max_iters), "--out", str(out)]


def resume_command(run: Path) -> list[str]:
    return [sys.executable, "-m", "tinygpt", "train", "--resume", str(run), "--threads", "1", "--no-progress",
            "--sample-tokens", "0"]


def finish(run: Path, straight: Path, first: list[str], log_file: Path):
    """Resume the killed run to its end, and train the same run straight through into `straight`."""
    with open(log_file, "ab") as log:
        done = subprocess.run(resume_command(run), stdout=log, stderr=log)
        plain = subprocess.run(first[:-1] + [str(straight)], stdout=log, stderr=log)
    if done.returncode or plain.returncode:
        raise RuntimeError(f"the last resume exited {done.returncode}, the straight run {plain.returncode}; "
                           f"see {log_file}")


def measure_kills(folder: Path, kills: int, write_share: float, max_iters: int, max_delay_s: float, seed: int,
                  say=print) -> dict:
    run, straight, log_file = folder / "killed", folder / "straight", folder / "train.log"
    first = train_command(run, max_iters)
    rng = random.Random(seed)
    n_write = round(kills * write_share)
    plans = ["write"] * n_write + ["random"] * (kills - n_write)
    rng.shuffle(plans)
    start = time.perf_counter()
    events = kill_loop(run, first, resume_command(run), plans, rng, max_delay_s, log_file, say)
    finish(run, straight, first, log_file)
    failures = [e for e in events if any(v.startswith("error") for v in e["loads"].values())]
    return {
        "command": " ".join(["tinygpt", "train"] + TRAIN_FLAGS + ["--max-iters", str(max_iters)]),
        "kills": len(events),
        "planned_inside_writes": n_write,
        "inside_writes": sum(e["inside_write"] is not None for e in events),
        "inside_writes_by_file": {name: sum(e["inside_write"] == name for e in events) for name in TEMPORARY},
        "resumes": sum(e["resumed"] for e in events) + 1,  # the attempts started with --resume, the last one too
        "resumed_attempts_that_saved_a_later_checkpoint": sum(
            e["resumed"] and e["latest_step_after"] > e["latest_step_before"] for e in events),
        "load_failures": len(failures),
        "best_absent_while_latest_exists": sum(e["loads"]["best"] == "absent" and e["loads"]["latest"] == "ok"
                                               for e in events),
        "loss_vs_straight": compare_runs(run, straight),
        "wall_s": round(time.perf_counter() - start, 1),
        "events": events,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The checkpoint checksum's cost, and SIGKILL at random moments.")
    parser.add_argument("--part", choices=("checksum", "kills", "all"), default="all", help="what to measure")
    parser.add_argument("--repeats", type=int, default=7, help="checksum: rounds of each save and load (default 7)")
    parser.add_argument("--kills", type=int, default=40, help="kills: how many SIGKILLs (default 40)")
    parser.add_argument("--write-share", type=float, default=0.5,
                        help="kills: the share aimed inside checkpoint writes (default 0.5)")
    parser.add_argument("--max-iters", type=int, default=4000, help="kills: steps of the run (default 4000)")
    parser.add_argument("--max-delay", type=float, default=5.0,
                        help="kills: a random kill comes 0 to this many seconds after the start (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="kills: seed of the kill schedule (default 0)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON here")
    args = parser.parse_args(argv)

    result = {"machine": f"{os.cpu_count()} CPUs, torch {torch.__version__}", "load_average_start": load_average()}
    with tempfile.TemporaryDirectory(prefix="tinygpt-crash-") as tmp:
        if args.part in ("checksum", "all"):
            c = result["checksum"] = measure_checksum(Path(tmp), args.repeats)
            m = c["median_ms"]
            print(f"checkpoint of {c['parameters']:,} parameters ({c['file_mb']} MB), medians of {c['repeats']}: "
                  f"save {m['save_without']} -> {m['save_with']} ms with the checksum (x{c['save_ratio']}), "
                  f"load {m['load_unverified']} ms mapped, {m['load_unverified_touched']} ms with every page read, "
                  f"{m['load_verified']} ms verified (x{c['load_ratio_to_touched']} the read one)")
            print("hashes of the same bytes (ms): " + ", ".join(f"{k} {v}" for k, v in c["hash_median_ms"].items()))
        if args.part in ("kills", "all"):
            k = result["kills"] = measure_kills(Path(tmp), args.kills, args.write_share, args.max_iters,
                                                args.max_delay, args.seed)
            v = k["loss_vs_straight"]
            print(f"{k['kills']} kills, {k['inside_writes']} inside checkpoint writes, {k['resumes']} resumes, "
                  f"{k['load_failures']} failed loads; final val loss {v['final_val_loss_killed']} vs straight "
                  f"{v['final_val_loss_straight']} (equal: {v['final_val_loss_equal']}); "
                  f"metrics identical: {v['metrics_identical']}, missing steps {v['steps_missing_from_killed_run']}")
    result["load_average_end"] = load_average()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
