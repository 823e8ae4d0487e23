"""Task files for EleutherAI's lm-evaluation-harness over tiny local data, so tests run the harness
without the Hub: each task is a YAML file and a .jsonl of documents, written into one folder that the
harness reads with `TaskManager(include_path=folder)`.

    names = write_tasks(tmp_path, texts=["mary had a little lamb\n"],
                        questions=[("mary had a little", [" lamb", " snow"], 0)],
                        prompts=[("mary had a", " little")])
    lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={export}", tasks=names, device="cpu",
                            task_manager=task_manager(tmp_path))

The three kinds of request a language model answers for the harness, one task each:

    ROLLING   loglikelihood_rolling: each text scored whole, as lm-eval's wikitext task does
              (word_perplexity, byte_perplexity, bits_per_byte over all the texts' bytes)
    CHOICE    multiple_choice: acc and acc_norm, each choice scored as the question's continuation
    GENERATE  generate_until a line break, greedy, at most `max_gen_toks` tokens; exact_match
              against the answer

Every text is used as written: a document's field, named as such (no template renders it), and no
delimiter between question and choice or prompt and answer (`target_delimiter: ""`), so a choice or an
answer that follows a word starts with its own space (" lamb").
"""

import json
from pathlib import Path

ROLLING, CHOICE, GENERATE = "tiny_rolling", "tiny_choice", "tiny_generate"


def write_rolling(folder, texts: list[str], name: str = ROLLING) -> str:
    """A perplexity task over `texts` (one document each); returns its name."""
    docs = [{"text": t} for t in texts]
    return _write(folder, name, docs, ["output_type: loglikelihood_rolling", 'doc_to_text: ""', "doc_to_target: text",
                                       *_metrics(word_perplexity="weighted_perplexity",
                                                 byte_perplexity="weighted_perplexity", bits_per_byte="bits_per_byte")])


def write_choice(folder, questions: list[tuple[str, list[str], int]], name: str = CHOICE) -> str:
    """A multiple-choice task: (question, choices, index of the right one) per document; its name."""
    docs = [{"question": q, "choices": c, "answer": a} for q, c, a in questions]
    return _write(folder, name, docs, ["output_type: multiple_choice", "doc_to_text: question",
                                       "doc_to_choice: choices", "doc_to_target: answer", 'target_delimiter: ""',
                                       *_metrics(acc="mean", acc_norm="mean")])


def write_generate(folder, prompts: list[tuple[str, str]], name: str = GENERATE, max_gen_toks: int = 8) -> str:
    """A generation task: (prompt, the answer expected after it) per document; its name."""
    docs = [{"prompt": p, "answer": a} for p, a in prompts]
    return _write(folder, name, docs, ["output_type: generate_until", "doc_to_text: prompt", "doc_to_target: answer",
                                       'target_delimiter: ""', "generation_kwargs:", '  until: ["\\n"]',
                                       f"  max_gen_toks: {max_gen_toks}", "  do_sample: false",
                                       *_metrics(exact_match="mean")])


def write_tasks(folder, texts: list[str], questions: list[tuple[str, list[str], int]],
                prompts: list[tuple[str, str]]) -> list[str]:
    """The three tasks above in `folder`; their names, [ROLLING, CHOICE, GENERATE]."""
    return [write_rolling(folder, texts), write_choice(folder, questions), write_generate(folder, prompts)]


def task_manager(folder):
    """The harness's TaskManager for the tasks in `folder` alone: indexing its thousands of built-in task
    files as well takes about 25 s on the 2-core machine."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False)


def _metrics(**aggregations) -> list[str]:
    """metric_list lines: each metric with its aggregation; lower is better for perplexity and bits per byte."""
    lines = ["metric_list:"]
    for metric, aggregation in aggregations.items():
        better = "false" if "perplexity" in metric or metric == "bits_per_byte" else "true"
        lines += [f"  - metric: {metric}", f"    aggregation: {aggregation}", f"    higher_is_better: {better}"]
    return lines


def _write(folder, name: str, docs: list[dict], lines: list[str]) -> str:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), encoding="utf-8")
    head = [f"task: {name}", "dataset_path: json", "dataset_kwargs:", "  data_files:",
            f"    test: {json.dumps(str(data))}", "test_split: test"]  # a JSON string is a YAML string
    (folder / f"{name}.yaml").write_text("\n".join(head + lines) + "\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    return name
