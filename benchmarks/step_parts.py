"""What the CPU training step's own kernels buy (issue 26): each against PyTorch's general path.

    python benchmarks/step_parts.py                      # the parts alone, then whole speedrun-cpu steps
    python benchmarks/step_parts.py --what attention     # causal attention: the fused kernel or two products
    python benchmarks/step_parts.py --what step --rounds 30 --json benchmarks/results/step_parts.json

Three places where a CPU training step of a small model spends more than its arithmetic needs:

- attention (model/attention.py, `causal_attention_products`): up to SHORT_WINDOW tokens, training on a
  CPU makes the whole (T, T) scores with two batched products, against `scaled_dot_product_attention`'s
  fused kernel, which walks the window in blocks;
- norms (model/layers.py, `rms_norm`): RMSNorm and QK-norm with a backward of their own, against
  autograd taking `F.rms_norm` apart;
- Newton-Schulz (training/optim.py, `newton_schulz`): Muon's iteration as two `baddbmm` calls that scale
  and add inside the product, against the same formula written with separate products, scalings and sums.

--what parts: each alone, forward and backward (Newton-Schulz: the iteration), at speedrun-cpu's shapes.
--what attention: the two attention paths from 16 to 256 tokens at speedrun-cpu's and the lecture's shapes,
  and at nanogpt-cpu's and the rhyme model's.
--what step: whole speedrun-cpu training steps at 16, 32 and 64 tokens, the general paths put back (by
  patching the three names above) against the code as it is, in one process.
Every comparison takes turns, round by round, so that a host whose speed moves slows both alike; the
figure is the median round. One thread in CPU time, and every core in wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def ns_general(g, steps: int = 5):
    """Muon's Newton-Schulz with separate products, scalings and sums (tinygpt's form before issue 26)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.float()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if transposed else x).to(g.dtype)


def rms_general(x, weight=None, eps=None):
    import torch.nn.functional as F

    return F.rms_norm(x, (x.size(-1),), weight, eps)


def sdpa_general(q, k, v, scale):
    import torch.nn.functional as F

    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)


def timed(fn, clock) -> float:
    t0 = clock()
    fn()
    return (clock() - t0) * 1000


def alternate(cases: dict, rounds: int, clock) -> dict:
    """{name: fn}: each run once a round, in turn (the order flips every round); median milliseconds."""
    times = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds + 2):
        for name in names if r % 2 == 0 else names[::-1]:
            ms = timed(cases[name], clock)
            if r >= 2:  # two warm-up rounds
                times[name].append(ms)
    return {name: statistics.median(t) for name, t in times.items()}


def settings():
    """(threads, clock, label): one thread in CPU time, then every core in wall time."""
    return [(1, time.process_time, "1 thread, CPU ms"), (os.cpu_count() or 1, time.perf_counter, "all cores, wall ms")]


