"""How many CPU threads a training run should take: measured quiet and busy, for the rule in devices.py.

Two parts, each on this machine as it is and with one spinning process per core beside it ("busy":
what a laptop with a browser and an editor open looks like to a 2-core process):

    steps     the median optimizer-step time of models of several sizes, at one thread and at one per
              core (each a fresh process; steps after the first three). The work of a step is the
              matmul FLOPs of its forward and backward, 6 x weights x tokens (weights: those in the
              blocks and the head, not the embedding lookups) plus attention's, what
              devices.step_work computes; the rule picks one thread below a threshold of work per step.
    main      the README's first command, `tinygpt train` (the rhyme model), as a whole command:
              wall time with the old default (one thread per core, --threads N) and the new one (the
              rule: no flag), medians of --repeats runs.

    python benchmarks/threads.py                       # both parts, 3 repeats, writes results/threads.json
    python benchmarks/threads.py --parts main --repeats 3

Timings need a machine with nothing else running (the busy half brings its own load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "threads.json"

# (label, preset, overrides, steps): small to big work per step. The lecture model takes a batch of 8
# windows here (a step of its own batch of 64 takes tens of seconds at one thread).
MODELS = [
    ("rhyme", "rhyme", {}, 80),
    ("speedrun-cpu", "speedrun-cpu", {"time_budget": "", "max_iters": 0}, 40),
    ("default (char, 4x128)", "", {"data": "shakespeare"}, 30),
    ("lecture-small", "lecture-small", {}, 30),
    ("nanogpt-cpu, batch 48", "nanogpt-cpu", {"batch_size": 48}, 20),
    ("lecture, batch 1", "lecture", {"batch_size": 1}, 12),
    ("lecture, batch 2", "lecture", {"batch_size": 2}, 10),
    ("lecture, batch 8", "lecture", {"batch_size": 8}, 8),
]


def child_steps(preset: str, overrides: dict, threads: int, steps: int) -> dict:
    """In a fresh process: train `steps` steps and report the median step time and the step's work."""
    import tinygpt
    from tinygpt.core.devices import step_work

    times, marks = [], [time.perf_counter()]

    def on_step(trainer):
        now = time.perf_counter()
        times.append(now - marks[-1])
        marks.append(now)
        if trainer.step == 1:
            on_step.work = step_work(trainer.model, trainer.objective.tokens_per_batch * trainer.cfg.grad_accum)

    with tempfile.TemporaryDirectory() as out:
        # Evaluations kept small (an exact pass over a thousand tokens): only the steps are timed.
        settings = {**overrides, "max_iters": steps, "threads": threads, "eval_interval": 10**6, "val_fraction": 0.001,
                    "eval_iters": 0, "eval_max_tokens": 1024, "sample_tokens": 0, "progress": False,
                    "out": str(Path(out) / "run")}

        def first(trainer):  # the clock starts at the first step, not at setup
            marks[-1] = time.perf_counter()

        settings_preset = {"preset": preset} if preset else {}
        tinygpt.train(**settings_preset, **settings, log=lambda line: None,
                      on_step=lambda t: on_step(t) if t.step > 0 else first(t))
    kept = times[3:] if len(times) > 6 else times[1:]
    return {"median_step_s": statistics.median(kept), "steps": len(kept), "work_gflop": on_step.work / 1e9}


def spinners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs):
    for p in procs:
        p.kill()
        p.wait()


def run_child(preset, overrides, threads, steps) -> dict:
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); from threads import child_steps; "
            f"print('RESULT', json.dumps(child_steps({preset!r}, {overrides!r}, {threads}, {steps})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main_job(threads: int | None) -> float:
    """Wall seconds of `tinygpt train` (the rhyme model), everything included; threads None: the default."""
    with tempfile.TemporaryDirectory() as out:
        cmd = ["tinygpt", "train", "--out", str(Path(out) / "rhyme"), "--no-progress"]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=3600)
        return time.perf_counter() - start


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="steps,main", help="steps, main, or both (comma-separated)")
    ap.add_argument("--models", default="", help="only the step models whose label contains one of these "
                    "comma-separated words (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each main-job measurement (default: 3)")
    ap.add_argument("--json", default=str(RESULTS), help=f"where to write the results (default: {RESULTS})")
    args = ap.parse_args(argv)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    parts = set(args.parts.split(","))
    doc = {"cores": cores, "load_before": os.getloadavg(), "python": sys.version.split()[0]}
    import torch

    doc["torch"] = torch.__version__
    for load in ("quiet", "busy"):
        procs = spinners(cores) if load == "busy" else []
        try:
            time.sleep(1.0 if procs else 0.0)
            if "steps" in parts:
                rows = []
                wanted = [w for w in args.models.split(",") if w]
                for label, preset, overrides, steps in MODELS:
                    if wanted and not any(w in label for w in wanted):
                        continue
                    row = {"model": label}
                    for threads in (1, cores):
                        got = run_child(preset, overrides, threads, steps)
                        row[f"step_s_{threads}t"] = got["median_step_s"]
                        row["work_gflop"] = got["work_gflop"]
                    row["speedup"] = row["step_s_1t"] / row[f"step_s_{cores}t"]
                    rows.append(row)
                    print(f"[{load}] {label:<24} work {row['work_gflop']:8.3f} GFLOP/step  1 thread "
                          f"{row['step_s_1t'] * 1e3:8.1f} ms  {cores} threads {row[f'step_s_{cores}t'] * 1e3:8.1f} ms  "
                          f"speedup {row['speedup']:.2f}x", flush=True)
                doc[f"steps_{load}"] = rows
            if "main" in parts:
                old = [main_job(cores) for _ in range(args.repeats)]
                new = [main_job(None) for _ in range(args.repeats)]
                doc[f"main_{load}"] = {"old_default_s": old, "new_default_s": new,
                                       "old_median_s": statistics.median(old), "new_median_s": statistics.median(new)}
                print(f"[{load}] tinygpt train: old default ({cores} threads) median {statistics.median(old):.1f} s "
                      f"{[round(x, 1) for x in old]}; new default median {statistics.median(new):.1f} s "
                      f"{[round(x, 1) for x in new]}", flush=True)
        finally:
            stop(procs)
    doc["load_after"] = os.getloadavg()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
