"""EleutherAI's lm-evaluation-harness on tinygpt runs: in-process (`tinygpt eval --tasks`) and through
`tinygpt serve` with the harness's own `local-completions` client, on task files the tests write.

The two paths must give the same numbers: they tokenize alike (the server's /tokenize), use the same
prefix token (/tokenizer_info) and score with the same function (generation/score.py).
"""

import json
import math
from pathlib import Path

import openai
import pytest
import torch
from harness_tasks import write_tasks

import tinygpt
from tinygpt.cli import main
from tinygpt.data import rhyme_text
from tinygpt.generation.score import score
from tinygpt.serve.app import create_app
from tinygpt.serve.engine import Engine
from tinygpt.serve.server import Server

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from tinygpt.evaluation.harness import TinyGPTLM  # noqa: E402

LINES = [line for line in rhyme_text().splitlines() if line.strip()]
TEXTS = [rhyme_text(), LINES[0] + "\n", "\n".join(LINES[2:6]) + "\n"]  # 451, 23 and 90 characters
# The harness's API client can score a continuation of at most max_length - 2 tokens and keeps a context of
# max_length - 1 - max_gen_toks tokens to generate from: within those, both paths read the same tokens.
QUESTIONS = [("mary had a little", [" lamb", " snow", " mary"], 0), ("its fleece was white as", [" snow", " lamb"], 0),
             ("everywhere that mary went", [" the lamb was", " the snow"], 0)]
PROMPTS = [("mary had", " a little"), ("the lamb", " was sure")]


@pytest.fixture(scope="module")
def run(char_run):
    return tinygpt.load(char_run)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("tasks")
    return folder, write_tasks(folder, TEXTS, QUESTIONS, PROMPTS)


@pytest.fixture(scope="module")
def server(run):
    engine = Engine({"char": run}, max_batch=16, max_waiting=64).start()
    server = Server(create_app(engine, quiet=True), "127.0.0.1", 0).start()
    yield server
    server.stop()
    engine.stop()


def request(kind: str, *args) -> Instance:
    return Instance(request_type=kind, doc={}, arguments=args, idx=0)


def by_hand(model, ids: list[int]) -> float:
    """log p(ids[1:] | ids[:1]...) one position at a time, with the model's plain forward."""
    total = 0.0
    with torch.no_grad():
        for t in range(1, len(ids)):
            logits, _ = model(torch.tensor([ids[:t]]))
            total += torch.log_softmax(logits[0, -1].float(), -1)[ids[t]].item()
    return total


# ---- the model interface --------------------------------------------------------------------------

def test_a_continuation_scores_what_the_model_gives_it(run):
    lm = TinyGPTLM(run.model, run.tokenizer, batch_size=2)
    ids = run.tokenizer.encode
    got = lm.loglikelihood([request("loglikelihood", "mary had", " a little"),
                            request("loglikelihood", "", "mary"),
                            request("loglikelihood", "the lamb", " was")])
    expected = by_hand(run.model, ids("mary had a little")) - by_hand(run.model, ids("mary had"))
    assert got[0][0] == pytest.approx(expected, abs=1e-4)
    # An empty context reads the prefix token: the line break an empty prompt starts from.
    assert lm.prefix_token_id == run.tokenizer.start_ids()[0] == ids("\n")[0]
    assert got[1][0] == pytest.approx(by_hand(run.model, ids("\nmary")), abs=1e-4)
    assert all(isinstance(greedy, bool) for _, greedy in got)


def test_a_short_document_is_scored_after_the_prefix_token_and_a_long_one_in_windows(run):
    lm = TinyGPTLM(run.model, run.tokenizer)
    short, long = "mary had a", rhyme_text() * 2  # 10 characters, within the block of 16; and 902
    got = lm.loglikelihood_rolling([request("loglikelihood_rolling", short), request("loglikelihood_rolling", long)])
    assert got[0] == pytest.approx(by_hand(run.model, run.tokenizer.encode("\n" + short)), abs=1e-4)
    # The long one: every token scored once, each window reading at most block_size tokens; its loss per
    # token is near the exact pass of `tinygpt eval` (which windows the text its own way).
    per_token = -got[1] / len(run.tokenizer.encode(long))
    assert 0 < per_token < math.log(run.tokenizer.vocab_size)


