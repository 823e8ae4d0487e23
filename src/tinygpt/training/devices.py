"""Choosing where to compute: device, precision and CPU threads."""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

import torch

from ..errors import TinyGPTError


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


def choose_threads(threads: int, world_size: int = 1) -> int:
    """The CPU thread count of a run: `threads`, or (0) the cores shared among the processes.

    The choice depends on the machine, never on how busy it is at the moment. The number of
    threads decides how PyTorch splits its sums (a LayerNorm's mean, a bias's gradient), so a
    different count gives different last digits, and within a few hundred steps different losses.
    Earlier versions probed the cores and dropped to one thread when other work kept them busy;
    that made the same command give different numbers under load. What the fixed choice costs on
    a busy machine is measured in benchmarks/README.md ("Threads under load"); `--threads 1` is
    the answer there.
    """
    return threads if threads > 0 else max(1, cpu_cores() // world_size)


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
