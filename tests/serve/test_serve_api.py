"""``lexibatch serve``'s API over HTTP: immediate and batched lookups, jobs, errors, the token."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from serve_helpers import LiveServer, wait_for_job

_PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d{1,10})?$")


@pytest.fixture
def live(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server()


@pytest.fixture
def client(live: LiveServer) -> httpx.Client:
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c  # type: ignore[misc]


def _one_line_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    message: str = body["error"]
    assert message and "\n" not in message
    return message


def test_an_immediate_lookup_returns_the_entry_and_stores_it(
    live: LiveServer, client: httpx.Client
) -> None:
    response = client.post("/lookup/harbour")
    assert response.status_code == 200, response.text
    entry = response.json()["entry"]
    assert entry["word"] == "harbour"
    assert entry["definitions"], entry
    assert all(d["synonyms"] and d["examples"] for d in entry["definitions"])
    billing = live.emulator.billing()
    assert billing["immediate"]["requests"] > 0
    assert billing["batch"]["requests"] == 0

    stored = client.get("/entries/harbour")
    assert stored.status_code == 200
    assert stored.json()["entry"] == entry
    assert client.get("/entries/Harbour").json()["entry"] == entry

    # Asked again: every call comes from the store, nothing is billed twice.
    again = client.post("/lookup/harbour")
    assert again.json()["entry"] == entry
    assert live.emulator.billing()["immediate"]["requests"] == billing["immediate"]["requests"]


def test_a_word_in_other_capitals_is_answered_under_its_first_spelling_and_paid_once(
    live: LiveServer, client: httpx.Client
) -> None:
    first = client.post("/lookup/lantern")
    assert first.status_code == 200, first.text
    entry = first.json()["entry"]
    billed = live.emulator.billing()["immediate"]["requests"]
    assert billed > 0

    for variant in ("Lantern", "LANTERN", "lanTern"):
        again = client.post(f"/lookup/{variant}")
        assert again.status_code == 200, again.text
        assert again.json()["entry"] == entry, variant
        assert client.get(f"/entries/{variant}").json()["entry"] == entry
    # A batch job in other capitals too: answered from the calls already made.
    job = client.post("/lookup/LanterN", params={"batch": "true"}).json()
    report = wait_for_job(client, job["url"])
    assert report["status"] == "done", report
    assert report["word"] == "lantern"
    assert report["entry"] == entry
    billing = live.emulator.billing()
    assert billing["immediate"]["requests"] == billed
    assert billing["batch"]["requests"] == 0
    assert billing["duplicates"] == 0


def test_reading_an_entry_or_a_refused_lookup_keeps_no_spelling(
    start_server: Callable[..., LiveServer],
) -> None:
    live = start_server(has_batch=False)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        assert client.get("/entries/MEADOW").status_code == 404
        assert client.post("/lookup/ANCHOR", params={"batch": "true"}).status_code == 409
        for word in ("meadow", "anchor"):
            response = client.post(f"/lookup/{word}")
            assert response.status_code == 200, response.text
            assert response.json()["entry"]["word"] == word


def test_an_older_stores_entry_answers_its_word_in_other_capitals_unpaid(
    start_server: Callable[..., LiveServer],
) -> None:
    import sqlite3

    first = start_server()
    with httpx.Client(base_url=first.url, timeout=60) as client:
        entry = client.post("/lookup/lantern").json()["entry"]
    first.stop()
    billed = first.emulator.billing()["immediate"]["requests"]
    # As a store made before spellings were kept: its entries, and no spelling.
    with sqlite3.connect(first.db) as db:
        db.execute("DELETE FROM documents WHERE namespace LIKE 'spellings%'")
    again = start_server()
    with httpx.Client(base_url=again.url, timeout=60) as client:
        response = client.post("/lookup/Lantern")
        assert response.status_code == 200, response.text
        assert response.json()["entry"] == entry
    assert again.emulator.billing()["immediate"]["requests"] == billed


def test_batched_lookups_are_queued_share_batches_and_finish_with_their_entries(
    start_server: Callable[..., LiveServer],
) -> None:
    # A linger long enough that the three lookups join the same rounds on a busy machine.
    live = start_server(linger=1.0)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        jobs = {}
        for word in ("anchor", "lantern", "meadow"):
            response = client.post(f"/lookup/{word}", params={"batch": "true"})
            assert response.status_code == 202, response.text
            body = response.json()
            assert body == {"job": body["job"], "status": "queued", "url": f"/jobs/{body['job']}"}
            jobs[word] = body["url"]
        for word, url in jobs.items():
            report = wait_for_job(client, url)
            assert report["status"] == "done", report
            assert report["entry"]["word"] == word
            assert client.get(f"/entries/{word}").json()["entry"] == report["entry"]
        billing = live.emulator.billing()
        assert billing["immediate"]["requests"] == 0
        assert billing["batch"]["requests"] > 0
        assert billing["duplicates"] == 0
        # The three words' calls went out together: each pipeline round is one batch.
        batches = client.get("/batches").json()["batches"]
        assert 1 <= len(batches) <= 3, batches
        assert sum(b["requests"] for b in batches) == billing["batch"]["requests"]


def test_a_job_reports_running_while_its_batch_is_out(
    start_server: Callable[..., LiveServer],
) -> None:
    live = start_server()
    live.emulator.configure(batch_seconds=1.0)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        url = client.post("/lookup/pebble", params={"batch": "true"}).json()["url"]
        seen = set()
        while (status := client.get(url).json()["status"]) not in ("done", "failed"):
            seen.add(status)
        assert status == "done"
        assert "running" in seen


def test_the_store_answers_entries_it_has_and_404_for_others(client: httpx.Client) -> None:
    message = _one_line_error(client.get("/entries/zyzzyvaqq"), 404)
    assert "zyzzyvaqq" in message


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/lookup/%20%20", 422, "empty"),
        ("/lookup/" + "a" * 200, 422, "at most 64"),
        ("/lookup/12345", 422, "no letter"),
        ("/lookup/%E2%80%8B", 422, "empty"),
        ("/lookup/word?batch=perhaps", 422, "batch"),
        ("/lookup/", 422, "empty"),
    ],
)
def test_bad_words_are_a_4xx_with_a_one_line_json_error(
    client: httpx.Client, path: str, status: int, says: str
) -> None:
    assert says in _one_line_error(client.post(path), status)


def test_an_unknown_job_is_a_404(client: httpx.Client) -> None:
    assert "no job" in _one_line_error(client.get("/jobs/0123456789abcdef"), 404)


def test_the_token_guards_the_post_routes_only(start_server: Callable[..., LiveServer]) -> None:
    live = start_server(token="s3cret")
    with httpx.Client(base_url=live.url, timeout=60) as client:
        assert "bearer token" in _one_line_error(client.post("/lookup/kettle"), 401)
        wrong = client.post("/lookup/kettle", headers={"Authorization": "Bearer nope"})
        assert _one_line_error(wrong, 401)
        assert live.emulator.billing()["immediate"]["requests"] == 0
        ok = client.post("/lookup/kettle", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        # Reading is open.
        assert client.get("/entries/kettle").status_code == 200
        assert client.get("/cost").status_code == 200


def test_batch_is_refused_when_the_provider_has_no_batch_endpoint(
    start_server: Callable[..., LiveServer],
) -> None:
    live = start_server(has_batch=False)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        response = client.post("/lookup/kettle", params={"batch": "true"})
        assert "no batch endpoint" in _one_line_error(response, 409)


def test_cost_and_batches_report_exact_money(live: LiveServer, client: httpx.Client) -> None:
    empty = client.get("/cost").json()
    assert empty["calls"] == 0 and empty["cost_usd"] == "0"
    url = client.post("/lookup/candle", params={"batch": "true"}).json()["url"]
    assert wait_for_job(client, url)["status"] == "done"
    client.post("/lookup/saddle")
    cost: dict[str, Any] = client.get("/cost").json()
    assert {r["mode"] for r in cost["rows"]} == {"batch", "immediate"}
    assert cost["calls"] == sum(r["calls"] for r in cost["rows"])
    for value in [cost["cost_usd"], cost["saved_usd"], *(r["cost_usd"] for r in cost["rows"])]:
        assert _PLAIN_DECIMAL.match(value), value
    assert cost["cost"].startswith("$")
    batch = client.get("/batches").json()["batches"][0]
    assert batch["provider"] == "openai" and batch["batch_id"].startswith("batch_")
    assert datetime.fromisoformat(batch["created_at"]).tzinfo is not None
    assert _PLAIN_DECIMAL.match(batch["cost_usd"]) and batch["paid_calls"] >= 1
    assert "raw" not in batch
    # What `lexibatch batches list --json` and `lexibatch cost --json` print, row for row.
    assert set(batch) >= {"shard_id", "state", "batch_status", "requests", "updated_at"}
    assert set(cost["rows"][0]) >= {"provider", "saved_usd", "immediate_cost_usd"}


def test_the_openapi_schema_describes_every_route(client: httpx.Client) -> None:
    schema = client.get("/openapi.json").json()
    assert {"/lookup/{word}", "/jobs/{job_id}", "/entries/{word}", "/batches", "/cost"} <= set(
        schema["paths"]
    )
    lookup = schema["paths"]["/lookup/{word}"]["post"]
    assert {"200", "202", "401", "422"} <= set(lookup["responses"])


def test_the_page_is_served_at_the_root(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="lookup"' in page.text


def test_a_job_the_provider_refuses_fails_with_its_error_and_so_does_a_lookup(
    live: LiveServer, client: httpx.Client
) -> None:
    live.emulator.configure(api_keys=["sk-not-the-one-configured"])
    url = client.post("/lookup/thimble", params={"batch": "true"}).json()["url"]
    report = wait_for_job(client, url)
    assert report["status"] == "failed" and report["entry"] is None
    assert report["error"] and "\n" not in report["error"]
    now = client.post("/lookup/thimble")
    # A key the provider refuses is the server's set-up, not the provider failing.
    assert "api key" in _one_line_error(now, 503).lower()
    assert client.get("/entries/thimble").status_code == 404


def test_the_sandbox_notice_goes_with_every_entry_and_the_page_shows_it(
    start_server: Callable[..., LiveServer],
) -> None:
    notice = "the answers are synthetic placeholders"
    live = start_server(notice=notice)
    with httpx.Client(base_url=live.url, timeout=60) as client:
        assert client.post("/lookup/kettle").json()["notice"] == notice
        assert client.get("/entries/kettle").json()["notice"] == notice
        url = client.post("/lookup/kettle", params={"batch": "true"}).json()["url"]
        assert wait_for_job(client, url)["notice"] == notice


def test_without_a_notice_entries_carry_none(client: httpx.Client) -> None:
    assert client.post("/lookup/kettle").json()["notice"] is None


def test_a_word_with_a_slash_is_looked_up_and_read_back(client: httpx.Client) -> None:
    # A word-list line like any other ("and/or"), sent as one path segment.
    looked = client.post("/lookup/and%2For")
    assert looked.status_code == 200, looked.text
    assert looked.json()["entry"]["word"] == "and/or"
    stored = client.get("/entries/and%2For")
    assert stored.status_code == 200 and stored.json()["entry"] == looked.json()["entry"]


def test_the_page_answers_head_and_the_batches_served_name_no_local_file(
    live: LiveServer, client: httpx.Client
) -> None:
    head = client.head("/")
    assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
    url = client.post("/lookup/pebble", params={"batch": "true"}).json()["url"]
    assert wait_for_job(client, url)["status"] == "done"
    batches = client.get("/batches").json()["batches"]
    assert batches and all("path" not in b and b["created_at"] for b in batches), batches
