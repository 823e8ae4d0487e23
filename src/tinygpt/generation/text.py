"""Tokens to text as they come: incremental decoding and stop strings, in time linear in the text.

Decoding works for any tokenizer that only has `decode(ids)`: a row keeps a short window of its
latest ids, and the text a new token adds is what decoding the window with it gives beyond what
decoding the window gave without it. The window starts with the prompt's last ids, so the first
token decodes in context (the word tokenizer's joining space, byte-level BPE's merged bytes).

A byte-level BPE can end a token halfway through a character; decoding then ends in U+FFFD, and
that ending is held back until a later token completes the character (or the text ends).

Stop strings are looked for only where new text can make one: in the new text and the few
characters before it that could begin one. Those characters are held back until they cannot.
"""

from __future__ import annotations

from collections.abc import Iterator

REPLACEMENT = "\ufffd"  # what decoding shows for bytes that do not (yet) form a character
CONTEXT = 8  # ids of the window kept after each trim: enough for any UTF-8 character's bytes


class TextStream:
    """One row's completion: `push(token)` returns the text that is now safe to show, `close()` the
    rest; the pieces join into the completion, cut before the first stop string."""

    def __init__(self, tokenizer, prompt_ids: list[int], stop=(), drop_lead: str = ""):
        self.decode = tokenizer.decode
        self.window = list(prompt_ids[-CONTEXT:])
        self.shown = len(self.decode(self.window))  # characters of decode(window) already passed on
        self.stop = list(stop)
        self.longest = max((len(s) for s in self.stop), default=0)
        self.held = ""  # the end of the text so far that may turn out to begin a stop string
        # Text to drop from the start of the completion: the word tokenizer joins words with a space,
        # which must not open a sample that starts from no prompt at all.
        self.lead = drop_lead
        self.stopped = False

    def push(self, token: int) -> str:
        """Take the row's next token; return the new text that can be shown now (maybe "")."""
        if self.stopped:
            return ""
        self.window.append(token)
        text = self.decode(self.window)
        complete = len(text.rstrip(REPLACEMENT))  # a half character waits for its other bytes
        new = text[self.shown : complete]
        self.shown = max(self.shown, complete)
        if len(self.window) > 2 * CONTEXT and complete == len(text):
            # Forget old ids; everything the shorter window decodes to has been passed on already.
            self.window = self.window[-CONTEXT:]
            self.shown = len(self.decode(self.window))
        return self._release(new, final=False)

    def close(self) -> str:
        """The rest of the text once the row has no more tokens (an unfinished character included)."""
        if self.stopped:
            return ""
        text = self.decode(self.window)
        rest = text[self.shown :]
        self.shown = len(text)
        return self._release(rest, final=True)

    def _release(self, new: str, final: bool) -> str:
        if self.lead and new:
            if new.startswith(self.lead):
                new = new[len(self.lead) :]
            self.lead = ""
        text = self.held + new  # a stop string can only begin here: earlier text was shown as safe
        found = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        if found:
            self.stopped, self.held = True, ""
            return text[: min(found)]
        keep = 0 if final else self._could_begin_stop(text)
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def _could_begin_stop(self, text: str) -> int:
        """Length of the longest ending of `text` that is the start of some stop string."""
        for n in range(min(self.longest - 1, len(text)), 0, -1):
            if any(s.startswith(text[-n:]) for s in self.stop):
                return n
        return 0


def stream_rows(decoder, streams: list[TextStream]) -> Iterator[tuple[int, str]]:
    """Run the decoder until every row is done, yielding (row, new text); a stop string ends its row.

    Rows may join between pieces: `decoder.add(row)` with `streams.append(its TextStream)`.
    """
    while not decoder.done:
        for row, token in decoder.step():
            stream = streams[row]
            piece = stream.push(token)
            if stream.stopped:
                decoder.finish(row)
            elif decoder.finished[row]:
                piece += stream.close()
            if piece:
                yield row, piece