def backward_of(fn, *shapes, seed: int = 0):
    """A closure: fn on fresh random tensors of `shapes` that need gradients, then backward from the output."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(s, generator=gen) for s in shapes]
    grad = torch.randn(fn(*tensors).shape, generator=gen)  # what flows back from the layers above

    def run():
        inputs = [t.clone().requires_grad_() for t in tensors]
        fn(*inputs).backward(grad)

    return run


def parts(rounds: int) -> list[dict]:
    import torch

    from tinygpt.model.attention import causal_attention_products
    from tinygpt.model.layers import rms_norm
    from tinygpt.training.optim import newton_schulz

    B, T, C, nh = 32, 64, 96, 2  # speedrun-cpu's batch, window, width and heads
    gen = torch.Generator().manual_seed(0)
    stacks = [torch.randn(s, generator=gen) for s in ((4, 288, 96), (2, 96, 96), (2, 96, 288))]  # its Muon stacks
    heads, scale = [(B, nh, T, C // nh)] * 3, (C // nh) ** -0.5
    cases = {
        "attention (32, 2, 64, 48)": (backward_of(lambda q, k, v: sdpa_general(q, k, v, scale), *heads),
                                      backward_of(lambda q, k, v: causal_attention_products(q, k, v, scale), *heads)),
        "RMSNorm (32, 64, 96)": (backward_of(lambda x, w: rms_general(x, w), (B, T, C), (C,)),
                                 backward_of(lambda x, w: rms_norm(x, w), (B, T, C), (C,))),
        "QK-norm (32, 2, 64, 48)": (backward_of(rms_general, (B, nh, T, C // nh)),
                                    backward_of(rms_norm, (B, nh, T, C // nh))),
        "Newton-Schulz, the 3 stacks": (lambda: [ns_general(s) for s in stacks],
                                        lambda: [newton_schulz(s) for s in stacks]),
    }
    rows = []
    for threads, clock, label in settings():
        torch.set_num_threads(threads)
        for name, (general, ours) in cases.items():
            ms = alternate({"general": general, "ours": ours}, rounds, clock)
            rows.append({"part": name, "threads": threads, "clock": label, **ms})
    return rows


def attention(rounds: int) -> list[dict]:
    import torch

    from tinygpt.model.attention import causal_attention_products

    rows = []
    for threads, clock, label in settings():
        torch.set_num_threads(threads)
        # speedrun-cpu's heads from 16 to 256 tokens; the lecture model's (half its batch); nanogpt-cpu's; the
        # rhyme model's (too little work for the products: PRODUCTS_MIN_WINDOW).
        shapes_of = [(32, 2, T, 48) for T in (16, 32, 64, 128, 256)] + [(16, 6, T, 64) for T in (64, 128, 256)]
        for B, nh, T, hs in shapes_of + [(12, 4, 64, 32), (16, 2, 6, 16)]:
            shapes = [(B, nh, T, hs)] * 3
            scale = hs ** -0.5
            ms = alternate({"general": backward_of(lambda q, k, v, s=scale: sdpa_general(q, k, v, s), *shapes),
                            "ours": backward_of(lambda q, k, v, s=scale: causal_attention_products(q, k, v, s),
                                                *shapes)}, rounds, clock)
            rows.append({"part": f"attention ({B}, {nh}, {T}, {hs})", "threads": threads, "clock": label, **ms})
    return rows


def steps(rounds: int) -> list[dict]:
    """Whole speedrun-cpu steps with the general paths put back (patched) against the code as it is."""
    import torch

    from tinygpt.config import build_configs
    from tinygpt.config.presets import load_preset
    from tinygpt.model import attention as attention_module
    from tinygpt.model import build_model, layers
    from tinygpt.training import optim

    model_cfg, train_cfg = build_configs(load_preset("speedrun-cpu")["settings"])
    model_cfg.vocab_size = 65
    ours = (attention_module.SHORT_WINDOW, layers.rms_norm, optim.newton_schulz)
    general = (0, rms_general, ns_general)

    def use(paths):
        attention_module.SHORT_WINDOW, layers.rms_norm, optim.newton_schulz = paths

    rows = []
    try:
        for threads, clock, label in settings():
            torch.set_num_threads(threads)
            for T in (16, 32, model_cfg.block_size):
                x = torch.randint(0, 65, (train_cfg.batch_size, T), generator=torch.Generator().manual_seed(0))
                cases = {}
                for name, paths in (("general", general), ("ours", ours)):
                    torch.manual_seed(0)
                    model = build_model(model_cfg)
                    optimizer = optim.build_optimizer(model, train_cfg, "cpu")

                    def step(model=model, optimizer=optimizer, paths=paths, x=x):
                        use(paths)
                        for _ in range(3):
                            model(x, x)[1].backward()
                            optimizer.step()
                            optimizer.zero_grad(set_to_none=True)

                    cases[name] = step
                ms = alternate(cases, rounds, clock)
                rows.append({"part": f"speedrun-cpu step, {T} tokens", "threads": threads, "clock": label,
                             **{k: v / 3 for k, v in ms.items()}})
    finally:
        use(ours)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="What the CPU training step's own kernels buy (see the module docstring).")
    p.add_argument("--what", default="parts,step", help="parts, attention, step, or a comma-separated list "
                                                        "(default parts,step)")
    p.add_argument("--rounds", type=int, default=20, help="timed rounds of each comparison (default 20)")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)
    jobs = {"parts": parts, "attention": attention, "step": steps}
    unknown = set(args.what.split(",")) - set(jobs)
    if unknown:
        p.error(f"--what: unknown {', '.join(sorted(unknown))}; choose from {', '.join(jobs)}")
    from tinygpt.core import devices

    devices.keep_freed_memory()  # as training does: freed blocks are reused, not returned and faulted in again
    load = os.getloadavg()[0]
    rows = []
    print(f"load average {load:.2f}; median of {args.rounds} rounds taking turns\n")
    print("| part | threads, clock | PyTorch's general path | tinygpt's | ratio |\n|---|---|---:|---:|---:|")
    for what in args.what.split(","):
        for row in jobs[what](args.rounds):
            rows.append(row)
            print(f"| {row['part']} | {row['clock']} | {row['general']:.2f} | {row['ours']:.2f} | "
                  f"{row['ours'] / row['general']:.2f}x |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"load_average": load, "rounds": args.rounds, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
