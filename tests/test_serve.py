"""`tinygpt serve`: OpenAI's API as its official client uses it, continuous batching that gives each request
its lone tokens, OpenAI-style error objects for every bad request, and safe defaults.

The servers here are real: uvicorn on a free port of 127.0.0.1, in a thread of the test process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")

import tinygpt  # noqa: E402
from tinygpt.generation import SamplingConfig  # noqa: E402
from tinygpt.serve.app import create_app  # noqa: E402
from tinygpt.serve.engine import Engine, Request, collect  # noqa: E402
from tinygpt.serve.server import Server  # noqa: E402

MESSAGES = [{"role": "user", "content": "mary"}]


@pytest.fixture(scope="module")
def runs(char_run, chat_run, rhyme_run):
    return {"char": tinygpt.load(char_run), "chat": tinygpt.load(chat_run), "rhyme": tinygpt.load(rhyme_run.out_dir)}


@pytest.fixture(scope="module")
def alone(char_run, chat_run, rhyme_run):
    """The same runs loaded again: what each request gives when generated alone."""
    return {"char": tinygpt.load(char_run), "chat": tinygpt.load(chat_run), "rhyme": tinygpt.load(rhyme_run.out_dir)}


@pytest.fixture(scope="module")
def engine(runs):
    engine = Engine(runs, max_batch=16, max_waiting=16).start()
    yield engine
    engine.stop()


def serving(app) -> Server:
    return Server(app, "127.0.0.1", 0).start()


@pytest.fixture(scope="module")
def server(engine):
    server = serving(create_app(engine, max_tokens=400, max_body=4096, quiet=True, local_only=True))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def http(server, method, path, body=None, headers=None, raw: bytes | None = None):
    """(status, headers, parsed JSON body) of one plain HTTP request."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    text = response.read()
    conn.close()
    is_json = response.getheader("content-type", "").startswith("application/json")
    return response.status, dict(response.getheaders()), json.loads(text) if is_json else text


# ---- the OpenAI client ------------------------------------------------------------------------------

def test_the_models_are_listed_by_their_names_with_what_each_can_do(client):
    models = client.models.list().data
    assert [m.id for m in models] == ["char", "chat", "rhyme"]
    assert [m.tinygpt["chat"] for m in models] == [False, True, False]


def test_a_completion_is_what_the_run_samples_alone_with_the_same_seed(client, alone):
    r = client.completions.create(model="rhyme", prompt="mary had", max_tokens=12, temperature=0.9,
                                  seed=3, extra_body={"top_k": 5, "repetition_penalty": 1.2})
    want = alone["rhyme"].generate("mary had", max_new_tokens=12, temperature=0.9, top_k=5,
                                   repetition_penalty=1.2, seed=3)
    assert r.choices[0].text == want
    assert r.choices[0].finish_reason == "length"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (2, 12, 14)
    assert r.object == "text_completion" and r.model == "rhyme"


def test_the_same_seed_gives_the_same_completion_and_another_seed_another(client):
    ask = lambda seed: client.completions.create(model="char", prompt="mary", max_tokens=30, seed=seed).choices[0].text
    assert ask(5) == ask(5)
    assert ask(5) != ask(6)


def test_n_choices_are_the_samples_of_seed_plus_j(client, alone):
    r = client.completions.create(model="char", prompt="its", max_tokens=20, n=3, seed=10)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert [c.text for c in r.choices] == [alone["char"].generate("its", max_new_tokens=20, seed=10 + j)
                                           for j in range(3)]
    assert r.usage.completion_tokens == 60


def test_a_stop_string_ends_the_completion_before_it_with_finish_reason_stop(client):
    r = client.completions.create(model="rhyme", prompt="it followed", max_tokens=20, temperature=0,
                                  stop=["school"])
    assert r.choices[0].text == " her to "
    assert r.choices[0].finish_reason == "stop"


def test_streamed_pieces_join_into_the_completion_and_the_last_says_why_it_ended(client):
    knobs = dict(model="char", prompt="mary", max_tokens=40, seed=2)
    whole = client.completions.create(**knobs).choices[0].text
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **knobs))
    pieces = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(pieces) == whole and len(pieces) > 10
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 40


