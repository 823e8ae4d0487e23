"""What a refusal must look like, for the tests of bad input: one line on stderr that starts with
`tinygpt: error:` and names the problem, the promised exit status, no traceback, and no saved file
changed (compare `checksums` before and after)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tinygpt.cli import main


def run_cli(capsys, *args):
    """`tinygpt ARGS` in this process: (exit status, stdout, stderr)."""
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code, err, *fragments, status=2):
    """The refusal is one line, with this exit status, naming every fragment; returns the line."""
    lines = err.strip().splitlines()
    assert code == status and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert lines[0].startswith("tinygpt: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def checksums(run: Path) -> dict[str, str]:
    """The saved files of a run (the lock's note is not one: it names whoever last wrote the run)."""
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file() and p.name != ".lock"}
