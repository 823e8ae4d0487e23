"""The Inside view (issue 29): POST /inside gives the numbers `tinygpt inspect --json` prints, and the
playground's Inside mode shows them in a real browser (headless Chromium): a hovered token's attention
row, the temperature slider's softmax, the logit lens."""

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

import torch  # noqa: E402
from browsing import CHROMEDRIVER, CHROMIUM, browser, wait  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.cli import main  # noqa: E402
from tinygpt.serve.app import create_app  # noqa: E402
from tinygpt.serve.engine import Engine  # noqa: E402
from tinygpt.serve.server import Server  # noqa: E402
from tinygpt.viz import inside as inside_module  # noqa: E402

TEXT = "mary had a little"


def inspected(capsys, tmp_path, run_dir, text) -> dict:
    """`tinygpt inspect RUN --prompt TEXT --attention FILE --json`: what the page must agree with."""
    assert main(["inspect", str(run_dir), "--prompt", text, "--attention", str(tmp_path / "a.png"), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def rhyme(rhyme_run):
    return tinygpt.load(rhyme_run.out_dir)


@pytest.fixture(scope="module")
def client(rhyme):
    engine = Engine({"rhyme": rhyme}).start()
    yield TestClient(create_app(engine, quiet=True))
    engine.stop()


def test_inside_gives_inspects_attention_and_the_models_own_prediction(client, rhyme, rhyme_run, capsys, tmp_path):
    view = client.post("/inside", json={"text": TEXT}).json()
    want = inspected(capsys, tmp_path, rhyme_run.out_dir, TEXT)
    assert view["tokens"] == want["tokens"] and view["ids"] == want["ids"]
    # (n_layer, n_head, T, T) with the same rounding; a causal model's rows stop at their position (the rest is 0)
    assert view["attention"] == [[[row[: t + 1] for t, row in enumerate(head)] for head in layer]
                                 for layer in want["attention"]["weights"]]
    assert all(w == 0 for layer in want["attention"]["weights"] for head in layer for t, row in enumerate(head)
               for w in row[t + 1:])
    cfg = rhyme.model_config
    assert view["config"] == {"n_layer": cfg.n_layer, "n_head": cfg.n_head, "n_embd": cfg.n_embd,
                              "head_size": cfg.n_embd // cfg.n_head, "block_size": cfg.block_size,
                              "vocab_size": cfg.vocab_size}
    T = len(view["ids"])
    shapes = {s["name"]: s["shape"] for s in view["stages"]}
    assert shapes["idx"] == [1, T] and shapes["logits"] == [1, T, cfg.vocab_size]
    assert shapes["block 1: wei"] == [1, cfg.n_head, T, T]
    with torch.no_grad():
        logits, _ = rhyme.model(torch.tensor([view["ids"]]))  # (1, T, V)
    assert view["lens"][-1]["ids"] == logits[0].argmax(-1).tolist()  # the last layer's lens is the prediction
    assert len(view["lens"]) == cfg.n_layer
    nxt = view["next"]
    assert nxt["all"] and sorted(nxt["ids"]) == list(range(cfg.vocab_size))
    assert nxt["logits"] == pytest.approx([logits[0, -1, i].item() for i in nxt["ids"]], abs=1e-5)
    points = view["embeddings"]["points"]
    assert len(points) == cfg.vocab_size and set(view["embeddings"]["marked"]) == set(view["ids"])


def test_a_large_payload_comes_a_layer_at_a_time(client, monkeypatch):
    monkeypatch.setattr(inside_module, "ATTENTION_NUMBERS", 10)
    whole = client.post("/inside", json={"text": TEXT}).json()
    assert whole["attention"] is None
    monkeypatch.undo()
    every = client.post("/inside", json={"text": TEXT}).json()["attention"]
    for layer in (1, 2):
        part = client.post("/inside", json={"text": TEXT, "layer": layer}).json()
        assert part == {"layer": layer, "attention": every[layer - 1]}


def test_bad_inside_requests_are_the_servers_4xx(client):
    for body, status, fragment in [({"text": TEXT, "layer": 3}, 400, "layer: this model's layers are 1 to 2"),
                                   ({"text": TEXT, "layer": 0}, 400, "layer"),
                                   ({"text": ""}, 400, "text"),
                                   ({"text": "mary zebra"}, 400, "unknown word(s) 'zebra'"),
                                   ({"text": TEXT, "model": "nope"}, 404, "'nope' is not served here"),
                                   ({"text": TEXT, "colour": 1}, 400, "this server does not know this field")]:
        r = client.post("/inside", json=body)
        assert r.status_code == status and fragment in r.json()["error"]["message"], (body, r.json())
    assert "/inside" in client.get("/openapi.json").json()["paths"]


def test_weights_served_as_int8_are_refused_a_look_inside_and_still_write(rhyme_run):
    engine = Engine({"rhyme": tinygpt.load(rhyme_run.out_dir, quantize="int8")}).start()
    try:
        client = TestClient(create_app(engine, quiet=True))
        r = client.post("/inside", json={"text": TEXT})
        assert r.status_code == 400 and "--quantize int8" in r.json()["error"]["message"]
        r = client.post("/v1/completions", json={"model": "rhyme", "prompt": TEXT, "max_tokens": 3})
        assert r.status_code == 200 and r.json()["choices"][0]["text"]
    finally:
        engine.stop()


def test_a_text_past_the_context_is_read_from_its_end(client, rhyme):
    text = "mary had a little lamb its fleece was white as snow"
    view = client.post("/inside", json={"text": text}).json()
    block = rhyme.model_config.block_size
    assert view["ids"] == rhyme.encode(text)[-block:] and "only the last" in view["note"]


def test_an_encoders_maps_are_full(tmp_path):
    run_dir = tmp_path / "enc"
    tinygpt.train(data="rhyme", out=str(run_dir), arch="encoder", max_iters=5, n_layer=1, n_head=2, n_embd=16,
                  block_size=8, batch_size=4, threads=1, progress=False, sample_tokens=0)
    engine = Engine({"enc": tinygpt.load(run_dir)}).start()
    try:
        view = TestClient(create_app(engine, quiet=True)).post("/inside", json={"text": "mary had a"}).json()
    finally:
        engine.stop()
    assert view["causal"] is False
    assert view["attention"][0][0][0][2] > 0  # the first position reads the last: nothing is masked


# ---- in the browser -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(rhyme):
    pytest.importorskip("selenium.webdriver")
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} with {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    engine = Engine({"rhyme": rhyme}).start()
    server = Server(create_app(engine, quiet=True, local_only=True), "127.0.0.1", 0).start()
    driver = browser()
    try:
        driver.get(server.url + "/")
        wait(lambda: driver.find_elements("css selector", "#model option"))
        box = driver.find_element("id", "inside-text")
        driver.find_element("id", "mode-inside").click()
        wait(lambda: driver.find_element("id", "inside").get_attribute("data-ready") == "1")
        box.clear()
        box.send_keys(TEXT)
        driver.find_element("id", "inside-look").click()
        wait(lambda: driver.find_element("id", "inside").get_attribute("data-ready") == "1"
             and len(driver.find_elements("css selector", "#inside-tokens .chip")) == 4)
        yield driver
    finally:
        driver.quit()
        server.stop()
        engine.stop()


def test_hovering_a_token_shows_its_attention_row_as_inspect_prints_it(page, rhyme_run, capsys, tmp_path):
    from selenium.webdriver import ActionChains

    want = inspected(capsys, tmp_path, rhyme_run.out_dir, TEXT)["attention"]["weights"]
    page.find_element("css selector", "canvas.map[data-layer='1'][data-head='1']").click()  # layer 2, head 2
    for t in (1, 3):
        ActionChains(page).move_to_element(page.find_elements("css selector", "#inside-tokens .chip")[t]).perform()
        wait(lambda t=t: f"(position {t}) reads, layer 2, head 2" in page.find_element("id", "inside-row-title").text)
        rows = page.find_elements("css selector", "#inside-row tr")
        shown = [float(r.find_element("css selector", ".w").text) for r in rows]
        assert shown == [round(w, 4) for w in want[1][1][t][: t + 1]]  # causal: positions 0..t


def test_the_temperature_slider_gives_softmax_of_the_logits_over_t(page, rhyme):
    slider = page.find_element("id", "inside-temperature")
    for temperature in (0.5, 1.5):
        page.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
                            slider, str(temperature))
        rows = page.find_elements("css selector", "#inside-next tr")
        logits = [float(r.get_attribute("data-logit")) for r in rows]
        with torch.no_grad():
            out, _ = rhyme.model(torch.tensor([rhyme.encode(TEXT)]))
        want = torch.softmax(out[0, -1] / temperature, dim=-1)  # (V,)
        for r, z in zip(rows, logits):
            assert math.isclose(float(r.get_attribute("data-prob")), want[int(r.get_attribute("data-id"))].item(),
                                abs_tol=1e-5)
            assert math.isclose(z, out[0, -1, int(r.get_attribute("data-id"))].item(), abs_tol=1e-5)


def test_the_logit_lens_last_layer_is_the_models_own_prediction(page, rhyme):
    rows = page.find_elements("css selector", "#inside-lens tr")[1:]  # after the header row
    assert len(rows) == rhyme.model_config.n_layer
    shown = [int(td.get_attribute("data-id")) for td in rows[-1].find_elements("css selector", "td")]
    with torch.no_grad():
        out, _ = rhyme.model(torch.tensor([rhyme.encode(TEXT)]))
    assert shown == out[0].argmax(-1).tolist()


# ---- watching a run learn ---------------------------------------------------------------------------------

TINY = ["--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--block-size", "8", "--batch-size", "4", "--threads", "1",
        "--no-progress", "--sample-tokens", "0"]


@pytest.fixture
def short_run(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--data", "rhyme", "--out", str(run_dir), "--max-iters", "20", "--eval-interval", "10",
                 *TINY]) == 0
    return run_dir