def test_a_chat_reply_is_the_runs_own_reply_streamed_or_whole(client, alone):
    knobs = dict(max_tokens=30, temperature=0.8, seed=4)
    r = client.chat.completions.create(model="chat", messages=MESSAGES, **knobs)
    want = alone["chat"].chat(MESSAGES, max_new_tokens=30, temperature=0.8, seed=4)
    assert r.choices[0].message.content == want and r.choices[0].message.role == "assistant"
    chunks = list(client.chat.completions.create(model="chat", messages=MESSAGES, stream=True, **knobs))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want
    assert chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason


def test_a_chat_reply_ends_with_stop_where_the_model_ends_its_turn(client, alone):
    r = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=60, temperature=0)
    assert alone["chat"].chat(MESSAGES, max_new_tokens=60, temperature=0) == r.choices[0].message.content
    assert r.choices[0].finish_reason == ("stop" if r.usage.completion_tokens < 60 else "length")


def test_logprobs_are_the_models_own_log_probabilities_with_the_likeliest_alternatives(client, alone):
    import torch

    r = client.completions.create(model="rhyme", prompt="mary had", max_tokens=3, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    assert lp.tokens == ["a", "little", "lamb"] and r.choices[0].text == " a little lamb"
    run = alone["rhyme"]
    with torch.no_grad():
        logits, _ = run.model(torch.tensor([run.encode("mary had")]))
    logp = torch.log_softmax(logits[0, -1], dim=-1)  # (V,)
    assert lp.token_logprobs[0] == pytest.approx(logp[run.encode("a")[0]].item(), abs=1e-5)
    top = list(lp.top_logprobs[0].items())
    assert len(top) == 3 and top[0][0] == "a" and top[0][1] >= top[1][1] >= top[2][1]
    assert lp.text_offset == [0, 2, 9]


def test_chat_logprobs_come_in_openais_chat_format(client):
    r = client.chat.completions.create(model="chat", messages=MESSAGES, max_tokens=5, temperature=0,
                                       logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert content and all(len(t.top_logprobs) == 2 and t.logprob == t.top_logprobs[0].logprob for t in content)
    assert all(t.bytes == list(t.token.encode()) for t in content)


def test_errors_reach_the_client_as_openais_exception_types(client):
    with pytest.raises(openai.NotFoundError, match="'nope' is not served here"):
        client.completions.create(model="nope", prompt="a")
    with pytest.raises(openai.BadRequestError, match="has no chat template") as e:
        client.chat.completions.create(model="rhyme", messages=MESSAGES)
    assert e.value.body["code"] == "model_not_chat" and e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError, match="unknown word"):
        client.completions.create(model="rhyme", prompt="mary had a dog")
    with pytest.raises(openai.BadRequestError, match="at most 400 tokens"):
        client.completions.create(model="char", prompt="a", max_tokens=401)
    assert client.completions.create(model="char", prompt="a", max_tokens=1).choices  # and it goes on serving


# ---- continuous batching --------------------------------------------------------------------------

def test_concurrent_requests_decode_together_and_each_gets_its_lone_tokens(engine, runs, alone):
    prompts = ["m", "mary had a", "its fleece was white as snow", "", "lamb"]  # one longer than block_size 16
    configs = [SamplingConfig(30, temperature=1.0), SamplingConfig(12, temperature=0.0),
               SamplingConfig(25, temperature=0.9, top_p=0.8), SamplingConfig(30, temperature=1.1, top_k=4),
               SamplingConfig(20, temperature=1.0, repetition_penalty=1.3, stop=["a"])]
    results = [None] * len(prompts)

    def ask(i):
        time.sleep(0.01 * i)  # they arrive while the others decode
        chunks = collect(engine, Request("char", runs["char"].start_ids(prompts[i]), configs[i], seed=i))
        results[i] = "".join(c.text for c in chunks)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone["char"].generate(p, seed=i, sampling=c) for i, (p, c) in enumerate(zip(prompts, configs))]


