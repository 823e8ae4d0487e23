"""Measuring runs: `tinygpt eval`.

    runs.py      each kind of run measured by what it learnt (its own held-out split or --data)
    harness.py   EleutherAI's lm-evaluation-harness on a run (--tasks): its standard tasks, or your own YAML

harness.py needs `lm-eval` (the `eval` extra) and is imported only when asked for.
"""

from .runs import EVALUATORS, dpo, evaluate_run, reward_model

__all__ = ["EVALUATORS", "dpo", "evaluate_run", "reward_model"]