def test_text_the_tokenizer_cannot_encode_scores_as_impossible(run):
    lm = TinyGPTLM(run.model, run.tokenizer)
    got = lm.loglikelihood([request("loglikelihood", "mary had", " a 7"), request("loglikelihood", "mary", " had")])
    assert got[0] == (-math.inf, False) and math.isfinite(got[1][0])
    assert lm.loglikelihood_rolling([request("loglikelihood_rolling", "§")]) == [-math.inf]
    assert lm.unencodable == 2


def test_generation_is_what_tinygpt_sample_writes_at_temperature_0(run):
    lm = TinyGPTLM(run.model, run.tokenizer)
    got = lm.generate_until([request("generate_until", "mary had", {"until": ["\n"], "max_gen_toks": 12}),
                             request("generate_until", "the", {"until": ["a"], "max_gen_toks": 5})])
    for (prompt, stop, n), text in zip([("mary had", "\n", 12), ("the", "a", 5)], got):
        assert text == run.generate(prompt, max_new_tokens=n, temperature=0, stop=[stop])


# ---- in-process and through the server: the same numbers --------------------------------------------

def test_the_harness_gives_the_same_numbers_in_process_and_through_the_server(run, tasks, server):
    folder, names = tasks
    manager = TaskManager(include_path=str(folder), include_defaults=False)  # no need to index the standard ones
    common = dict(tasks=names, task_manager=manager, bootstrap_iters=0, log_samples=False)
    here = lm_eval.simple_evaluate(model=TinyGPTLM(run.model, run.tokenizer, batch_size=4), **common)["results"]
    block = run.model_config.block_size
    there = lm_eval.simple_evaluate(
        model="local-completions", batch_size=4, **common,
        model_args=f"model=char,base_url={server.url}/v1/completions,max_length={block + 2},num_concurrent=1",
    )["results"]
    metrics = {(task, metric) for task in names for metric in here[task] if metric.endswith(",none")
               and "stderr" not in metric}
    assert len(metrics) == 6  # three perplexities, acc, acc_norm, exact_match
    for task, metric in metrics:
        assert there[task][metric] == pytest.approx(here[task][metric], rel=1e-6), (task, metric)
    assert 0 < here[names[0]]["bits_per_byte,none"] < 8


# ---- the server's side of it ------------------------------------------------------------------------

def post(server, path: str, body: dict) -> tuple[int, dict]:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_an_echoed_prompt_comes_back_with_each_tokens_logprob(run, server):
    ids = run.tokenizer.encode("mary had a little")
    status, answer = post(server, "/v1/completions", {"model": "char", "prompt": ids, "max_tokens": 0, "echo": True,
                                                      "logprobs": 1})
    assert status == 200
    [choice] = answer["choices"]
    assert choice["text"] == "mary had a little" and choice["finish_reason"] == "length"
    logprobs = choice["logprobs"]
    assert logprobs["tokens"] == list("mary had a little")
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    [expected] = score(run.model, [ids])
    assert logprobs["token_logprobs"][1:] == pytest.approx(expected.logprobs, abs=1e-6)
    assert logprobs["text_offset"] == list(range(len(ids)))
    assert answer["usage"] == {"prompt_tokens": len(ids), "completion_tokens": 0, "total_tokens": len(ids)}


