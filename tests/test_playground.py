"""The playground page at / in a real browser (headless Chromium from the system packages, driven by
Selenium): both modes generate, the text arrives in pieces, and a token shows its probability."""

import math
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

from browsing import CHROMEDRIVER, CHROMIUM, browser, wait  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.serve.app import create_app  # noqa: E402
from tinygpt.serve.engine import Engine  # noqa: E402
from tinygpt.serve.server import Server  # noqa: E402

# Counts the separate moments at which the output changed: text that arrives in pieces changes it many times.
WATCH_OUTPUT = """
window.changes = 0;
new MutationObserver(() => { window.changes += 1; })
  .observe(document.getElementById('output'), {childList: true, subtree: true, characterData: true});
"""


@pytest.fixture(scope="module")
def page(char_run, chat_run):
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} with {CHROMEDRIVER}: apt-get install chromium chromium-driver")
    engine = Engine({"char": tinygpt.load(char_run), "chat": tinygpt.load(chat_run)}).start()
    server = Server(create_app(engine, quiet=True, local_only=True), "127.0.0.1", 0).start()
    driver = browser()
    try:
        driver.get(server.url + "/")
        wait(lambda: driver.find_elements("css selector", "#model option"))
        yield driver
    finally:
        driver.quit()
        server.stop()
        engine.stop()


def fill(driver, **fields):
    for name, value in fields.items():
        box = driver.find_element("id", name)
        box.clear()
        box.send_keys(str(value))


def generate(driver):
    driver.execute_script(WATCH_OUTPUT)
    driver.find_element("id", "generate").click()
    wait(lambda: not driver.find_element("id", "generate").get_attribute("disabled")
         and "tokens" in driver.find_element("id", "status").text)


def test_completion_mode_streams_the_completion_and_shows_each_tokens_probability(page, char_run):
    from selenium.webdriver import ActionChains

    fill(page, prompt="mary", max_tokens=120, temperature=1, seed=3, alternatives=3)
    generate(page)
    assert page.find_element("id", "error").text == ""
    run = tinygpt.load(char_run)
    want = run.generate("mary", max_new_tokens=120, temperature=1.0, seed=3)
    assert page.find_element("id", "output").get_attribute("textContent") == "mary" + want
    assert page.execute_script("return window.changes") > 3  # the text came in pieces, not at once
    assert "(max_tokens reached)" in page.find_element("id", "status").text

    tokens = page.find_elements("css selector", "#output .tok")
    assert "".join(t.get_attribute("textContent") for t in tokens) == want  # one piece per token
    ActionChains(page).move_to_element(tokens[4]).perform()
    shown = wait(lambda: page.find_element("id", "tokinfo-prob").text)
    import torch

    ids = run.encode("mary" + want[:4])
    with torch.no_grad():
        logits, _ = run.model(torch.tensor([ids]))
    p = torch.softmax(logits[0, -1], dim=-1)[run.encode(want[4])[0]].item()  # the 5th token's probability
    assert shown == f"{100 * p:.1f}%"
    top = [float(r.text.split()[-1].rstrip("%")) for r in page.find_elements("css selector", "#tokinfo-top tr")]
    assert len(top) == 3 and top == sorted(top, reverse=True)  # the likeliest three, likeliest first
    assert math.isclose(top[0], 100 * torch.softmax(logits[0, -1], dim=-1).max().item(), abs_tol=0.05)


def test_chat_mode_streams_the_assistants_reply(page, chat_run):
    from selenium.webdriver.support.select import Select

    Select(page.find_element("id", "model")).select_by_value("chat")
    page.find_element("id", "mode-chat").click()
    fill(page, user="mary", max_tokens=20, temperature=0.8, seed=4)
    generate(page)
    messages = page.find_elements("css selector", "#output .msg")
    assert [m.find_element("css selector", ".who").text.lower() for m in messages] == ["user", "assistant"]
    reply = tinygpt.load(chat_run).chat([{"role": "user", "content": "mary"}], max_new_tokens=20, temperature=0.8,
                                        seed=4)
    assert messages[1].find_elements("css selector", "div")[-1].get_attribute("textContent") == reply


def test_a_base_model_cannot_be_put_in_chat_mode(page):
    from selenium.webdriver.support.select import Select

    Select(page.find_element("id", "model")).select_by_value("char")
    assert page.find_element("id", "mode-chat").get_attribute("disabled")
    assert page.find_element("id", "mode-completion").get_attribute("aria-pressed") == "true"
