"""Beam search against greedy decoding on the dates model (issue 22): exact match and the model's own score.

    tinygpt train --preset seq2seq-demo --out runs/dates          # about a minute and a half
    python benchmarks/beam_search.py --run runs/dates             # results/beam_search.json

On the held-out dates the model never trained on (the last 500 of `--data dates`), each width's
translations are compared with the targets (exact match, percent) and scored by the model itself
(generation/beam.py's score: total log-probability over length, <|eos|> counted); the table gives,
per width, how many translations score below the greedy one (beam search must give none), how many
above, and the seconds it took, one source at a time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/dates", help="an encoder-decoder run on the dates (default: runs/dates)")
    ap.add_argument("--widths", default="1,2,3,4,5,8", help="beam widths to try (default: 1,2,3,4,5,8)")
    ap.add_argument("--sources", type=int, default=500, help="held-out dates to translate (default: 500)")
    ap.add_argument("--json", default=str(HERE / "results" / "beam_search.json"), help="where to write the results")
    args = ap.parse_args(argv)

    import torch

    import tinygpt
    from tinygpt.core.tokens import BOS, EOS
    from tinygpt.data.dates import HELD_OUT, date_pairs, exact_match
    from tinygpt.generation.beam import beam_search, target_score
    from tinygpt.generation.sampling import SamplingConfig
    from tinygpt.generation.translate import translate_ids

    torch.set_num_threads(1)
    run = tinygpt.load(args.run, device="cpu")
    bos, eos = run.tokenizer.token_to_id(BOS), run.tokenizer.token_to_id(EOS)
    held = date_pairs()[-HELD_OUT:][: args.sources]
    sources = [run.source_tokenizer.encode(s) for s, _ in held]
    limit = 30

    def score(ids, target):
        return target_score(run.model, ids, target, bos, eos, ended=len(target) < limit)

    start = time.perf_counter()
    greedy = [translate_ids(run.model, [ids], SamplingConfig(limit, temperature=0.0), bos, eos)[0] for ids in sources]
    rows = [{"width": "greedy", "seconds": round(time.perf_counter() - start, 1),
             "exact_match": exact_match([run.tokenizer.decode(g, skip_special_tokens=True) for g in greedy],
                                        [t for _, t in held]), "below_greedy": 0, "above_greedy": 0}]
    greedy_scores = [score(ids, g) for ids, g in zip(sources, greedy)]
    for width in (int(w) for w in args.widths.split(",")):
        start = time.perf_counter()
        found = [beam_search(run.model, ids, width, limit, bos, eos) for ids in sources]
        seconds = time.perf_counter() - start
        scores = [score(ids, f) for ids, f in zip(sources, found)]
        rows.append({"width": width, "seconds": round(seconds, 1),
                     "exact_match": exact_match([run.tokenizer.decode(f, skip_special_tokens=True) for f in found],
                                                [t for _, t in held]),
                     "below_greedy": sum(s < g - 1e-6 for s, g in zip(scores, greedy_scores)),
                     "above_greedy": sum(s > g + 1e-6 for s, g in zip(scores, greedy_scores))})
    print(f"{'width':>7}  {'exact match':>11}  {'below greedy':>12}  {'above greedy':>12}  {'seconds':>7}")
    for r in rows:
        print(f"{r['width']:>7}  {r['exact_match']:>10.1f}%  {r['below_greedy']:>12}  {r['above_greedy']:>12}  "
              f"{r['seconds']:>7.1f}")
    doc = {"run": args.run, "sources": len(held), "threads": 1, "rows": rows,
           "example": {"source": "2001-09-30", "greedy": run.translate("2001-09-30"),
                       "beam_4": run.translate("2001-09-30", num_beams=4)}}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"2001-09-30: greedy {doc['example']['greedy']!r}, 4 beams {doc['example']['beam_4']!r}; wrote {args.json}")


if __name__ == "__main__":
    main()
