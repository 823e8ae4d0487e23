"""The documentation's generated and shared parts: the CLI reference says what the parsers say now, and the
version the command prints is the newest released one of CHANGELOG.md."""

import argparse
import importlib.util
import re
from pathlib import Path

import pytest

import tinygpt
from tinygpt.cli import build_parser, main
from tinygpt.core.version import __version__

ROOT = Path(__file__).resolve().parents[1]
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.MULTILINE)


def cli_reference():
    """docs/cli_reference.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "docs" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def every_command(parser: argparse.ArgumentParser) -> list[str]:
    """`tinygpt`, `tinygpt train`, ..., `tinygpt demo assistant`: every parser's prog, nested ones included."""
    progs = [parser.prog]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                progs += every_command(sub)
    return progs


def test_the_cli_reference_is_what_the_parsers_say_now():
    page = ROOT / "docs" / "reference" / "cli.md"
    generated = cli_reference().render()
    assert page.is_file(), "docs/reference/cli.md is missing: run `python docs/cli_reference.py`"
    assert page.read_text(encoding="utf-8") == generated, (
        "docs/reference/cli.md differs from what the parsers say now (a flag or help text changed): "
        "run `python docs/cli_reference.py` and commit the page")


def test_the_cli_reference_has_a_section_for_every_command():
    text = cli_reference().render()
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    commands = every_command(build_parser())
    assert "tinygpt demo assistant" in commands and "tinygpt train" in commands
    assert sorted(headings) == sorted(set(commands))
    # ... with its usage line and each of its flags.
    train = text.split("\n## tinygpt train\n")[1].split("\n## ")[0]
    assert "usage: tinygpt train" in train
    for flag in ("--preset", "--n-embd", "--max-iters", "--resume", "--overwrite"):
        assert f"- `{flag} " in train or f"- `{flag}`" in train, flag
    assert "**model settings**" in train and "**training settings**" in train


def test_the_reference_shows_help_texts_as_markdown_not_html():
    module = cli_reference()
    assert module.escape("each <mask> in [0, 1) of `a <b>`") == r"each &lt;mask> in \[0, 1) of `a <b>`"
    parser = argparse.ArgumentParser(prog="demo", description="Does a thing.")
    parser.add_argument("--k", type=int, default=3, help="how many")
    parser.add_argument("--mode", metavar="MODE", choices=("a", "b"), required=True, help="a mode")
    text = module.render(parser)
    assert "## demo\n\nDoes a thing.\n" in text
    assert "- `--k K`: how many (default: 3)" in text
    assert "- `--mode MODE`: a mode (required) (one of: a, b)" in text


def newest_release() -> tuple[str, str]:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in text
    releases = RELEASE.findall(text)
    assert releases, "CHANGELOG.md has no released section (## [X.Y.Z] - YYYY-MM-DD)"
    return releases[0]


def test_the_version_is_the_newest_release_of_the_changelog(capsys):
    version, _ = newest_release()
    assert version == "0.1.0"
    assert __version__ == version and tinygpt.__version__ == version
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "(.+)"$', pyproject, re.MULTILINE).group(1) == version
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"tinygpt {version}"


def test_the_site_shows_the_changelog_without_a_second_copy():
    page = (ROOT / "docs" / "changelog.md").read_text(encoding="utf-8")
    assert '<!--% include-markdown "../CHANGELOG.md" %-->' in page
    assert "## [" not in page  # the entries live in CHANGELOG.md only


def console_blocks(text: str) -> list[str]:
    return re.findall(r"```console\n(.*?)```", text, re.S)


def test_every_output_the_readme_shows_is_a_docs_example_that_runs():
    """The README is not run by the docs' tests; each output it shows must be a block of a docs page, which is."""
    pages = "".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md"))
    shown = console_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert shown, "the README shows no output: this test guards nothing"
    assert [b for b in shown if b not in console_blocks(pages)] == []
