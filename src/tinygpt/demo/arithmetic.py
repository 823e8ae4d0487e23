"""The demo's world: sums of two small numbers, as plain text and as questions with one right answer.

    world = World(seed=0)                       # the same questions and texts for the same seed
    world.documents()                           # pretraining text: "3 + 4 = 7.", "The sum of 3 and 4 is 7." ...
    world.conversations(world.train[:30])       # {"messages": [user "What is 3 + 4?", assistant "The answer is 7."]}
    grade("What is 3 + 4?", "The answer is 7.") # "right"; "wrong" for another number, "malformed" otherwise

Every ordered pair (a, b) of numbers below `size` is one question. A seeded shuffle puts three
tenths of them in `held_out` (68 of 225, so that one question is 1.5 points of a score): they are
asked in no conversation, preference pair or RL prompt that a stage trains on, only when the demo
grades a stage (and scores the reward model). The pretraining
documents state every sum, held-out ones included, but never in the question-and-answer form (no
"What is", no "The answer is"): the base model knows the content, not the format. A reply is
right only as the exact sentence `The answer is N.`
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

QUESTION = "What is {a} + {b}?"
ANSWER = "The answer is {n}."
_QUESTION = re.compile(r"What is (\d+) \+ (\d+)\?")
_ANSWER = re.compile(r"The answer is (-?\d+)\.")
# Pretraining writes each sum in these forms: the facts, never the question or the answer sentence.
# Together they hold every character the questions and answers use (the char tokenizer learns its
# alphabet from this text).
_DOCUMENT_FORMS = ("{a} + {b} = {n}.", "The sum of {a} and {b} is {n}.", "When we add {a} to {b}, we get {n}.",
                   "Where does {a} + {b} lead? To {n}.")


def question(a: int, b: int) -> str:
    return QUESTION.format(a=a, b=b)


def answer(a: int, b: int) -> str:
    return ANSWER.format(n=a + b)


def grade(question_text: str, reply: str) -> str:
    """"right" (exactly the answer sentence with the sum), "wrong" (the sentence with another number)
    or "malformed" (anything else) for `reply` to `question_text` ("What is A + B?")."""
    asked = _QUESTION.fullmatch(question_text.strip())
    if asked is None:
        raise ValueError(f"not a question of the demo: {question_text!r}")
    said = _ANSWER.fullmatch(reply.strip())
    if said is None:
        return "malformed"
    return "right" if int(said.group(1)) == int(asked.group(1)) + int(asked.group(2)) else "wrong"


def exact_answer(prompt: str, reply: str) -> float:
    """The verifiable reward for `tinygpt rl --reward tinygpt.demo.arithmetic:exact_answer`: 1 for the
    right answer sentence, 0 otherwise."""
    return 1.0 if grade(prompt, reply) == "right" else 0.0


@dataclass(frozen=True)
class World:
    """The questions of one seed, split, and every text the stages learn from."""

    seed: int = 0
    size: int = 15  # numbers 0 .. size - 1
    held_out_fraction: float = 0.3

    def __post_init__(self):
        pairs = [(a, b) for a in range(self.size) for b in range(self.size)]
        random.Random(self.seed).shuffle(pairs)
        n_held_out = round(len(pairs) * self.held_out_fraction)
        object.__setattr__(self, "held_out", pairs[:n_held_out])
        object.__setattr__(self, "train", pairs[n_held_out:])

    def documents(self, copies: int = 30) -> str:
        """Pretraining text: every sum (held-out ones too) in each document form, `copies` times, one
        statement a line, in a seeded order."""
        lines = [form.format(a=a, b=b, n=a + b) for a, b in self.train + self.held_out for form in _DOCUMENT_FORMS]
        text = lines * copies
        random.Random(self.seed + 1).shuffle(text)
        return "\n".join(text) + "\n"

    @staticmethod
    def conversations(pairs) -> list[dict]:
        """SFT demonstrations: one user question and the assistant's answer sentence each."""
        return [{"messages": [{"role": "user", "content": question(a, b)},
                              {"role": "assistant", "content": answer(a, b)}]} for a, b in pairs]

    @staticmethod
    def prompts(pairs) -> list[dict]:
        """RL prompts (TRL's prompt-only format): the question alone; the grader knows the answer."""
        return [{"prompt": question(a, b)} for a, b in pairs]

    @staticmethod
    def near_misses(pairs, per_question: int, seed: int) -> list[dict]:
        """Preference pairs a labeller writes: for each question, `per_question` answer sentences (at most
        as many as there are) with a number a little off (1, 2 or 10 either way, never negative), each
        rejected for the right one."""
        rng = random.Random(seed)
        rows = []
        for a, b in pairs:
            n = a + b
            wrong = [n + d for d in (-10, -2, -1, 1, 2, 10) if n + d >= 0]
            chosen = rng.sample(wrong, min(per_question, len(wrong)))
            rows += [World.preference_pair(a, b, ANSWER.format(n=m)) for m in chosen]
        return rows

    @staticmethod
    def preference_pair(a: int, b: int, rejected: str) -> dict:
        """A preference pair (TRL's conversational format): the answer sentence chosen over `rejected`."""
        return {"prompt": [{"role": "user", "content": question(a, b)}],
                "chosen": [{"role": "assistant", "content": answer(a, b)}],
                "rejected": [{"role": "assistant", "content": rejected}]}
