"""`tinygpt serve`: runs behind an OpenAI-compatible API, with the playground page at /."""

from __future__ import annotations

import sys

from ..core.errors import TinyGPTError
from .args import add_context_shift, add_loading, add_quantize, context, port_number, thread_count


def add_parsers(sub):
    p = sub.add_parser("serve", help="serve runs over OpenAI's API, with a playground page",
                       description="Serve runs to any OpenAI client (/v1/completions, /v1/chat/completions for "
                       "runs with a chat template, /v1/models) and to a browser (the playground at /). Concurrent "
                       "requests decode together in one batch. The model name is the run directory's name.")
    p.add_argument("runs", metavar="RUN", nargs="+", help="run directories to serve")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                   "only; 0.0.0.0 opens it to the network, then give --api-key)")
    p.add_argument("--port", type=port_number, default=8000, help="port (default: 8000; 0 = any free port)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on every /v1 request")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="let pages from this origin call the API (repeatable; default: none)")
    p.add_argument("--max-batch", type=int, default=64, help="most rows decoding at once (default: 64)")
    p.add_argument("--max-waiting", type=int, default=256,
                   help="most requests waiting for a place; past it the answer is 503 (default: 256)")
    p.add_argument("--max-tokens", type=int, default=1024, help="most tokens one request may ask for "
                   "(default: 1024)")
    p.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads for the model (default: PyTorch's; 1 is faster on a busy machine)")
    p.add_argument("--watch", action="store_true",
                   help="follow runs that tinygpt train is still writing: serve their latest checkpoint, load each "
                   "new one as it is saved, and show the loss curves and the newest weights in the playground's "
                   "Inside mode (waits for a run's first checkpoint; one thread unless --threads, so the "
                   "training keeps the cores)")
    add_context_shift(p)
    p.add_argument("--quiet", action="store_true", help="no log line per request")
    add_loading(p)
    add_quantize(p)
    p.set_defaults(func=serve)


def serve(args) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise TinyGPTError("tinygpt serve needs FastAPI and uvicorn: pip install 'tinygpt[serve]'") from None
    import torch

    from ..serve.app import create_app
    from ..serve.engine import Engine
    from ..serve.server import LOOPBACK, Server, load_runs, steady_malloc

    if args.max_tokens < 1:
        raise TinyGPTError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    if args.watch and args.quantize != "none":
        raise TinyGPTError("--watch follows the weights as training writes them, and --quantize int8 would convert "
                           "every new checkpoint: use one or the other")
    steady_malloc()  # before the engine's and uvicorn's threads: a long-running server's memory stays flat
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif args.watch:  # the training being watched needs the cores more: a look inside is small work
        torch.set_num_threads(1)
    if args.watch:
        wait_for_checkpoints(args.runs)
    runs = load_runs(args.runs, device=args.device, checkpoint="latest" if args.watch else args.checkpoint,
                     quantize=args.quantize)
    engine = Engine(runs, max_batch=args.max_batch, max_waiting=args.max_waiting, context=context(args))
    local = args.host in LOOPBACK
    watchers = {}
    if args.watch:
        from ..serve.watch import Watcher

        engine.start()  # a watcher swaps weights on the engine's thread
        watchers = {name: Watcher(engine, name, path).start() for name, path in zip(runs, args.runs)}
    app = create_app(engine, api_key=args.api_key, cors=args.cors, max_tokens=args.max_tokens, quiet=args.quiet,
                     local_only=local, watchers=watchers)
    server = Server(app, args.host, args.port)
    warning = exposure_warning(args.host, args.api_key)
    if warning:
        print(f"tinygpt: warning: {warning}", file=sys.stderr)
    name = next(iter(runs))
    key = f" -H 'Authorization: Bearer {args.api_key}'" if args.api_key else ""
    print(f"serving {', '.join(runs)} at {server.url}/v1 (playground: {server.url}/); Ctrl-C stops")
    print(f"try: curl {server.url}/v1/completions -H 'Content-Type: application/json'{key} "
          f"-d '{{\"model\": \"{name}\", \"prompt\": \"\", \"max_tokens\": 20}}'", flush=True)
    if watchers:
        print(f"watching {', '.join(runs)}: each new checkpoint is loaded as training saves it (the Inside mode "
              f"shows it: {server.url}/#inside)", flush=True)
    else:
        engine.start()
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn has shut down cleanly, then passes Ctrl-C on
        pass
    finally:
        for watcher in watchers.values():
            watcher.stop()
        engine.stop()
    print("tinygpt: server stopped", file=sys.stderr)
    return 0


def wait_for_checkpoints(paths, every: float = 0.5):
    """--watch may start before training has saved anything: wait (Ctrl-C stops) until every run has its
    settings and a first checkpoint, saying so once."""
    import time

    from ..store.rundir import RunDir

    waiting = [RunDir(p) for p in paths]
    for run in waiting:
        if run.path.exists() and not run.path.is_dir():  # a typo would otherwise wait for ever
            raise TinyGPTError(f"{run.path} is a file, not a run directory; give the --out of a tinygpt train")
    said = False
    while waiting := [r for r in waiting if not (r.config_path.is_file() and r.checkpoint_path("latest").is_file())]:
        if not said:
            print(f"waiting for the first checkpoint of {', '.join(str(r) for r in waiting)} (start tinygpt train "
                  f"--out {waiting[0]} in another terminal)", flush=True)
            said = True
        time.sleep(every)


def exposure_warning(host: str, api_key: str | None) -> str | None:
    """What to tell someone who opens the server beyond this machine without a key (None otherwise)."""
    from ..serve.server import LOOPBACK

    if host in LOOPBACK or api_key is not None:
        return None
    return f"listening on {host} without --api-key: anyone who can reach this machine can use the models"
