"""Write docs/reference/cli.md, the command-line reference, from the `tinygpt` command's own argparse parsers.

    python docs/cli_reference.py            # (re)write docs/reference/cli.md
    python docs/cli_reference.py --check    # exit 1 if the page differs from what the parsers say now

Nothing on that page is written by hand: every command (nested ones such as `tinygpt demo assistant`
included) gets a section with its description, its usage line and each argument with its help text,
grouped as `--help` groups them. tests/test_docs_reference.py fails when the page is stale. As a module,
`render()` returns the page's text.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "cli.md"
COMMAND = "python docs/cli_reference.py"
USAGE_WIDTH = 100  # the usage lines are wrapped here, whatever the terminal's width

CODE_SPAN = re.compile(r"(`[^`]*`)")


def build_parser() -> argparse.ArgumentParser:
    try:
        from tinygpt.cli import build_parser
    except ImportError:  # run from a checkout that is not installed
        sys.path.insert(0, str(ROOT / "src"))
        from tinygpt.cli import build_parser
    return build_parser()


def commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every sub-parser under it, depth first, in the order they were added."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in unique(action.choices.values()):
                found += commands(sub)
    return found


def unique(parsers) -> list:
    """Sub-parsers once each (an alias maps a second name to the same parser)."""
    seen, out = set(), []
    for p in parsers:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return out


def anchor(prog: str) -> str:
    """The heading `## tinygpt demo assistant`'s anchor, the same on GitHub and on the site."""
    return re.sub(r"[^\w\- ]", "", prog.lower()).replace(" ", "-")


def escape(text: str) -> str:
    """Text for Markdown: code spans kept as they are; elsewhere `<mask>` and the like must not read as HTML,
    nor `*`, `[...]` or an underscore at a word's edge as emphasis or links."""
    parts = CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        s = parts[i].replace("\\", "\\\\").replace("&", "&amp;").replace("<", "&lt;")
        s = re.sub(r"([*\[\]])", r"\\\1", s)
        parts[i] = re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", s)
    return "".join(parts)


def one_line(text: str) -> str:
    return " ".join(text.split())


def formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    f = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    if hasattr(f, "_set_color"):  # Python 3.14+: never colour the page
        f._set_color(False)
    return f


def usage(parser: argparse.ArgumentParser) -> str:
    f = formatter(parser)
    f.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return f.format_help().strip()


def description(parser: argparse.ArgumentParser, fallback: str | None) -> list[str]:
    """The parser's description as paragraphs: one paragraph, as `--help` wraps it, unless the parser keeps its
    description's lines (RawDescriptionHelpFormatter): then its indented lines are shown as they are."""
    text = parser.description or fallback
    if not text:
        return []
    if not issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
        return [escape(one_line(text)), ""]
    out, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith((" ", "\t")):
            block.append(line.rstrip())
            continue
        if block:
            out += ["```text", *block, "```", ""]
            block = []
        if line.strip():
            out += [escape(one_line(line)), ""]
    return out


def invocation(action: argparse.Action, f: argparse.HelpFormatter) -> str:
    """`--out DIR`, `-o, --out FILE`, `--compile, --no-compile`, `RUN [RUN ...]`: each spelling once, then what
    it takes."""
    if not action.option_strings:
        return f._format_args(action, action.dest)
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return names
    return f"{names} {f._format_args(action, action.dest.upper())}"


def shown_default(action: argparse.Action) -> str | None:
    """The default, where the help text does not already say it and there is one worth saying."""
    default = action.default
    if default is None or default is argparse.SUPPRESS or default is False or default in ("", []):
        return None
    if "default" in (action.help or ""):
        return None
    return str(default)


def describe(action: argparse.Action, f: argparse.HelpFormatter) -> str:
    """The help text as `--help` shows it, then in its style what `--help` shows only in the usage line or not at
    all: (required), the choices a metavar hides, the default."""
    text = escape(one_line(f._expand_help(action))) if action.help else ""
    extras = []
    if action.required and action.option_strings:
        extras.append("required")
    if action.choices is not None and action.metavar is not None:
        names = [str(c) for c in action.choices]
        if not all(n in (action.help or "") for n in names):
            extras.append("one of: " + escape(", ".join(names)))
    default = shown_default(action)
    if default is not None:
        extras.append(f"default: {escape(default)}")
    return " ".join([text] * bool(text) + [f"({e})" for e in extras])


def sub_commands(action: argparse._SubParsersAction) -> list[str]:
    helps = {a.dest: a.help for a in action._choices_actions}
    lines = []
    for name, sub in action.choices.items():
        if sub.prog.split()[-1] != name:
            continue  # an alias
        text = f": {escape(one_line(helps[name]))}" if helps.get(name) else ""
        lines.append(f"- [`{sub.prog}`](#{anchor(sub.prog)}){text}")
    return lines


def section(parser: argparse.ArgumentParser, fallback: str | None) -> list[str]:
    f = formatter(parser)
    out = [f"## {parser.prog}", ""]
    out += description(parser, fallback)
    out += ["```text", usage(parser), "```", ""]
    subs = []
    for group in parser._action_groups:
        lines = []
        for action in group._group_actions:
            if isinstance(action, argparse._HelpAction) or action.help is argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                subs.append(action)
                continue
            text = describe(action, f)
            lines.append(f"- `{invocation(action, f)}`" + (f": {text}" if text else ""))
        if lines:
            out += [f"**{escape(group.title)}**", ""]
            if group.description:
                out += [escape(one_line(group.description)), ""]
            out += lines + [""]
    for action in subs:
        out += ["**commands**", ""] + sub_commands(action) + [""]
    return out


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The Markdown of docs/reference/cli.md: a section per command of `parser` (the tinygpt command's)."""
    if parser is None:
        parser = build_parser()
    helps = {}  # a sub-parser's one-line help, shown where it has no description
    for p in commands(parser):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for a in action._choices_actions:
                    helps[id(action.choices[a.dest])] = a.help
    out = [
        "# Command-line reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the command's argparse parsers: edit the help texts in "
        "src/tinygpt/cli/, then run it again. -->",
        "",
        f"This page is generated from the `{parser.prog}` command's own parsers by `{COMMAND}`, so it says "
        f"what `{parser.prog} COMMAND --help` says. Every command also takes `-h, --help`.",
        "",
    ]
    for p in commands(parser):
        out += section(p, helps.get(id(p)))
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write docs/reference/cli.md from the tinygpt command's parsers.")
    ap.add_argument("--check", action="store_true", help="only check that the page is up to date (exit 1 if not)")
    args = ap.parse_args(argv)
    text = render()
    current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else None
    if args.check:
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is out of date: run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{PAGE.relative_to(ROOT)} is up to date")
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)} ({text.count(chr(10) + '## ')} commands)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