def test_a_request_joins_the_running_batch_at_the_next_step_and_leaves_it_when_done(runs, alone):
    engine = Engine({"char": runs["char"]})  # not started: the test turns the crank
    got = {}

    def request(name, prompt, n_tokens, seed):
        inbox = got.setdefault(name, [])
        return Request("char", runs["char"].encode(prompt), SamplingConfig(n_tokens), seed=seed, deliver=inbox.append)

    engine.submit(request("a", "mary", 6, 1))
    for _ in range(3):
        engine.step()
    engine.submit(request("b", "its fleece", 4, 2))
    engine.step()  # a's 4th token and b's first, in one step
    assert engine.stats()["decoding"] == 2 and engine.steps == 4
    assert [len(got["a"]), len(got["b"])] == [4, 1]
    for _ in range(2):
        engine.step()
    assert engine.stats()["decoding"] == 1 and got["a"][-1] is None  # a is done and has left
    engine.step()
    assert engine.stats()["decoding"] == 0 and got["b"][-1] is None and engine.steps == 7
    texts = {k: "".join(c.text for chunks in v if chunks for c in chunks) for k, v in got.items()}
    assert texts == {"a": alone["char"].generate("mary", max_new_tokens=6, seed=1),
                     "b": alone["char"].generate("its fleece", max_new_tokens=4, seed=2)}


def test_rows_leave_the_batch_when_done_so_it_stays_as_small_as_its_live_rows(engine, runs, alone):
    texts = []
    for seed in range(3):  # each request empties the batch, and the next refills the cache it leaves
        chunks = collect(engine, Request("char", runs["char"].encode("mary"), SamplingConfig(5), seed=seed))
        texts.append("".join(c.text for c in chunks))
        assert engine.stats()["decoding"] == 0 and engine.decoders["char"].rows == []
    assert texts == [alone["char"].generate("mary", max_new_tokens=5, seed=seed) for seed in range(3)]


def test_a_full_server_answers_503_with_retry_after_and_serves_again_when_free(runs):
    engine = Engine({"char": runs["char"]}, max_batch=1, max_waiting=0).start()
    server = serving(create_app(engine, quiet=True))
    try:
        long = Request("char", runs["char"].encode("m"), SamplingConfig(10**6), deliver=lambda chunks: None)
        engine.submit(long)
        status, headers, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a"})
        assert status == 503  # whether or not the engine has let the first in yet
        while not engine.stats()["decoding"]:
            time.sleep(0.01)
        status, headers, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a"})
        assert status == 503 and headers["retry-after"] == "1" and body["error"]["code"] == "server_busy"
        long.cancel()
        time.sleep(0.2)
        status, _, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a", "max_tokens": 3})
        assert status == 200 and body["usage"]["completion_tokens"] == 3
    finally:
        server.stop()
        engine.stop()


def test_a_failure_while_decoding_ends_that_request_with_an_error_and_the_server_goes_on(runs, monkeypatch):
    from tinygpt.generation import Decoder

    engine = Engine({"char": runs["char"]}).start()
    server = serving(create_app(engine, quiet=True))
    step, failures = Decoder.step, [RuntimeError("boom")]

    def broken(self):
        if failures:
            raise failures.pop()
        return step(self)

    monkeypatch.setattr(Decoder, "step", broken)
    try:
        status, _, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a", "max_tokens": 3})
        assert status == 500 and body["error"]["message"] == "the server failed while generating (RuntimeError: boom)"
        status, _, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a", "max_tokens": 3})
        assert status == 200 and body["usage"]["completion_tokens"] == 3
    finally:
        server.stop()
        engine.stop()


def test_a_client_that_leaves_before_its_whole_answer_is_ready_is_cancelled(runs):
    engine = Engine({"char": runs["char"]})  # never started: the answer never comes
    server = serving(create_app(engine, quiet=True))
    try:
        body = json.dumps({"model": "char", "prompt": "m", "max_tokens": 5}).encode()
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            wait_until = time.time() + 5
            while not engine.waiting and time.time() < wait_until:
                time.sleep(0.01)
            assert not engine.waiting[0].cancelled
        while not engine.waiting[0].cancelled and time.time() < wait_until:
            time.sleep(0.01)
        assert engine.waiting[0].cancelled
    finally:
        server.stop()


