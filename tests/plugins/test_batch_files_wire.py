"""Gemini's and Mistral's batches leave nothing at the provider once their results are stored."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from plugins.batch.cleanup import NAMESPACE
from plugins.factory import open_connector
from plugins.store import Store
from providers.emulator import Emulator, EmulatorConfig

GEMINI = "gemini-2.5-flash"
MISTRAL = "mistral-small-latest"
WORDS = ["swift", "slow", "quick", "bright", "dim", "late"]


class Word(BaseModel):
    word: str


def _gemini(make_settings: Any, emu: Emulator, **options: Any) -> Any:
    return make_settings(
        emu,
        provider="gemini",
        connector={"model": GEMINI},
        providers={"gemini": {"base_url": emu.base_url, **options}},
        batch={"max_retry_rounds": 0},
    )


def _mistral(make_settings: Any, emu: Emulator) -> Any:
    return make_settings(
        emu,
        provider="mistral",
        connector={"model": MISTRAL},
        providers={"mistral": {"base_url": emu.base_url + "/mistral"}},
        batch={"max_retry_rounds": 0},
    )


async def _run(settings: Any, words: list[str]) -> list[Any]:
    connector = open_connector(settings)
    try:
        connector.enable_batch_mode()
        pending = [asyncio.ensure_future(connector.structured(w, Word)) for w in words]
        await connector.execute_batch()
        return list(await asyncio.gather(*pending, return_exceptions=True))
    finally:
        await connector.aclose()


def _gemini_listing(emu: Emulator) -> tuple[list[str], list[str]]:
    """The names of the files and of the batches Gemini lists."""
    with httpx.Client(
        base_url=emu.base_url, headers={"x-goog-api-key": "gemini-test-dummy"}
    ) as http:
        files = http.get("/v1beta/files").json().get("files") or []
        batches = http.get("/v1beta/batches").json().get("operations") or []
    return [f["name"] for f in files], [b["name"] for b in batches]


def _gemini_delete(emu: Emulator, name: str) -> httpx.Response:
    with httpx.Client(
        base_url=emu.base_url, headers={"x-goog-api-key": "gemini-test-dummy"}
    ) as http:
        return http.delete(f"/v1beta/{name}")


def _mistral_call(emu: Emulator, method: str, path: str) -> httpx.Response:
    with httpx.Client(
        base_url=emu.base_url + "/mistral", headers={"Authorization": "Bearer k"}
    ) as http:
        return http.request(method, path)


def _mistral_files(emu: Emulator) -> dict[str, str]:
    """Mistral's batch files the emulator holds, by id: uploads, outputs, error files."""
    kinds = ("mistral_batch_request", "mistral_batch_result", "mistral_batch_error")
    return {fid: rec.purpose for fid, rec in emu.app.state.files.items() if rec.purpose in kinds}


def _journaled(settings: Any) -> list[str]:
    store = Store(str(settings.connector.db))
    try:
        return [key for key, _ in store.iter_documents(NAMESPACE)]
    finally:
        store.close()


def _answered(outcomes: list[Any]) -> int:
    return sum(isinstance(o, Word) for o in outcomes)


@pytest.mark.parametrize("inline_max_bytes", [0, None], ids=["file", "inline"])
async def test_gemini_batches_and_their_files_are_deleted_once_collected(
    make_settings: Any, inline_max_bytes: int | None
) -> None:
    with Emulator(EmulatorConfig(item_error=0.3, seed=5)) as emu:
        settings = _gemini(make_settings, emu, inline_max_bytes=inline_max_bytes)
        outcomes = await _run(settings, WORDS)
        assert 0 < _answered(outcomes) < len(WORDS)  # answers and errors, all stored
        (batch,) = emu.app.state.batches.values()
        if inline_max_bytes == 0:
            # The upload and the results file existed, and are gone with the batch.
            assert batch.get("gemini_results_made")
        assert _gemini_listing(emu) == ([], [])
        assert _journaled(settings) == []
        # The answers were stored before: the store gives them again, paying nothing.
        answered = [w for w, o in zip(WORDS, outcomes, strict=True) if isinstance(o, Word)]
        before = emu.billing()["batch"]["requests"]
        again = await _run(settings, answered)
        assert again == [o for o in outcomes if isinstance(o, Word)]
        assert emu.billing()["batch"]["requests"] == before


async def test_gemini_deleted_files_are_gone_as_gemini_says_it(make_settings: Any) -> None:
    from providers.gemini import GeminiProvider

    with Emulator(EmulatorConfig()) as emu:
        provider = GeminiProvider(api_key="gemini-test-dummy", base_url=emu.base_url)
        try:
            endpoint = provider.batch
            assert await endpoint.delete_file("files/neverwasthere") is False
            assert await endpoint.delete_file("batches/neverwasthere") is False
        finally:
            await provider.aclose()
        answer = _gemini_delete(emu, "files/neverwasthere")
        # The real API's answer for a file it does not have: a 403 that will not say.
        assert answer.status_code == 403
        assert answer.json()["error"]["status"] == "PERMISSION_DENIED"
        assert "may not exist" in answer.json()["error"]["message"]


async def test_mistral_jobs_leave_no_files_once_collected(make_settings: Any) -> None:
    with Emulator(EmulatorConfig(item_error=0.4, seed=3)) as emu:
        settings = _mistral(make_settings, emu)
        outcomes = await _run(settings, WORDS)
        assert 0 < _answered(outcomes) < len(WORDS)
        (job,) = [b for b in emu.app.state.batches.values() if b.get("wire") == "mistral"]
        output, error = job["mistral_files"][:2]
        assert output and error  # both an output and an error file were made
        assert _mistral_files(emu) == {}
        assert _journaled(settings) == []
        for file_id in (output, error):
            assert _mistral_call(emu, "GET", f"/v1/files/{file_id}").status_code == 404
            assert _mistral_call(emu, "DELETE", f"/v1/files/{file_id}").status_code == 404
        # The job still names them, as the real API's jobs do.
        job_view = _mistral_call(emu, "GET", f"/v1/batch/jobs/{job['id']}").json()
        assert (job_view["output_file"], job_view["error_file"]) == (output, error)


@pytest.mark.parametrize("provider", ["gemini", "mistral"])
async def test_a_failed_delete_is_a_warning_and_the_next_run_deletes_it(
    make_settings: Any, provider: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Emulator(EmulatorConfig()) as emu:
        settings = (
            _gemini(make_settings, emu, inline_max_bytes=0)
            if provider == "gemini"
            else _mistral(make_settings, emu)
        )
        state = emu.app.state
        refuse = state.delete_file

        def broken(file_id: str) -> bool:
            raise OSError("the file service is down")  # the emulator answers a 500

        state.delete_file = broken  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="lexibatch.batch"):
            outcomes = await _run(settings, WORDS[:3])
        # Every answer is kept and the run did not fail; the delete is left for later.
        assert _answered(outcomes) == 3
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert any("could not be deleted at the provider" in w for w in warnings), warnings
        assert len(_journaled(settings)) == 1
        left = _gemini_listing(emu)[0] if provider == "gemini" else list(_mistral_files(emu))
        assert left

        state.delete_file = refuse  # type: ignore[method-assign]
        again = await _run(settings, [*WORDS[:3], "new"])
        assert _answered(again) == 4
        assert _journaled(settings) == []
        if provider == "gemini":
            assert _gemini_listing(emu) == ([], [])
        else:
            assert _mistral_files(emu) == {}
