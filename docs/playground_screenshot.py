"""Make docs/playground.png: the playground page in headless Chromium, a completion streamed, one token picked.

    python docs/playground_screenshot.py RUN [--prompt TEXT] [--seed N] [--token I] [--out docs/playground.png]

Serves RUN on a free port of 127.0.0.1 as `tinygpt serve` does, drives the page with Selenium
(Debian's /usr/bin/chromium and /usr/bin/chromedriver) and saves a PNG of the window.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import tinygpt
from tinygpt.serve.app import create_app
from tinygpt.serve.engine import Engine
from tinygpt.serve.server import Server, load_runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--prompt", default="ROMEO:")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--token", type=int, default=12, help="which generated token to pick (0-based)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "playground.png")
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver import ActionChains
    from selenium.webdriver.chrome.service import Service

    engine = Engine(load_runs([args.run])).start()
    server = Server(create_app(engine, quiet=True, local_only=True), "127.0.0.1", 0).start()
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,620"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(server.url + "/")
        time.sleep(0.5)
        for name, value in dict(prompt=args.prompt, max_tokens=args.max_tokens, seed=args.seed).items():
            box = driver.find_element("id", name)
            box.clear()
            box.send_keys(str(value))
        driver.find_element("id", "generate").click()
        while driver.find_element("id", "generate").get_attribute("disabled"):
            time.sleep(0.05)
        token = driver.find_elements("css selector", "#output .tok")[args.token]
        ActionChains(driver).move_to_element(token).perform()
        time.sleep(0.2)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out} (tinygpt {tinygpt.__version__})")
    finally:
        driver.quit()
        server.stop()
        engine.stop()


if __name__ == "__main__":
    main()
