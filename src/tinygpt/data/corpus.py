"""Finding and reading the text to train on.

A corpus is named by a path (a file, or a folder whose .txt files are joined) or by one of two
built-in names:
- `rhyme`: the 16-sentence "Mary had a little lamb" corpus shipped inside the package;
- `shakespeare`: tiny Shakespeare, looked up in $TINYGPT_DATA_DIR, then the user's cache
  directory, and otherwise downloaded once from its public home (and checked by sha256).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
from importlib import resources
from pathlib import Path

from ..core.errors import TinyGPTError

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
SHAKESPEARE_FILE = "tinyshakespeare.txt"
# What the file with that sha256 holds, for counting a model's parameters without reading (or fetching) it.
SHAKESPEARE_CHARACTERS, SHAKESPEARE_CHAR_VOCAB = 1_115_394, 65


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tinygpt"


def rhyme_text() -> str:
    """The nursery-rhyme corpus, one sentence per line."""
    return resources.files("tinygpt").joinpath("resources/rhyme.txt").read_text(encoding="utf-8")


def shakespeare_path(download: bool = True) -> Path:
    """Where tiny Shakespeare is on this machine, downloading it to the cache if allowed and needed."""
    candidates = []
    if os.environ.get("TINYGPT_DATA_DIR"):
        candidates.append(Path(os.environ["TINYGPT_DATA_DIR"]) / SHAKESPEARE_FILE)
    cached = cache_dir() / SHAKESPEARE_FILE
    candidates.append(cached)
    for path in candidates:
        if path.is_file():
            return path
    where = f"put {SHAKESPEARE_FILE} in $TINYGPT_DATA_DIR or at {cached}"
    if not download:
        raise TinyGPTError(f"tiny Shakespeare not found; {where}")
    try:
        with urllib.request.urlopen(SHAKESPEARE_URL, timeout=30) as response:
            payload = response.read()
    except (OSError, http.client.HTTPException) as e:  # offline, refused, timed out, cut off mid-way
        raise TinyGPTError(f"tiny Shakespeare not found and could not be downloaded ({e}); {where}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != SHAKESPEARE_SHA256:
        raise TinyGPTError(f"downloaded tiny Shakespeare has sha256 {digest}, expected {SHAKESPEARE_SHA256}; {where}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".part")
    tmp.write_bytes(payload)
    os.replace(tmp, cached)
    return cached


def read_text_file(path: str | Path, what: str = "data file") -> str:
    """Read a UTF-8 text (a training text, or `what` else), explaining every way it can be unusable."""
    path = Path(path)
    if not path.exists():
        names = ", 'rhyme' or 'shakespeare'" if what == "data file" else ""
        raise TinyGPTError(f"{what} {path} does not exist; pass a UTF-8 text file{names}")
    if path.is_dir():
        raise TinyGPTError(f"{path} is a directory; pass a UTF-8 text file")
    raw = path.read_bytes()
    if not raw.strip():
        raise TinyGPTError(f"{what} {path} is empty; it needs some text")
    if b"\x00" in raw:
        raise TinyGPTError(f"{what} {path} looks binary (it contains NUL bytes); pass a UTF-8 text file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TinyGPTError(
            f"{what} {path} is not valid UTF-8 (bad byte at offset {e.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8") from None


def load_corpus(spec: str) -> str:
    """The text named by `spec`: 'rhyme', 'shakespeare', a file, or a folder of .txt files."""
    if spec == "rhyme":
        return rhyme_text()
    if spec == "shakespeare":
        return read_text_file(shakespeare_path())
    if Path(spec).is_dir():
        return read_text_folder(Path(spec))
    return read_text_file(spec)


def read_text_folder(folder: Path) -> str:
    """Every .txt file under `folder` (sorted by path, so the text is the same on every machine),
    joined by blank lines."""
    return "\n\n".join(read_text_file(p).strip("\n") for p in text_files(folder)) + "\n"


def text_files(folder: Path) -> list[Path]:
    """The .txt files under `folder`, sorted by path; at least one."""
    files = sorted(p for p in folder.rglob("*.txt") if p.is_file())
    if not files:
        raise TinyGPTError(f"{folder} is a folder with no .txt files; pass a UTF-8 text file or a folder of them")
    return files


def corpus_name(spec: str) -> str:
    """A short name for the text: the built-in name, or the file's (folder's) name without suffix."""
    return spec if spec in ("rhyme", "shakespeare") else Path(spec).resolve().stem


def fingerprint(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
