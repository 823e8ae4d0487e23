"""Issue 24's fuzz of the API: `tinygpt serve` against schemathesis, from the server's own /openapi.json.

    python benchmarks/fuzz_api.py                               # 1,000 examples per operation and mode
    python benchmarks/fuzz_api.py --examples 100 --json benchmarks/results/fuzz_api.json

The server (its own process, as a user runs it: `tinygpt serve CHAR CHAT --port P --quiet`) serves a
tiny char model and its chat fine-tune, trained here in seconds. tests/fuzz_api.py generates, for every
operation, requests the schema allows and requests it forbids, sends them and checks each answer:
no 5xx, only documented status codes and content types, bodies that match the schema, every
forbidden request refused (the suite runs the same with 20 examples). Prints the number of cases, the
statuses and any failure; exits 1 if there was one.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_api import fuzz  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="per operation and mode (1,000)")
    parser.add_argument("--json", default=None, metavar="FILE")
    args = parser.parse_args()

    import tinygpt
    from tinygpt.data import rhyme_text

    work = Path(tempfile.mkdtemp(prefix="tinygpt-fuzz-"))
    corpus = work / "rhyme.txt"
    corpus.write_text(rhyme_text() * 3, encoding="utf-8")
    tiny = dict(tokenizer="char", n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, threads=1,
                progress=False, sample_tokens=0)
    tinygpt.train(data=str(corpus), out=str(work / "char"), max_iters=40, **tiny)
    chats = work / "chats.jsonl"
    chats.write_text(json.dumps({"messages": [{"role": "user", "content": "mary"},
                                              {"role": "assistant", "content": "had a"}]}) * 1 + "\n",
                     encoding="utf-8")
    tinygpt.sft(str(work / "char"), data=str(chats), out=str(work / "chat"), max_iters=5, threads=1, progress=False,
                sample_tokens=0, batch_size=1, val_fraction=0.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tinygpt", "serve", str(work / "char"), str(work / "chat"),
                               "--port", str(port), "--quiet", "--max-tokens", "64"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health")
                break
            except OSError:
                time.sleep(0.1)
        started = time.perf_counter()
        report = fuzz(url, examples=args.examples)
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        _, err = server.communicate()
    tracebacks = err.count("Traceback")
    print(f"{report['cases']:,} requests in {seconds:.0f} s over {len(report['operations'])} operations "
          f"({args.examples} examples per operation and mode)")
    print("statuses: " + ", ".join(f"{code}: {n:,}" for code, n in sorted(report["statuses"].items(), key=str)))
    print(f"5xx: {sum(n for code, n in report['statuses'].items() if str(code).startswith('5'))}; "
          f"failed checks: {len(report['failures'])} operations; tracebacks in the server's log: {tracebacks}")
    for where, failure in report["failures"]:
        print(f"\n{where}:\n{failure}")
    if args.json:
        Path(args.json).write_text(json.dumps({**report, "examples": args.examples, "seconds": seconds,
                                               "server_tracebacks": tracebacks}, indent=2, default=str) + "\n")
    return 1 if report["failures"] or tracebacks else 0


if __name__ == "__main__":
    raise SystemExit(main())