def watched(run_dir):
    from tinygpt.serve.watch import Watcher

    engine = Engine({"run": tinygpt.load(run_dir, checkpoint="latest")}).start()
    return engine, Watcher(engine, "run", run_dir, every=0.05).start()


def test_a_checkpoint_caught_half_written_is_never_loaded(short_run):
    engine, watcher = watched(short_run)
    try:
        model = engine.runs["run"].model
        before = {k: v.clone() for k, v in model.state_dict().items()}
        latest = short_run / "checkpoints" / "latest.safetensors"
        whole = latest.read_bytes()
        watcher.stop()  # look by hand from here
        flipped = bytearray(whole)
        flipped[-100] ^= 0xFF  # one byte of the tensors changed: the checksum no longer matches
        for damaged in (whole[: len(whole) // 2], bytes(flipped)):  # cut short; written wrong
            latest.write_bytes(damaged)
            assert watcher.look() is False and "latest.safetensors" in watcher.problem
            assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # still the old weights
        assert watcher.step == 20 and watcher.status()["problem"]
        latest.write_bytes(whole)  # put back, so that training can resume from it
        assert main(["train", "--resume", str(short_run), "--max-iters", "30", "--eval-interval", "10", *TINY]) == 0
        assert watcher.look() is True and watcher.step == 30 and watcher.status()["problem"] is None
        assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
        want = tinygpt.load(short_run, checkpoint="latest").model.state_dict()
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())  # exactly what training saved
    finally:
        watcher.stop()
        engine.stop()


def test_watch_refuses_a_run_it_does_not_watch(client):
    r = client.get("/watch")
    assert r.status_code == 400 and "is not being watched" in r.json()["error"]["message"]


def test_the_page_follows_a_run_as_it_trains(short_run, capsys):
    import subprocess
    import sys

    pytest.importorskip("selenium.webdriver")
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} with {CHROMEDRIVER}")
    engine, watcher = watched(short_run)
    server = Server(create_app(engine, quiet=True, local_only=True, watchers={"run": watcher}), "127.0.0.1", 0).start()
    driver = browser()
    try:
        driver.get(server.url + "/#inside")
        wait(lambda: driver.find_element("id", "inside").get_attribute("data-step") == "20")
        assert driver.find_element("id", "inside-watch").is_displayed()
        for step in ("200", "400"):  # another process trains on; the page must show each checkpoint it saves
            training = subprocess.run([sys.executable, "-m", "tinygpt", "train", "--resume", str(short_run),
                                       "--max-iters", step, "--eval-interval", "20", *TINY],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            assert training.returncode == 0, training.stderr
            wait(lambda step=step: driver.find_element("id", "inside").get_attribute("data-step") == step, timeout=10)
        assert int(driver.find_element("id", "inside-watch").get_attribute("data-step")) == 400
        rows = driver.find_elements("css selector", "#inside-lens tr")[1:]
        shown = [int(td.get_attribute("data-id")) for td in rows[-1].find_elements("css selector", "td")]
        final = tinygpt.load(short_run, checkpoint="latest")
        ids = [int(c.find_element("css selector", ".id").text) for c in
               driver.find_elements("css selector", "#inside-tokens .chip")]
        with torch.no_grad():
            out, _ = final.model(torch.tensor([ids]))
        assert shown == out[0].argmax(-1).tolist()  # the page shows the last checkpoint's own predictions
    finally:
        driver.quit()
        server.stop()
        watcher.stop()
        engine.stop()


# ---- encoders and encoder-decoders: served to look inside ---------------------------------------------------

@pytest.fixture(scope="module")
def lookers(tmp_path_factory):
    """An encoder and an encoder-decoder (the dates), trained a few steps, served as `tinygpt serve` loads them."""
    from tinygpt.serve.server import load_runs

    folder = tmp_path_factory.mktemp("lookers")
    tinygpt.train(data="rhyme", out=str(folder / "enc"), arch="encoder", max_iters=5, n_layer=1, n_head=2,
                  n_embd=16, block_size=8, batch_size=4, threads=1, progress=False, sample_tokens=0)
    tinygpt.train(preset="seq2seq-demo", out=str(folder / "dates"), n_embd=16, n_head=2, n_layer=1, max_iters=10,
                  eval_interval=10, threads=1, progress=False, sample_tokens=0)
    engine = Engine(load_runs([folder / "enc", folder / "dates"])).start()
    yield folder, engine, TestClient(create_app(engine, quiet=True))
    engine.stop()


def test_an_encoder_decoder_shows_what_each_target_token_read_of_the_source(lookers, capsys, tmp_path):
    folder, engine, client = lookers
    view = client.post("/inside", json={"model": "dates", "text": "1987-11-05"}).json()
    dates = engine.runs["dates"]
    written = dates.translate("1987-11-05", max_new_tokens=dates.model_config.block_size - 1)
    assert view["written"] == written and view["tokens"][-1] == "<|eos|>"
    assert main(["inspect", str(folder / "dates"), "--source", "1987-11-05", "--target", written,
                 "--cross-attention", str(tmp_path / "x.png"), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert view["columns"] == want["columns"] and view["tokens"] == want["rows"]
    assert view["attention"] == want["weights"]  # (n_layer, n_head, target, source), as inspect prints it
    assert client.post("/inside", json={"model": "dates", "text": "1987-11-05", "layer": 1}).json() == \
        {"layer": 1, "attention": want["weights"][0]}


def test_models_that_write_no_text_are_served_to_look_inside_only(lookers):
    _, _, client = lookers
    described = {m["id"]: m["tinygpt"] for m in client.get("/v1/models").json()["data"]}
    assert described["enc"]["writes"] is False and described["dates"]["arch"] == "encoder-decoder"
    for model in ("enc", "dates"):
        r = client.post("/v1/completions", json={"model": model, "prompt": "mary", "max_tokens": 3})
        assert r.status_code == 400 and "served for the playground's Inside mode (/inside) only" in \
            r.json()["error"]["message"] and r.json()["error"]["param"] == "model"
    assert client.post("/inside", json={"model": "enc", "text": "mary had a"}).json()["causal"] is False


def test_a_new_run_of_another_shape_in_the_watched_folder_is_said_not_loaded(short_run):
    engine, watcher = watched(short_run)
    try:
        watcher.stop()
        assert main(["train", "--data", "rhyme", "--out", str(short_run), "--overwrite", "--max-iters", "10",
                     *[a if a != "16" else "24" for a in TINY]]) == 0  # n_embd 24 now
        assert watcher.look() is False and "restart tinygpt serve" in watcher.status()["problem"]
        assert watcher.step == 20  # the old weights go on being served
    finally:
        watcher.stop()
        engine.stop()


def test_millionths_are_the_same_six_decimals_as_whole_numbers(client):
    floats = client.post("/inside", json={"text": TEXT, "layer": 2}).json()["attention"]
    whole = client.post("/inside", json={"text": TEXT, "layer": 2, "millionths": True}).json()["attention"]
    assert whole == [[[round(w * 1e6) for w in row] for row in head] for head in floats]
    assert all(isinstance(n, int) for head in whole for row in head for n in row)


def test_watching_a_file_is_one_line_not_a_wait_for_ever(capsys, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("mary had a little lamb\n")
    assert main(["serve", str(text), "--watch", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tinygpt: error: {text} is a file, not a run directory; give the --out of a tinygpt train"]
