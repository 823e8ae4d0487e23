"""The one exception type users see.

Anything wrong with what the user gave us (a file, a setting, a prompt) raises `TinyGPTError`
with a message that names the problem and how to fix it. The command line prints that message
as one line and exits non-zero; programming errors keep their traceback.
"""


class TinyGPTError(Exception):
    """A problem with the user's input, explained in one line."""
