"""Runs to serve, and uvicorn serving them: in the foreground (`tinygpt serve`) or in a thread (tests, benchmarks)."""

from __future__ import annotations

import ctypes
import socket
import threading
from pathlib import Path

from ..core.errors import TinyGPTError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def steady_malloc() -> bool:
    """Set glibc's malloc so that a long-running server's memory stays flat; call it before the
    threads start. False where the C library has no mallopt (not glibc: macOS, musl): nothing changes.

    A server's tensors change size every step (the batch and the longest row do), and by default
    glibc gives each allocating thread an arena of its own and raises its mmap threshold each time a
    large block is freed, so later large blocks come from the arenas' heaps, which fragment and never
    shrink. Here every thread shares one arena and every block from 128 KiB up is mapped for itself
    and returned when freed. benchmarks/serve_memory.py, 64 clients for 90 s at two threads: the
    defaults grew the server 9 MB in steps and one arena alone 17 MB; both settings kept it flat, at
    the same tokens/s (benchmarks/README.md, "Serving"). The same as MALLOC_ARENA_MAX=1
    MALLOC_MMAP_THRESHOLD_=131072 in the environment.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's malloc.h
    return mallopt(M_ARENA_MAX, 1) == 1 and mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1


def load_runs(paths, device: str = "auto", checkpoint: str = "best", quantize: str | None = None) -> dict:
    """{name: Run} for these run directories; a run's name is its directory's name. An encoder or an
    encoder-decoder is served for the playground's Inside mode (/inside) only: it writes no text."""
    from ..app.run import load

    runs = {}
    for path in paths:
        name = Path(path).resolve().name
        if name in runs:
            raise TinyGPTError(f"two runs are named {name!r} (the model name is the run directory's name); "
                               "rename one of the directories")
        run = load(path, device=device, checkpoint=checkpoint, quantize=quantize)
        if run.model_config.arch == "reward":  # scores texts: nothing to write, nothing to look inside
            run.require_text_model("be served")
        runs[name] = run
    return runs


class Server:
    """uvicorn serving `app` on host:port (port 0: a free one, chosen when the socket is bound)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 8000):
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
        # that say they are TCP. With it on, a response written in two parts (headers, then body) waited
        # for the client's delayed ACK: 40 ms on every request (a /tokenize took 45 ms instead of 1).
        self.socket = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.socket.bind((host, port))
        except OSError as e:
            raise TinyGPTError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port") from None
        self.socket.listen(2048)  # connections wait in the backlog until uvicorn takes them
        self.host, self.port = host, self.socket.getsockname()[1]
        # A stream still open at Ctrl-C gets a second to end; then the server stops anyway.
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=1)
        self.uvicorn = uvicorn.Server(config)
        self.thread = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def run(self):
        """Serve until Ctrl-C (uvicorn's signal handlers stop it cleanly)."""
        self.uvicorn.run(sockets=[self.socket])

    def start(self) -> "Server":
        """Serve from a thread; returns once the server answers."""
        self.thread = threading.Thread(target=self.uvicorn.run, kwargs=dict(sockets=[self.socket]), daemon=True)
        self.thread.start()
        while not self.uvicorn.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server thread ended before it started")
            self.thread.join(0.01)
        return self

    def stop(self):
        self.uvicorn.should_exit = True
        if self.thread is not None:
            self.thread.join()
        self.socket.close()
