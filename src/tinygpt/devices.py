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


def set_threads(threads: int, world_size: int = 1, probe: bool = False) -> int:
    """Use `threads` CPU threads, or (0) the available cores shared among the processes.

    With `probe`, 0 also checks that those cores are really free. On a machine busy with other
    work, threads that wait for each other at the end of every operation can make a training step
    twenty times slower than one thread alone (measured: 4.1 s against 0.2 s a step at load 6 on 2
    cores), so a probe of about 10 ms (more on a busy machine) keeps one thread unless several are
    clearly faster. Work can start beside us at any time: the trainer probes again every few seconds.
    """
    if threads == 0:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = max(1, cores // world_size)
        if probe and threads > 1 and not _threads_pay(threads):
            threads = 1
    torch.set_num_threads(threads)
    return threads


def _threads_pay(threads: int) -> bool:
    """Whether `threads` threads run a slice of a small model's step at least 1.25x faster than one."""
    x, w1, w2 = torch.randn(768, 128), torch.randn(128, 512), torch.randn(512, 128)

    def seconds(n: int) -> float:
        torch.set_num_threads(n)
        t0 = time.perf_counter()
        torch.relu(x @ w1) @ w2 + x  # (768, 128): two matrix multiplies and element-wise work
        return time.perf_counter() - t0

    seconds(1), seconds(threads)  # warm-up: the thread pool starts
    one = sorted(seconds(1) for _ in range(3))[1]
    many = [seconds(threads)]
    if many[0] < 3 * one:  # a busy machine shows at once; otherwise look twice more
        many += [seconds(threads), seconds(threads)]
    # Asymmetric risk: one thread on free cores costs ~40%; many on busy cores can cost 20x.
    return 1.25 * sorted(many)[len(many) // 2] < one


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
