"""Make docs/inside.png and docs/inside_watch.png: the playground's Inside mode in headless Chromium.

    python docs/inside_screenshots.py [--out docs]

inside.png: the rhyme model (trained here as `tinygpt train` does) looking at "mary had a little lamb",
layer 2 head 1 enlarged and the token "little" hovered. inside_watch.png: `tinygpt serve RUN --watch` on a
rhyme model that `tinygpt train --eval-interval 50` is still writing, taken once the page shows step 600
or later. Drives Debian's /usr/bin/chromium and /usr/bin/chromedriver with Selenium, as the tests do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # browsing: the tests' Chromium

from browsing import browser, wait  # noqa: E402

import tinygpt  # noqa: E402
from tinygpt.serve.app import create_app  # noqa: E402
from tinygpt.serve.engine import Engine  # noqa: E402
from tinygpt.serve.server import Server, load_runs  # noqa: E402
from tinygpt.serve.watch import Watcher  # noqa: E402

TRAIN = [sys.executable, "-m", "tinygpt", "train", "--no-progress", "--sample-tokens", "0", "--threads", "1"]


def shoot(run_dir: Path, out: Path, size: tuple[int, int], watch: bool, ready, then=None):
    engine = Engine(load_runs([run_dir], checkpoint="latest" if watch else "best")).start()
    watchers = {run_dir.name: Watcher(engine, run_dir.name, run_dir).start()} if watch else {}
    server = Server(create_app(engine, quiet=True, local_only=True, watchers=watchers), "127.0.0.1", 0).start()
    driver = browser()
    try:
        driver.set_window_size(*size)
        driver.get(server.url + "/#inside")
        wait(lambda: ready(driver), 120)
        if then is not None:
            then(driver)
        driver.execute_script("window.scrollTo(0, 0)")
        time.sleep(0.3)
        if not driver.save_screenshot(str(out)):
            raise SystemExit(f"could not write {out}")
        print(f"wrote {out} (tinygpt {tinygpt.__version__})")
    finally:
        driver.quit()
        server.stop()
        for watcher in watchers.values():
            watcher.stop()
        engine.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    from selenium.webdriver import ActionChains

    work = Path(tempfile.mkdtemp(prefix="tinygpt-shots-"))
    rhyme = work / "rhyme"
    subprocess.run([*TRAIN, "--out", str(rhyme)], check=True, capture_output=True)

    def hover(driver):
        driver.find_element("css selector", "canvas.map[data-layer='1'][data-head='0']").click()
        ActionChains(driver).move_to_element(driver.find_elements("css selector", "#inside-tokens .chip")[3]).perform()

    shoot(rhyme, args.out / "inside.png", (1280, 2050), False,
          lambda d: d.find_element("id", "inside").get_attribute("data-ready") == "1", hover)

    watched = work / "watched"
    training = subprocess.Popen([*TRAIN, "--out", str(watched), "--eval-interval", "50"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (watched / "checkpoints" / "latest.safetensors").exists():
        time.sleep(0.05)
    shoot(watched, args.out / "inside_watch.png", (1280, 900), True,
          lambda d: int(d.find_element("id", "inside").get_attribute("data-step") or 0) >= 600)
    training.wait()


if __name__ == "__main__":
    main()
