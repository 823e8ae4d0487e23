"""The model to look at when none is named: the nursery-rhyme run of SPEC §1, trained once and kept.

It lives in the user's cache directory (`tinygpt.data.cache_dir()/runs/rhyme`), so `tinygpt
explain` and `tinygpt inspect` work on a fresh install, and the second time cost nothing.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from ..data import cache_dir
from ..store.rundir import RunDir

DEFAULT_PROMPT = "mary had a little"


def rhyme_run_dir() -> Path:
    return cache_dir() / "runs" / "rhyme"


def default_run(say=None) -> Path:
    """The cached rhyme run's directory, training it first (about 15 s on a laptop) if it is not there."""
    say = say or (lambda line: print(line, file=sys.stderr))
    run_dir = rhyme_run_dir()
    if RunDir(run_dir).finished():
        return run_dir
    from .. import train

    resume = RunDir(run_dir).has_checkpoint()
    say(f"no RUN given: {'finishing' if resume else 'training'} the nursery-rhyme model once, into {run_dir} "
        "(about 15 s on a laptop; later calls reuse it)")
    # Training reports on stdout; keep stdout for what the user asked for (e.g. --json).
    with contextlib.redirect_stdout(sys.stderr):
        if resume:
            train(resume=str(run_dir), progress=False, sample_tokens=0)
        else:
            train(preset="rhyme", out=str(run_dir), progress=False, sample_tokens=0)
    return run_dir
