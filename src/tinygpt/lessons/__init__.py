"""Small, runnable lessons that rebuild the ideas behind a GPT from scratch, with the teaching texts' numbers.

Each lesson is one module here with `run(out=print, ...) -> dict`: it prints its steps through `out`
and returns its numbers (what `tinygpt lesson NAME --json` prints). Adding a lesson is that module
plus one entry in LESSONS; `tinygpt lesson --help` lists them from there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..core.errors import TinyGPTError


@dataclass(frozen=True)
class Lesson:
    name: str  # also the module's name in tinygpt.lessons
    summary: str  # one line for `tinygpt lesson --help`
    takes_data: bool = False  # run() accepts data=FILE (the learner's own text)

    def run(self, out=print, data: str | None = None) -> dict:
        module = importlib.import_module(f"{__name__}.{self.name}")
        if data is None:
            return module.run(out=out)
        if not self.takes_data:
            takers = ", ".join(lesson.name for lesson in LESSONS if lesson.takes_data)
            raise TinyGPTError(f"lesson {self.name} takes no --data; the lessons that read your text: {takers}")
        return module.run(out=out, data=data)


# In the order a learner meets them.
LESSONS = (
    Lesson("basics", "the tutorial's worked numbers: a neuron, a 2-2-1 network, loss, chain rule, descent,"
                     " a torch loop"),
    Lesson("data", "the lecture's text -> batches: vocabulary, encode, 90/10 split, the seed-1337 batch (--data FILE)",
           takes_data=True),
    Lesson("attention", "averaging the past four ways, the a @ b toy, why scores are divided by sqrt(head_size)"),
    Lesson("norms", "LayerNorm by hand from BatchNorm; residual paths as a gradient superhighway in a deep stack"),
    Lesson("transformer", "the rest of the Transformer: the three masks, cross-attention by hand, post- vs pre-norm"),
)


def lesson(name: str) -> Lesson:
    for candidate in LESSONS:
        if candidate.name == name:
            return candidate
    raise TinyGPTError(f"no lesson {name!r}; the lessons are: {', '.join(lesson.name for lesson in LESSONS)}")


def as_data(value):
    """A lesson's numbers as plain JSON values: tensors and tuples become (nested) lists."""
    import torch  # here, not above: `tinygpt lesson --help` lists the lessons without importing PyTorch

    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): as_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_data(v) for v in value]
    return value
