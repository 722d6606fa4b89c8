"""The web page at ``/`` in a real browser (headless Chromium): look a word up, read the entry.

Skipped only when Chromium is not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_helpers import LiveServer

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and shutil.which("chromium") is None,
    reason="Chromium is not installed (apt-get install chromium; .ci/run does)",
)


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_the_page_looks_a_word_up_now_and_shows_its_entry(
    start_server: Callable[..., LiveServer], page: Any
) -> None:
    live = start_server(notice="the answers are synthetic placeholders")
    page.goto(live.url + "/")
    assert not page.is_visible("#notice")
    page.wait_for_selector("#batches td")
    assert page.inner_text("#batches") == "no batches yet"
    page.fill("#word", "harbour")
    page.click("#go")
    page.wait_for_selector("#entry h2", timeout=60_000)
    assert page.inner_text("#entry h2") == "harbour"
    definitions = page.locator("#entry .sense .definition").all_inner_texts()
    assert definitions and all(text.strip() for text in definitions)
    assert "synonyms:" in page.inner_text("#entry")
    assert page.inner_text("#status") == "harbour: done"
    assert page.inner_text("#notice") == "the answers are synthetic placeholders"
    # The spend and the ledger refresh after the lookup.
    page.wait_for_function("document.getElementById('spend').textContent.includes('paid calls')")
    assert live.emulator.billing()["immediate"]["requests"] > 0


def test_the_page_queues_a_batched_lookup_and_shows_the_entry_when_done(
    start_server: Callable[..., LiveServer], page: Any
) -> None:
    live = start_server()
    page.goto(live.url + "/")
    page.fill("#word", "lantern")
    page.check("#batch")
    page.click("#go")
    page.wait_for_selector("#entry h2", timeout=60_000)
    assert page.inner_text("#entry h2") == "lantern"
    assert page.inner_text("#status") == "lantern: done (batched)"
    page.wait_for_function("document.getElementById('batches').textContent.includes('batch_')")
    assert "completed" in page.inner_text("#batches")
    assert live.emulator.billing()["batch"]["requests"] > 0


def test_the_page_shows_a_refused_word_as_one_line(
    start_server: Callable[..., LiveServer], page: Any
) -> None:
    live = start_server()
    page.goto(live.url + "/")
    page.fill("#word", "12345")
    page.click("#go")
    page.wait_for_selector("#status.error")
    assert "no letter" in page.inner_text("#status")


def test_the_page_drops_the_answer_to_a_lookup_since_replaced(
    start_server: Callable[..., LiveServer], page: Any
) -> None:
    live = start_server()
    live.emulator.configure(latency=1.0)
    page.goto(live.url + "/")
    page.fill("#word", "kettle")
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent.includes('looking up')")
    page.fill("#word", "..")
    page.click("#go")
    page.wait_for_selector("#status.error")
    assert page.inner_text("#status") == "..: '..' has no letter: not a word"
    # kettle's answer comes later, and is not shown over what was asked since.
    page.wait_for_function(
        "fetch('/entries/kettle').then((r) => r.ok)", polling=200, timeout=60_000
    )
    page.wait_for_timeout(500)
    assert page.inner_text("#status") == "..: '..' has no letter: not a word"
    assert page.inner_text("#entry") == ""


def test_the_batches_table_shows_when_each_batch_was_made(
    start_server: Callable[..., LiveServer], page: Any
) -> None:
    live = start_server()
    page.goto(live.url + "/")
    page.fill("#word", "meadow")
    page.check("#batch")
    page.click("#go")
    page.wait_for_selector("#entry h2", timeout=60_000)
    page.wait_for_function("document.getElementById('batches').textContent.includes('batch_')")
    created = page.locator("#batches tr td:nth-child(5)").all_inner_texts()
    assert created and all(len(text) == 19 and text[4] == "-" for text in created), created
