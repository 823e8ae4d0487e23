"""Every example in these pages that shows output is run, and what it prints compared with what is shown.

Shell examples are ```console blocks: `$ command` lines (a trailing backslash continues one), each
followed by the output it shows. They run in order in one scratch folder per page (so a page's
second example finds the run its first one made), with TINYGPT_DATA_DIR as the suite sets it. The
rule for comparing (`matches`):

- the printed lines must be the shown lines, in order, after trailing spaces are cut;
- a shown line `...` stands for any number of printed lines (abridged output);
- a duration (a number followed by `s`: `6.3s`, `20.1 s`) matches any duration;
- a block after `<!-- example: loose -->` is a run whose numbers depend on the machine's speed (a time
  budget): there every number matches any number, and only the words must be the same.

Tokens, messages and losses are compared exactly: the examples fix their seeds, and the thread count
depends on the model only. Comments that steer a block, in the HTML comment just before it (invisible
on GitHub and on the site):

- `<!-- example: slow -->`: it takes more than about 10 s; it runs only with TINYGPT_DOCS_SLOW=1
  (`TINYGPT_DOCS_SLOW=1 python -m pytest docs`), so that the suite stays fast;
- `<!-- example: before COMMAND -->`: run COMMAND first (unless an earlier block of the page ran it),
  for a page whose example starts from a run another page makes (or from files under docs/examples,
  which COMMAND finds at $TINYGPT_DOCS/examples);
- `<!-- example: skip REASON -->`: not run here, and why (a GPU, the Hub, a server that runs until
  Ctrl-C); the tests named in the reason check the same thing another way.

Python examples are ```python blocks written as a session (`>>>` lines and their output), run by
sybil's doctest parser in the same scratch folder.
"""

from __future__ import annotations

import doctest
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sybil import Region, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

DURATION = re.compile(r"\d+(?:\.\d+)?(?= ?s\b)")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")
COMMENT = re.compile(r"<!-- example: (slow|loose|before .+?|skip .+?) -->")
TIMEOUT_S = 1800
DOCS = Path(__file__).resolve().parent
# tqdm's lines: "train:  40%|...", "train: 60step [...", "  0%|...| 0/6 [00:00<?, ?it/s]",
# "Generating test split: 6 examples [00:00, 1311 examples/s]"
PROGRESS_BAR = re.compile(r"^\S+: +(\d+%\||\d+step \[)|\[\d+:\d\d(:\d\d)?<|\d+ examples \[\d+:\d\d")


def normalise(line: str, loose: bool) -> str:
    line = line.rstrip()
    line = DURATION.sub("N", line)
    return NUMBER.sub("N", line) if loose else line


def matches(printed: list[str], shown: list[str], loose: bool = False) -> bool:
    """Whether printed lines match the shown ones by the rule above (`...` = any lines)."""
    printed = [normalise(p, loose) for p in printed]
    shown = [normalise(s, loose) for s in shown]

    def match(i: int, j: int) -> bool:
        if j == len(shown):
            return i == len(printed)
        if shown[j] == "...":
            return any(match(k, j + 1) for k in range(i, len(printed) + 1))
        return i < len(printed) and printed[i] == shown[j] and match(i + 1, j + 1)

    return match(0, 0)


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """A console block's (command, shown output) pairs."""
    pairs, command = [], None
    lines = text.rstrip("\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            pairs.append((command, []))
        elif pairs:
            pairs[-1][1].append(line)
        i += 1
    return pairs


def run(command: str, where: Path) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # this Python's tinygpt
    # TINYGPT_DOCS: this folder, for a page whose example starts from files under docs/examples.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120", "PATH": path, "TINYGPT_DOCS": str(DOCS)}
    done = subprocess.run(command, shell=True, cwd=where, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S, executable="/bin/bash")
    # What a user sees in a terminal: the output and the error stream, without the progress bar's lines.
    err = [line for line in (part.split("\r")[-1] for part in done.stderr.splitlines())
           if line.strip() and not PROGRESS_BAR.search(line)]
    return "\n".join([*done.stdout.splitlines(), *err])


def steered(example) -> set[str]:
    """The flags the comment before this block set; a slow block is skipped unless asked for."""
    flags = example.namespace.pop("next", set())
    for flag in flags:
        if flag.startswith("skip "):
            pytest.skip(flag[len("skip "):])
    if "slow" in flags and not os.environ.get("TINYGPT_DOCS_SLOW"):
        pytest.skip("slow example: TINYGPT_DOCS_SLOW=1 python -m pytest docs runs it")
    return flags


def run_before(ns: dict):
    """The commands a `before` comment asked for, each once a page."""
    for command in ns.pop("before", []):
        if command not in ns["done"]:
            run(command, ns["workspace"])
            ns["done"].add(command)


def evaluate_console(example) -> str | None:
    ns = example.namespace
    flags = steered(example)
    run_before(ns)
    for command, shown in sessions(example.parsed):
        printed = run(command, ns["workspace"]).split("\n")
        ns["done"].add(command)
        if not matches(printed, shown, loose="loose" in flags):
            return (f"`{command}` printed:\n" + "\n".join(printed) + "\n\nthe page shows:\n" + "\n".join(shown))
    return None


class ExampleComments:
    """`<!-- example: ... -->` comments: each steers the next block of its page."""

    def __call__(self, document):
        for m in COMMENT.finditer(document.text):
            yield Region(m.start(), m.end(), m.group(1), self.evaluate)

    @staticmethod
    def evaluate(example):
        flag = example.parsed
        if flag.startswith("before "):
            example.namespace.setdefault("before", []).append(flag[len("before "):])
        else:
            example.namespace.setdefault("next", set()).add(flag)


class PythonExamples(PythonCodeBlockParser):
    """sybil's Python parser (doctest sessions; `...` in the output matches anything), each block steered
    by the comment before it (slow, before) as consoles are."""

    def __init__(self):
        super().__init__(doctest_optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)

    def __call__(self, document):
        # sybil makes one example of each `>>>` statement; a comment steers the whole block it precedes.
        blocks = [m.span() for m in re.finditer(r"```python\n.*?```", document.text, re.S)]
        for region in super().__call__(document):
            block = next(i for i, (start, end) in enumerate(blocks) if start <= region.start < end)
            yield Region(region.start, region.end, region.parsed, self.steer(region.evaluator, block), region.lexemes)

    @staticmethod
    def steer(evaluator, block: int):
        def evaluate(example):
            ns = example.namespace
            if ("skipped", block) in ns:
                pytest.skip(ns[("skipped", block)])
            if ("steered", block) not in ns:
                ns[("steered", block)] = True
                try:
                    steered(example)
                except pytest.skip.Exception as e:
                    ns[("skipped", block)] = str(e)
                    raise
                run_before(ns)
            return evaluator(example)

        return evaluate


def setup(namespace):
    folder = tempfile.TemporaryDirectory(prefix="tinygpt-docs-")
    namespace.update(folder=folder, workspace=Path(folder.name), done=set())
    namespace["_cwd"] = os.getcwd()
    os.chdir(folder.name)  # the Python examples' relative paths land in the page's folder too


def teardown(namespace):
    os.chdir(namespace["_cwd"])
    namespace["folder"].cleanup()


pytest_collect_file = Sybil(
    parsers=[ExampleComments(), CodeBlockParser("console", evaluate_console), PythonExamples()],
    patterns=["*.md", "guides/*.md", "reference/*.md"],
    setup=setup, teardown=teardown,
).pytest()
