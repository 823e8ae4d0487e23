"""Text read a piece at a time, for sources too big to hold in memory (`tinygpt prepare`).

    for piece in stream_text("big.txt"): ...                         # a file, 16 MB at a time
    for piece in stream_text("docs.jsonl", text_field="text"): ...   # documents, joined by blank lines
    for piece in stream_text("hf:roneneldan/TinyStories"): ...       # a Hub dataset, streamed by `datasets`
    for block in line_blocks(stream_text("big.txt")): ...            # pieces cut where a tokenizer may cut

Joined, the pieces of a file, a folder of .txt files (one file at a time) or a built-in name are
exactly the text `load_corpus` reads. A table of documents (.jsonl, .json, .parquet, .csv or .arrow files, a folder of
them, or hf:NAME) becomes its `text_field` column, one document after another with `separator`
between them. Tables are read by Hugging Face `datasets` in streaming mode, so a dataset is never
downloaded or loaded whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..core.errors import TinyGPTError
from ..core.hub import hub_name, one_line
from ..tokenizers.huggingface import cuts_cleanly
from .corpus import load_corpus, read_text_file, text_files

TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".arrow": "arrow"}
PIECE_CHARS = 1 << 24  # 16M characters a read: ~64 MB of Python string at most


def stream_text(spec: str, text_field: str = "text", split: str = "train", separator: str = "\n\n",
                piece_chars: int = PIECE_CHARS) -> Iterator[str]:
    """The text named by `spec`, in pieces of about `piece_chars` characters (cut anywhere)."""
    if (name := hub_name(spec)) is not None:
        yield from _documents(_open_table(name, None, split, spec), text_field, separator, spec)
        return
    path = Path(spec)
    if spec in ("rhyme", "shakespeare"):
        yield load_corpus(spec)
    elif path.is_dir():
        tables = sorted(p for p in path.rglob("*") if p.suffix in TABLE_SUFFIXES and p.is_file())
        if tables and not any(path.rglob("*.txt")):
            builder = TABLE_SUFFIXES[tables[0].suffix]
            yield from _documents(_open_table(builder, [str(p) for p in tables], split, spec), text_field, separator,
                                  spec)
        else:  # read_text_folder's text, one file at a time
            for k, file in enumerate(text_files(path)):
                yield ("\n\n" if k else "") + read_text_file(file).strip("\n")
            yield "\n"
    elif path.suffix in TABLE_SUFFIXES and path.is_file():
        yield from _documents(_open_table(TABLE_SUFFIXES[path.suffix], [str(path)], split, spec), text_field,
                              separator, spec)
    else:
        yield from _file_pieces(path, piece_chars)


def _file_pieces(path: Path, piece_chars: int) -> Iterator[str]:
    if not path.is_file() or path.stat().st_size == 0:
        read_text_file(path)  # the one-line reason: missing, a folder, empty
    offset, seen_text = 0, False
    with path.open("rb") as f:
        decoder = _utf8_decoder()
        while raw := f.read(piece_chars):
            try:
                piece = decoder.decode(raw)
            except UnicodeDecodeError as e:
                raise TinyGPTError(f"data file {path} is not valid UTF-8 (bad byte at offset {offset + e.start}); "
                                   "convert it, e.g. iconv -f latin1 -t utf-8") from None
            if "\x00" in piece:
                raise TinyGPTError(f"data file {path} looks binary (it contains NUL bytes); pass a UTF-8 text file")
            offset += len(raw)
            seen_text = seen_text or bool(piece.strip())
            yield piece
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise TinyGPTError(f"data file {path} is not valid UTF-8 (it ends inside a character); convert it, "
                               "e.g. iconv -f latin1 -t utf-8") from None
        if tail:
            yield tail
    if not seen_text:
        raise TinyGPTError(f"data file {path} is empty; it needs some text")


def _utf8_decoder():
    import codecs

    return codecs.getincrementaldecoder("utf-8")("strict")  # a character cut between reads waits for its end


def _open_table(name: str, data_files: list[str] | None, split: str, spec: str):
    """A streamed `datasets` table: a builder ('json', 'parquet', ...) over local files, or a Hub name
    ('user/dataset', or 'user/dataset:config')."""
    try:
        from datasets import load_dataset
    except ImportError:
        raise TinyGPTError("reading tables of documents needs Hugging Face datasets: pip install 'tinygpt[data]' "
                           "(or pip install datasets)") from None
    config = None
    if data_files is None and ":" in name and not Path(name).exists():
        name, config = name.rsplit(":", 1)
    try:
        return load_dataset(name, config, data_files=data_files, split=split, streaming=True)
    except Exception as e:  # no network, an unknown name or split, a damaged file...
        raise TinyGPTError(f"cannot read the dataset {spec} ({type(e).__name__}: {one_line(e)}); check the name, "
                           "the --split and the connection") from None


def _documents(table, text_field: str, separator: str, spec: str) -> Iterator[str]:
    """The `text_field` of every row, with `separator` before every document but the first."""
    count = 0
    try:
        for row in table:
            if text_field not in row:
                raise TinyGPTError(f"{spec} has no column {text_field!r} (its columns: {', '.join(row)}); name the "
                                   "one that holds the text with --text-field")
            text = row[text_field]
            if not isinstance(text, str):
                raise TinyGPTError(f"{spec}: row {count + 1}'s {text_field!r} is {type(text).__name__}, not text")
            yield text if count == 0 else separator + text
            count += 1
    except TinyGPTError:
        raise
    except Exception as e:  # a malformed line of JSON, a truncated parquet file...
        raise TinyGPTError(f"cannot read {spec} after {count:,} documents ({type(e).__name__}: "
                           f"{one_line(e)})") from None
    if count == 0:
        raise TinyGPTError(f"{spec} has no documents")


def line_blocks(pieces, size: int = PIECE_CHARS) -> Iterator[str]:
    """The text of `pieces` again, in blocks of at least `size` characters (but the last), each cut just
    after a line break that `cuts_cleanly`: encoded block by block, the text gives the ids of one whole
    encode (and a word or sentence-end marker never straddles two blocks). Text with no such line break
    for 4 * `size` characters is cut where a piece ends."""
    buffer = ""
    for piece in pieces:
        buffer += piece
        if len(buffer) < size:
            continue
        cut = _last_line_start(buffer)
        if cut is None and len(buffer) < 4 * size:
            continue
        cut = cut or len(buffer)
        yield buffer[:cut]
        buffer = buffer[cut:]
    if buffer:
        yield buffer


def _last_line_start(text: str) -> int | None:
    """Just after the last line break of `text` that cuts cleanly, or None."""
    i = text.rfind("\n")
    while i > 0 and not cuts_cleanly(text, i):
        i = text.rfind("\n", 0, i)
    return i + 1 if i > 0 else None
