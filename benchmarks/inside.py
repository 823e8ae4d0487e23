"""Issue 29's numbers: how fast the playground's Inside view is on screen, and what --watch costs training.

    python benchmarks/inside.py --json benchmarks/results/inside.json
    python benchmarks/inside.py --lecture runs/lecture      # a trained lecture model instead of a 1-step one

1. On screen. In headless Chromium, the Inside view of the rhyme model ("mary had a little lamb") and of
   the 10.8M lecture model (a 256-character text of tiny Shakespeare, 255 tokens with its char tokenizer),
   from the click to the moment every part is drawn (the page's own timer, performance.now(): the
   server's work, the transfer and the drawing). Each repeat looks at a new text (the server keeps the
   last trace, so the same text again would be cheaper); the median of --repeats.
2. --watch. The rhyme preset trained as `tinygpt train` does with checkpoints every 100 steps, alone and
   then with `tinygpt serve RUN --watch` (started first: it waits for the first checkpoint) and a browser
   on its Inside mode; the training's own tokens/s
   each way (median of --repeats, side by side), and for each checkpoint how long after it was written
   the page showed its step (the page's clock against the file's mtime).

The lecture model needs weights: by default one step of `--preset lecture` is trained (the timing does not
depend on them). Load averages are printed before and after.
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
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # browsing: the tests' Chromium

from browsing import browser, wait  # noqa: E402


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tinygpt(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "tinygpt", *args], check=True, capture_output=True, text=True).stdout


def on_screen(run_dir: Path, texts: list[str]) -> list[float]:
    """Seconds from the click to every part drawn, for each text in turn."""
    from tinygpt.serve.app import create_app
    from tinygpt.serve.engine import Engine
    from tinygpt.serve.server import Server, load_runs

    engine = Engine(load_runs([run_dir])).start()
    server = Server(create_app(engine, quiet=True, local_only=True), "127.0.0.1", 0).start()
    driver = browser()
    seconds = []
    try:
        driver.get(server.url + "/#inside")
        ready = lambda: driver.find_element("id", "inside").get_attribute("data-ready") == "1"  # noqa: E731
        wait(ready, 120)
        for text in texts:
            driver.execute_script("arguments[0].value = arguments[1]; document.getElementById('inside')"
                                  ".dataset.ready = ''", driver.find_element("id", "inside-text"), text)
            driver.find_element("id", "inside-look").click()
            wait(ready, 120)
            seconds.append(float(driver.find_element("id", "inside").get_attribute("data-seconds")))
    finally:
        driver.quit()
        server.stop()
        engine.stop()
    return seconds


def train_rhyme(out: Path, steps: int) -> float:
    """`tinygpt train` on the rhyme (checkpoints every 100 steps); its tokens/s."""
    tinygpt("train", "--out", str(out), "--max-iters", str(steps), "--eval-interval", "100", "--no-progress",
            "--sample-tokens", "0", "--threads", "1")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    return last["tokens"] / last["elapsed_s"]


def watched_training(work: Path, steps: int) -> tuple[float, list[float]]:
    """The same training with `tinygpt serve --watch` and a page on its Inside mode: its tokens/s, and how
    long after each checkpoint's write the page showed its step."""
    out = work / "watched"
    server = subprocess.Popen([sys.executable, "-m", "tinygpt", "serve", str(out), "--watch", "--port", "0",
                               "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        trainer = subprocess.Popen([sys.executable, "-m", "tinygpt", "train", "--out", str(out), "--max-iters",
                                    str(steps), "--eval-interval", "100", "--no-progress", "--sample-tokens", "0",
                                    "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = ""
        while not url:  # "serving NAME at http://127.0.0.1:PORT/v1 ..." once the first checkpoint is loaded
            line = server.stdout.readline()
            url = line.split(" at ", 1)[1].split("/v1")[0] if line.startswith("serving ") else ""
        driver = browser()
        shown: dict[str, float] = {}  # step -> when the page first showed it
        written: dict[str, float] = {}  # step -> its checkpoint's mtime, as the server saw it (GET /watch)
        try:
            driver.get(url + "/#inside")
            while trainer.poll() is None or time.time() < max(shown.values(), default=0) + 3:
                status = json.loads(urllib.request.urlopen(url + "/watch").read())
                if status["step"] is not None:
                    written.setdefault(str(status["step"]), status["written_at"])
                step = driver.find_element("id", "inside").get_attribute("data-step")
                if step and step not in shown:
                    shown[step] = time.time()
                if str(steps) in shown:
                    break
                time.sleep(0.1)
        finally:
            driver.quit()
        trainer.wait()
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    finally:
        server.terminate()
        server.wait()
    delays = [shown[s] - written[s] for s in shown if s in written]
    return records[-1]["tokens"] / records[-1]["elapsed_s"], delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lecture", default=None, help="a trained lecture run (default: one step of the preset)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1500, help="rhyme training steps for --watch (1,500)")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tinygpt-inside-"))
    before = load()
    print(f"load before: {before}", flush=True)

    rhyme = work / "rhyme"
    tinygpt("train", "--out", str(rhyme), "--no-progress", "--sample-tokens", "0", "--threads", "1")
    lecture = Path(args.lecture) if args.lecture else work / "lecture"
    if not args.lecture:
        tinygpt("train", "--preset", "lecture", "--out", str(lecture), "--max-iters", "1", "--eval-interval", "1",
                "--eval-iters", "1", "--no-progress", "--sample-tokens", "0")
    from tinygpt.data import SHAKESPEARE_FILE

    shakespeare = (Path(os.environ["TINYGPT_DATA_DIR"]) / SHAKESPEARE_FILE).read_text(encoding="utf-8")
    rhymes = ["mary had a little lamb", "its fleece was white as", "and everywhere that mary went",
              "the lamb was sure to", "it followed her to school"][: args.repeats]
    texts = [shakespeare[1000 * i : 1000 * i + 256] for i in range(args.repeats)]
    screen = {"rhyme (5 tokens, 2 layers x 2 heads)": on_screen(rhyme, rhymes),
              "lecture (255 tokens, 6 layers x 6 heads)": on_screen(lecture, texts)}
    print("\nthe Inside view on screen (click to every part drawn, headless Chromium):")
    for label, seconds in screen.items():
        print(f"  {label:42s} median {statistics.median(seconds):.3f} s   runs: "
              f"{', '.join(f'{s:.3f}' for s in seconds)}")

    alone, watched, delays = [], [], []
    for i in range(args.repeats):
        alone.append(train_rhyme(work / f"alone{i}", args.steps))
        rate, late = watched_training(work / f"w{i}", args.steps)
        watched.append(rate)
        delays += late
    ratio = statistics.median(watched) / statistics.median(alone)
    print(f"\ntraining the rhyme ({args.steps} steps, a checkpoint every 100), tokens/s:")
    print(f"  alone {statistics.median(alone):,.0f}   watched {statistics.median(watched):,.0f}   "
          f"({100 * ratio:.1f}%)   runs: alone {', '.join(f'{r:,.0f}' for r in alone)}; watched "
          f"{', '.join(f'{r:,.0f}' for r in watched)}")
    print(f"  a checkpoint on the page after its write: median {statistics.median(delays):.2f} s, "
          f"most {max(delays):.2f} s ({len(delays)} checkpoints)")
    after = load()
    print(f"\nload after: {after}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "on_screen_s": screen, "training_tokens_per_s": {"alone": alone, "watched": watched},
            "watched_ratio": ratio, "checkpoint_to_page_s": delays, "steps": args.steps,
            "lecture": str(lecture), "load_before": before, "load_after": after}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
