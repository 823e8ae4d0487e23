"""The built-in translation task: dates in ISO form -> the same date in words, reordered.

    date_pairs()            # [("1987-11-05", "5 november 1987"), ...]: the same list on every machine
    exact_match(outputs, targets)

The target rewrites the source (the month's number becomes its name, the day loses its leading
zero) and reorders it (day, month, year where the source has year, month, day), so a model must
find, for each target token, which source characters it comes from: what cross-attention is for.

`date_pairs` draws distinct dates between 1900 and 2099 from a seeded generator; the last
`held_out` of them are never trained on (the encoder-decoder's validation split, with
val_fraction = held_out / n) and every one is a date the training pairs do not contain.
"""

from __future__ import annotations

import datetime
import random

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
N_PAIRS, HELD_OUT = 5000, 500  # the preset's val_fraction is HELD_OUT / N_PAIRS


def in_words(day: datetime.date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def date_pairs(n: int = N_PAIRS, seed: int = 0) -> list[tuple[str, str]]:
    """n distinct (ISO date, date in words) pairs, in a seeded random order."""
    span = (LAST - FIRST).days + 1
    days = random.Random(seed).sample(range(span), n)
    return [(d.isoformat(), in_words(d)) for d in (FIRST + datetime.timedelta(days=k) for k in days)]


def exact_match(outputs: list[str], targets: list[str]) -> float:
    """The share of outputs equal to their target, in percent."""
    return 100.0 * sum(o == t for o, t in zip(outputs, targets)) / max(len(targets), 1)