def test_several_prompts_are_answered_in_order_and_ids_equal_their_text(server):
    status, answer = post(server, "/v1/completions", {"model": "char", "prompt": ["mary", "the lamb"], "n": 2,
                                                      "max_tokens": 4, "temperature": 0})
    assert status == 200 and [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    texts = [c["text"] for c in answer["choices"]]
    assert texts[0] == texts[1] and texts[2] == texts[3]
    _, tokens = post(server, "/tokenize", {"prompt": "the lamb"})
    _, by_ids = post(server, "/v1/completions", {"model": "char", "prompt": tokens["tokens"], "max_tokens": 4,
                                                 "temperature": 0})
    assert by_ids["choices"][0]["text"] == texts[2]
    _, text = post(server, "/detokenize", {"tokens": tokens["tokens"]})
    assert text == {"prompt": "the lamb"}


def test_the_tokenizer_endpoints_say_what_the_harness_needs(run, server):
    import urllib.request

    info = json.loads(urllib.request.urlopen(server.url + "/tokenizer_info").read())
    assert info["bos_token"] == info["eos_token"] == "\n" and info["model_max_length"] == run.model_config.block_size
    status, answer = post(server, "/tokenize", {"prompt": "mary 7"})
    assert status == 400 and answer["error"]["param"] == "prompt" and "'7'" in answer["error"]["message"]


@pytest.mark.parametrize("body, fragment", [
    ({"prompt": "mary had a little lamb its fleece", "echo": True, "logprobs": 1}, "at most block_size + 1 = 17"),
    ({"prompt": [0, 999], "echo": True}, "token id 999 is not in this model's vocabulary"),
    ({"prompt": [[1], []]}, "at least one id"),
    ({"prompt": "a", "frequency_penalty": 1.0}, "use repetition_penalty"),
])
def test_bad_scoring_requests_get_a_400_naming_the_field(server, body, fragment):
    status, answer = post(server, "/v1/completions", {"model": "char", **body})
    assert status == 400 and fragment in answer["error"]["message"], answer


def test_a_model_can_be_retrieved_by_its_name(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    assert client.models.retrieve("char").id == "char"
    with pytest.raises(openai.NotFoundError, match="the models are char"):
        client.models.retrieve("nope")


def test_an_image_part_is_refused_as_not_text(chat_run):
    engine = Engine({"chat": tinygpt.load(chat_run)}).start()
    server = Server(create_app(engine, quiet=True), "127.0.0.1", 0).start()
    try:
        status, answer = post(server, "/v1/chat/completions", {"model": "chat", "messages": [
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]})
        assert status == 400 and answer["error"]["param"] == "messages.0.content"
        assert "only text content is supported" in answer["error"]["message"]
        import urllib.request

        info = json.loads(urllib.request.urlopen(server.url + "/tokenizer_info").read())
        assert info["eos_token"] == "<|end|>" and info["chat_template"]
    finally:
        server.stop()
        engine.stop()


# ---- tinygpt eval --tasks ------------------------------------------------------------------------------

def test_eval_tasks_prints_the_harness_table_and_writes_its_results(char_run, tasks, tmp_path, capsys):
    folder, names = tasks
    out = tmp_path / "results.json"
    code = main(["eval", str(char_run), "--tasks", ",".join(names[1:]), "--include-path", str(folder),
                 "--output", str(out), "--batch-size", "4"])
    printed, _ = capsys.readouterr()
    assert code == 0
    assert "|tiny_choice" in printed and "|acc " in printed and "|exact_match" in printed
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"tiny_choice", "tiny_generate"}


@pytest.mark.parametrize("args, fragment", [
    (["--tasks", "tiny_chioce"], "no task 'tiny_chioce' (close: "),
    (["--tasks", ","], "--tasks names no task"),
    (["--limit", "5"], "--limit is for the lm-evaluation-harness: give --tasks NAMES too"),
    (["--tasks", "tiny_choice", "--data", "x.txt"], "give one or the other"),
])
def test_eval_tasks_refuses_bad_arguments_in_one_line(char_run, tasks, capsys, args, fragment):
    folder, _ = tasks
    code = main(["eval", str(char_run), "--include-path", str(folder), *args] if "--tasks" in args
                else ["eval", str(char_run), *args])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_the_harness_chat_client_still_gets_the_runs_own_replies(chat_run, tmp_path):
    from harness_tasks import write_generate

    run = tinygpt.load(chat_run)
    engine = Engine({"chat": run}).start()
    server = Server(create_app(engine, quiet=True), "127.0.0.1", 0).start()
    try:
        name = write_generate(tmp_path, [("mary", "had a"), ("its fleece", "was")])
        out = lm_eval.simple_evaluate(model="local-chat-completions", apply_chat_template=True, log_samples=True,
                                      model_args=f"model=chat,base_url={server.url}/v1/chat/completions",
                                      tasks=[name], bootstrap_iters=0,
                                      task_manager=TaskManager(include_path=str(tmp_path), include_defaults=False))
    finally:
        server.stop()
        engine.stop()
    replies = [sample["resps"][0][0] for sample in out["samples"][name]]
    prompts = [sample["doc"]["prompt"] for sample in out["samples"][name]]
    want = [run.chat([{"role": "user", "content": p}], max_new_tokens=8, temperature=0).split("\n")[0] for p in prompts]
    assert replies == want


def test_eval_tasks_says_how_to_install_the_harness_when_it_is_missing(char_run, capsys, monkeypatch):
    import importlib.util

    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else find(name, *a))
    code = main(["eval", str(char_run), "--tasks", "hellaswag"])
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1 and "pip install lm-eval" in err, err
