"""A run on disk: its directory (rundir.py: every path, and the one reader and writer of config.json)
and its files (checkpoint.py: safetensors with checksums, written atomically)."""

from .rundir import RunConfig, RunDir

__all__ = ["RunConfig", "RunDir"]
