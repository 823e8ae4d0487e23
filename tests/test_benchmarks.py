"""The benchmark scripts stay runnable: each imports and answers --help (their long runs are not tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def test_every_benchmark_is_checked():
    assert {p.name for p in BENCHMARKS} >= {"reproduce.py", "speed.py", "ablate.py", "nanogpt_side.py",
                                              "nanogpt_equivalence.py", "matmul_rate.py", "big_corpus.py"}


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_a_benchmark_script_answers_help(script):
    proc = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage:")