def test_a_client_that_disconnects_mid_stream_frees_its_place(server, engine):
    body = json.dumps({"model": "char", "prompt": "m", "max_tokens": 400, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while b"data: " not in data:
            data += s.recv(4096)
        assert engine.stats()["decoding"] == 1
    deadline = time.time() + 5
    while engine.stats()["decoding"] and time.time() < deadline:
        time.sleep(0.01)
    assert engine.stats()["decoding"] == 0


# ---- bad requests, over plain HTTP ------------------------------------------------------------------

@pytest.mark.parametrize("body, status, param, message", [
    (b"{not json", 400, None, "not valid JSON"),
    ({"model": "char", "prompt": 3}, 400, "prompt", "give a prompt: text, a list of token ids"),
    ({"model": "char", "prompt": [1, "a"]}, 400, "prompt", "must be text or a list of token ids"),
    ({"model": "char", "prompt": [99999]}, 400, "prompt", "token id 99999 is not in this model's vocabulary"),
    ({"model": "char", "prompt": "a", "presence_penalty": 0.5}, 400, "presence_penalty", "use repetition_penalty"),
    ({"model": "char", "prompt": "a", "temperature": "hot"}, 400, "temperature", "valid number"),
    ({"model": "char", "prompt": "a", "max_tokens": -1}, 400, "max_tokens", "greater than or equal to 0"),
    ({"model": "char", "prompt": "a", "temperature": 2.5}, 400, "temperature", "less than or equal to 2"),
    ({"model": "char", "prompt": "a", "top_p": 0}, 400, "top_p", "greater than 0"),
    ({"model": "char", "prompt": "a", "temprature": 1}, 400, "temprature", "does not know this field"),
    ({"model": "char"}, 400, "prompt", "Field required"),
    ({"model": "char", "prompt": "a", "seed": 2**64}, 400, "seed", "less than 9223372036854775808"),
    ({"model": "nope", "prompt": "a"}, 404, "model", "the models are char, chat, rhyme"),
    ({"model": "char", "prompt": "a" * 5000}, 413, None, "larger than this server's limit of 4,096 bytes"),
])
def test_a_bad_request_gets_an_openai_error_object_naming_the_field(server, body, status, param, message):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, _, answer = http(server, "POST", "/v1/completions", raw=raw)
    assert got == status
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and message in answer["error"]["message"]


def test_a_bad_chat_message_is_refused_by_name(server):
    status, _, body = http(server, "POST", "/v1/chat/completions",
                           {"model": "chat", "messages": [{"role": "robot", "content": "hi"}]})
    assert status == 400 and body["error"]["param"] == "messages.0.role"
    status, _, body = http(server, "POST", "/v1/chat/completions", {"model": "chat", "messages": []})
    assert status == 400 and body["error"]["param"] == "messages"


def test_a_body_that_is_not_json_is_refused_so_other_sites_cannot_post_to_the_server(server):
    status, _, body = http(server, "POST", "/v1/completions", headers={"Content-Type": "text/plain"},
                           raw=json.dumps({"model": "char", "prompt": "a"}).encode())
    assert status == 415 and "application/json" in body["error"]["message"]


def test_a_prompt_longer_than_the_context_is_cropped_from_the_left_and_the_response_says_so(server, alone):
    prompt = "mary had a little lamb its fleece"  # 33 characters; block_size is 16
    status, _, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": prompt, "max_tokens": 10,
                                                                 "seed": 1})
    assert status == 200
    assert body["warnings"] == ["the prompt is 33 tokens but the model reads at most 16 (block_size): "
                                "it continues the last 16"]
    assert body["choices"][0]["text"] == alone["char"].generate(prompt[-16:], max_new_tokens=10, seed=1)
    assert body["usage"]["prompt_tokens"] == 33


