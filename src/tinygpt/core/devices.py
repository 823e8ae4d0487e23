"""Choosing where to compute: device, precision and CPU threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

import torch

from .errors import TinyGPTError


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu. A named device that is not there is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TinyGPTError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TinyGPTError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TinyGPTError("--device mps was asked for but is not available here; use --device cpu")
    return device


def autocast_for(device: torch.device, dtype: str):
    """A context-manager factory for the compute precision ('auto' = bf16 on capable GPUs)."""
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"
    if dtype == "float32":
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def step_work(model: torch.nn.Module, tokens: int) -> float:
    """The matmul FLOPs of one optimizer step over `tokens` tokens, forward and backward: 6 per weight of
    every linear layer (the head included, the embedding lookups not) per token, plus attention's scores
    and weighted sums, 12 x n_layer x n_embd x block_size per token (PaLM's and nanoGPT's count)."""
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    return tokens * (6.0 * weights + 12.0 * cfg.n_layer * cfg.n_embd * cfg.block_size)


# Below this much work per optimizer step a second thread does not pay on this project's 2-core machine even
# when nothing else runs (the rhyme model, 0.015 GFLOP: 0.77x; lecture-small, 0.67: 1.00x), and on a busy
# one it makes every step wait for a core (rhyme: 3.8x slower); from speedrun-cpu's 3.1 GFLOP up it makes
# a quiet step 1.17-1.63x faster (benchmarks/threads.py, benchmarks/README.md "Threads").
ONE_THREAD_BELOW = 2.0e9


def choose_threads(threads: int, world_size: int = 1, work: float | None = None) -> int:
    """The CPU thread count of a run: `threads`, or (0) by the rule: one thread for a step of less than
    ONE_THREAD_BELOW FLOPs of `work` (step_work), else the cores shared among this node's processes.

    The choice depends on the model and the machine, never on how busy it is at the moment. The number
    of threads decides how PyTorch splits its sums (a LayerNorm's mean, a bias's gradient), so a
    different count gives different last digits, and within a few hundred steps different losses.
    Earlier versions probed the cores and dropped to one thread when other work kept them busy; that
    made the same command give different numbers under load. The rule's threshold and what each choice
    costs quiet and busy are measured in benchmarks/threads.py (benchmarks/README.md, "Threads").
    """
    if threads > 0:
        return threads
    if work is not None and work < ONE_THREAD_BELOW:
        return 1
    return max(1, cpu_cores() // world_size)


def keep_freed_memory() -> None:
    """Ask the C allocator (glibc) to keep freed memory for reuse instead of giving it back to the OS.

    A training step frees and re-allocates the same activation-sized buffers every time; when
    glibc returns them to the OS, the next step pays for fresh pages (about 1,300 page faults a
    step, 5-10% of the CPU time on nanoGPT's CPU shape). Peak memory stays the same.
    Linux with glibc only; elsewhere it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        libc.mallopt(m_mmap_threshold, 1 << 30)  # serve blocks up to 1 GiB from the reusable heap
        libc.mallopt(m_trim_threshold, 1 << 30)  # and do not hand freed heap back to the OS
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        pass


def map_large_blocks() -> None:
    """Ask glibc to map every block from 128 KiB up for itself, and so return it when it is freed.

    The opposite of keep_freed_memory, for --parallel fsdp on a CPU: each block's forward gathers its
    whole weights into fresh buffers and frees them after. Kept in the heap, those freed buffers held
    the process near the size of whole copies (benchmarks/fsdp_memory.py, 85M parameters on 2
    processes: 2,479 MB for the process that does not write, against DDP's 2,405 MB); mapped and
    returned, it peaks at 1,379 MB. The fixed threshold also stops glibc from raising it each time a
    big block is freed.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, from glibc's malloc.h
    except (OSError, AttributeError):
        pass


def process_start() -> float:
    """When this command started, on time.perf_counter()'s clock, so that a time budget covers it all.

    The process's start time on Linux (elsewhere: now). A process older than 10 s is not a command
    that just started (a notebook or a test calling the command line), so its clock starts now.
    """
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: seconds after boot
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        age = 0.0
    return time.perf_counter() - (age if 0.0 < age < 10.0 else 0.0)