def test_streamed_chunks_never_end_halfway_through_a_character(tmp_path, tiny_settings):
    import torch

    from tinygpt.generation import Decoder, Row

    text = tmp_path / "unicode.txt"
    text.write_text("café crème brûlée 日本語のテキスト 🐑 mary had a little 🐑 привет мир\n" * 20, encoding="utf-8")
    out = tmp_path / "bpe"
    tinygpt.train(**dict(tiny_settings, tokenizer="bpe", vocab_size=300, data=str(text), out=str(out), max_iters=5))
    run = tinygpt.load(out)
    engine = Engine({"bpe": run}).start()
    server = serving(create_app(engine, quiet=True))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        for seed in range(3):
            chunks = client.completions.create(model="bpe", prompt="café ", max_tokens=60, seed=seed, stream=True)
            pieces = [c.choices[0].text for c in chunks]
            prompt = run.encode("café ")
            decoder = Decoder(run.model, [Row(prompt, SamplingConfig(60), torch.Generator().manual_seed(seed))])
            while not decoder.done:
                decoder.step()
            # A half character sent as U+FFFD and completed later would not join into the decoded text.
            assert "".join(pieces) == run.decode(decoder.ids[0])[len("café ") :]
    finally:
        server.stop()
        engine.stop()


def test_the_raw_stream_ends_with_done(server):
    body = json.dumps({"model": "char", "prompt": "m", "max_tokens": 5, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        data = b""
        while part := s.recv(65536):
            data += part
    head, _, stream = data.partition(b"\r\n\r\n")
    assert b"text/event-stream" in head
    events = [line for line in stream.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"data: [DONE]" and len(events) == 6


# ---- safe by default -------------------------------------------------------------------------------

def test_with_an_api_key_every_v1_request_needs_it(engine):
    server = serving(create_app(engine, api_key="s3cret", quiet=True))
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            status, _, body = http(server, "GET", "/v1/models", headers=headers)
            assert status == 401 and body["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        good = openai.OpenAI(base_url=server.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(model="char", prompt="m", max_tokens=2).usage.completion_tokens == 2
        assert http(server, "GET", "/health")[0] == 200  # probes need no key
    finally:
        server.stop()


def test_only_the_page_the_api_and_its_schema_are_served(server):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request("GET", "/")
    page = conn.getresponse()
    assert page.status == 200 and b"tinygpt playground" in page.read()
    assert "access-control-allow-origin" not in {k.lower() for k, _ in page.getheaders()}
    for path in ("/static/index.html", "/../../etc/passwd", "/docs", "/src/tinygpt/run.py"):
        conn.request("GET", path)
        answer = conn.getresponse()
        assert answer.status == 404, path
        answer.read()
    conn.close()


def test_cross_origin_calls_need_cors(engine):
    server = serving(create_app(engine, cors=["http://example.com"], quiet=True))
    try:
        _, headers, _ = http(server, "GET", "/v1/models", headers={"Origin": "http://example.com"})
        assert headers["access-control-allow-origin"] == "http://example.com"
        _, headers, _ = http(server, "GET", "/v1/models", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in headers
    finally:
        server.stop()


def test_a_loopback_server_answers_only_requests_addressed_to_it(server):
    status, _, _ = http(server, "GET", "/health", headers={"Host": "evil.example"})
    assert status == 400  # a page on another site that rebinds its name to 127.0.0.1 gets nothing
    status, _, body = http(server, "GET", "/health")
    assert status == 200 and body["status"] == "ok"


# ---- the command --------------------------------------------------------------------------------------

def test_tinygpt_serve_prints_the_url_and_a_curl_line_logs_each_request_and_stops_on_ctrl_c(rhyme_run):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "tinygpt", "serve", str(rhyme_run.out_dir), "--port", "0",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        url = first.split(" at ")[1].split("/v1")[0]
        assert first.startswith("serving run at http://127.0.0.1:") and second.startswith(f"try: curl {url}/v1/comp")
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        r = client.completions.create(model="run", prompt="mary had", max_tokens=3, temperature=0)
        assert r.choices[0].text == " a little lamb"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "POST /v1/completions 200 run 2+3 tokens" in err and "server stopped" in err
    finally:
        proc.kill()


def test_opening_the_server_beyond_this_machine_without_a_key_warns():
    from tinygpt.cli.serve import exposure_warning

    assert exposure_warning("0.0.0.0", None) == ("listening on 0.0.0.0 without --api-key: anyone who can reach this "
                                                 "machine can use the models")
    assert exposure_warning("0.0.0.0", "KEY") is None and exposure_warning("127.0.0.1", None) is None


def test_serving_a_run_twice_under_one_name_is_refused(rhyme_run, capsys):
    from tinygpt.cli import main

    assert main(["serve", str(rhyme_run.out_dir), str(rhyme_run.out_dir)]) == 2
    assert "two runs are named 'run'" in capsys.readouterr().err


MALLOC = """
import ctypes, re, sys, tempfile, threading
from tinygpt.serve.server import steady_malloc
if sys.argv[1] == "steady":
    assert steady_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.fopen.restype, libc.fopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes, libc.fclose.argtypes = [ctypes.c_int, ctypes.c_void_p], [ctypes.c_void_p]

def info():
    with tempfile.NamedTemporaryFile() as f:
        out = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, out)
        libc.fclose(out)
        return open(f.name).read()

def mapped():
    return int(re.search(r'<total type="mmap" count="(\\d+)"', info()).group(1))

libc.free(libc.malloc(1 << 20))  # a large block freed: glibc's default raises its mmap threshold past it
before = mapped()
block = libc.malloc(1 << 20)
mapped = mapped() - before  # 1 if the next large block is mapped for itself, 0 if it came from a heap
together = threading.Barrier(5)
def work():  # four threads allocating at the same time, as the engine, the event loop and torch's do
    small = libc.malloc(1000)
    together.wait()
    libc.free(small)
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
together.wait()
print(info().count("<heap nr="), mapped)
for t in threads:
    t.join()
"""


def glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a glibc system
        return False


@pytest.mark.skipif(not glibc(), reason="malloc arenas and thresholds are glibc's")
def test_tinygpt_serve_sets_malloc_so_that_its_memory_stays_flat():
    def arenas_and_mapped_blocks(mode):
        done = subprocess.run([sys.executable, "-c", MALLOC, mode], capture_output=True, text=True, check=True)
        return tuple(int(n) for n in done.stdout.split())

    # glibc's defaults: concurrent threads get arenas of their own, and the second large block comes
    # from a heap (the threshold rose when the first was freed), where freed memory stays.
    arenas, mapped = arenas_and_mapped_blocks("default")
    assert arenas > 1 and mapped == 0
    assert arenas_and_mapped_blocks("steady") == (1, 1)  # one arena; large blocks mapped, returned when freed


# ---- one request cannot break another (issue 24) ------------------------------------------------------

def test_a_request_whose_knobs_break_the_sampler_fails_alone_and_the_others_get_their_solo_tokens(runs, alone):
    """Knobs that reach the sampler unchecked (validate() is bypassed here: the server checks every request)
    fail their own rows only; the rows decoding beside them produce exactly what they produce alone."""
    engine = Engine({"char": runs["char"]})  # turned by hand: all three decode in the same steps
    inboxes = {name: [] for name in "abc"}
    poison = SamplingConfig(30, temperature=1e-45)  # logits / 1e-45 are infinite: the probabilities are NaN
    configs = {"a": SamplingConfig(30, temperature=0.9), "b": poison, "c": SamplingConfig(30, temperature=1.1, top_k=5)}
    requests = {name: Request("char", runs["char"].encode("mary"), configs[name], seed=7, deliver=inboxes[name].append)
                for name in "abc"}
    for request in requests.values():
        engine.submit(request)
    while engine.waiting or engine.live_rows:
        engine.step()
    assert requests["b"].error is not None and "sampler" in requests["b"].error and inboxes["b"][-1] is None
    for name in "ac":
        assert requests[name].error is None
        text = "".join(c.text for chunks in inboxes[name] if chunks for c in chunks)
        assert text == alone["char"].generate("mary", seed=7, sampling=configs[name])


def test_through_the_server_a_near_zero_knob_is_computed_by_the_rule_and_breaks_no_stream(server, alone):
    bodies = [{"model": "char", "prompt": "mary", "max_tokens": 40, "seed": 3, "stream": True, **knobs}
              for knobs in ({"temperature": 0.8}, {"temperature": 1e-45, "top_p": 5e-324, "repetition_penalty": 1e-45},
                            {"temperature": 1.2})]
    texts = [None] * 3

    def stream(i):
        status, _, raw = http(server, "POST", "/v1/completions", bodies[i])
        raw = raw.decode()
        events = [json.loads(line[6:]) for line in raw.split("\n") if line.startswith("data: {")]
        assert status == 200 and raw.rstrip().endswith("data: [DONE]") and events[-1]["choices"][0]["finish_reason"]
        texts[i] = "".join(e["choices"][0]["text"] for e in events)

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert texts[0] == alone["char"].generate("mary", max_new_tokens=40, seed=3, temperature=0.8)
    assert texts[1] == alone["char"].generate("mary", max_new_tokens=40, temperature=0, repetition_penalty=1e-6)
    assert texts[2] == alone["char"].generate("mary", max_new_tokens=40, seed=3, temperature=1.2)


def test_a_failed_stream_ends_with_an_error_event_then_done(runs, monkeypatch):
    from tinygpt.generation import decoder

    engine = Engine({"char": runs["char"]}).start()
    server = serving(create_app(engine, quiet=True))
    monkeypatch.setattr(decoder, "next_token", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no draw")))
    try:
        status, _, raw = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a", "stream": True})
        events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
        assert status == 200 and events[-1] == "[DONE]"
        assert "RuntimeError: no draw" in json.loads(events[-2])["error"]["message"]
    finally:
        server.stop()
        engine.stop()


def test_a_client_that_leaves_a_whole_answer_being_decoded_frees_its_rows(server, engine):
    body = json.dumps({"model": "char", "prompt": "m", "max_tokens": 400, "n": 4}).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        deadline = time.time() + 5
        while engine.stats()["decoding"] < 4 and time.time() < deadline:
            time.sleep(0.005)
        assert engine.stats()["decoding"] == 4
        left = time.time()
    while engine.stats()["decoding"] and time.time() < left + 5:
        time.sleep(0.005)
    assert engine.stats()["decoding"] == 0 and time.time() - left < 1.0


def test_n_beyond_the_batch_is_a_400_naming_n(server, engine):
    status, _, body = http(server, "POST", "/v1/completions", {"model": "char", "prompt": "a", "n": 16,
                                                              "max_tokens": 1})
    assert status == 200  # the fixture's batch holds 16 rows
    small = serving(create_app(Engine({"char": engine.runs["char"]}, max_batch=2), quiet=True))
    try:
        status, _, body = http(small, "POST", "/v1/completions", {"model": "char", "prompt": "a", "n": 3})
        assert status == 400 and body["error"]["param"] == "n" and "--max-batch" in body["error"]["message"]
    finally:
        small.stop()


def test_the_schema_at_openapi_json_describes_every_route_and_its_body(server):
    status, _, schema = http(server, "GET", "/openapi.json")
    assert status == 200 and schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert {"/v1/models", "/v1/models/{model}", "/v1/completions", "/v1/chat/completions", "/tokenize",
            "/detokenize", "/tokenizer_info", "/health"} <= set(paths)
    body = paths["/v1/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    completion = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert completion["additionalProperties"] is False
    assert {"prompt", "echo", "logprobs"} <= set(completion["properties"])


def test_the_server_socket_says_it_is_tcp_so_nagles_delay_is_off(server):
    """asyncio sets TCP_NODELAY only on sockets whose protocol is IPPROTO_TCP; a listening socket made with
    protocol 0 left Nagle's algorithm on, and every response waited 40 ms for the client's delayed ACK."""
    assert server.socket.proto == socket.IPPROTO_TCP
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 200")
    assert server.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
