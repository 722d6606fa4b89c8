"""An HTTP emulator of the OpenAI, Anthropic, Gemini and Mistral APIs (immediate and batch).

It is the offline sandbox, the target of the recorded-cassette tests, the
benchmarks and the fault tests. Objects match the real ones field for field;
answers are deterministic (seeded by the request body), schema-valid JSON
drawn from the request's JSON schema, with strings labelled ``synthetic``.

Python API::

    from providers.emulator import Emulator, EmulatorConfig
    with Emulator(EmulatorConfig(batch_seconds=0), state_dir=None, port=0) as emu:
        openai.OpenAI(base_url=emu.base_url + "/v1", api_key="x")
        anthropic.Anthropic(base_url=emu.base_url, api_key="x")
        emu.configure(rate_limit=0.2)
        emu.billing()

Command line: ``python -m providers.emulator --port P [--state DIR]
[--batch-seconds S] [--config JSON]`` (or ``lexibatch emulator``).

Routes:
    OpenAI: ``POST /v1/chat/completions``, ``POST /v1/responses``,
    ``POST /v1/files``, ``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``,
    ``POST /v1/batches``, ``GET /v1/batches`` (``limit``, ``after``),
    ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``.
    Anthropic: ``POST /v1/messages``, ``POST /v1/messages/batches``,
    ``GET /v1/messages/batches`` (``limit``, ``after_id``, ``before_id``),
    ``GET /v1/messages/batches/{id}``, ``GET /v1/messages/batches/{id}/results``,
    ``POST /v1/messages/batches/{id}/cancel``.
    Gemini (:mod:`providers.emulator.gemini`): ``POST /v1beta/models/{model}:generateContent``,
    ``POST /v1beta/models/{model}:batchGenerateContent``, ``GET /v1beta/batches``,
    ``GET /v1beta/batches/{id}``, ``POST /v1beta/batches/{id}:cancel``, the resumable
    ``POST /upload/v1beta/files``, ``GET /v1beta/files/{id}[:download]``.
    Mistral (:mod:`providers.emulator.mistral`), under ``/mistral``:
    ``POST /v1/chat/completions``, ``POST /v1/files``, ``GET /v1/files/{id}[/content]``,
    ``POST /v1/batch/jobs``, ``GET /v1/batch/jobs[/{id}]``, ``POST /v1/batch/jobs/{id}/cancel``.
    Both run their batches on the OpenAI batch engine (:mod:`providers.emulator.translated`).
    Controls: ``GET /_emulator/billing``, ``GET|POST /_emulator/config``,
    ``POST /_emulator/reset``, ``GET /_emulator/health``,
    ``GET /_emulator/batches/{id}/tokens`` (a batch's enqueued tokens by model,
    ``{"id", "tokens": {model: n}}``, as :mod:`providers.emulator.queuecap` counts them).

Authentication is checked like the real APIs: OpenAI wants
``Authorization: Bearer <anything non-empty>``, Anthropic wants ``x-api-key``
(or a bearer token) and ``anthropic-version``.

Faults (see :class:`EmulatorConfig` for the fractions) are decided from
``(seed, request body hash or custom_id, times already seen)``, so a retry of
the same request rolls again; :func:`providers.emulator.rng.roll` is the
function to predict them. A model name can also force a fault with a marker
after ``@`` (several may be chained, e.g. ``gpt-4o-mini@item-error@slow``);
``@NAME`` forces it every time, ``@NAME-once`` only the first time the request
(immediate: body; batch item: custom_id; batch: model + custom_ids) is seen:

    ``@fail-batch``      the batch ends ``failed`` with an ``errors`` list
                         (Anthropic: every item ``errored``)
    ``@expire``          the batch ends ``expired``; undone items are
                         ``batch_expired`` error lines (Anthropic: ``expired``)
    ``@cancel``          the batch ends ``cancelled``; undone items are
                         ``batch_cancelled`` lines (Anthropic: ``canceled``)
    ``@item-error``      the item is a 500 / 429 / ``request_timeout`` line in
                         the error file (Anthropic: ``errored``)
    ``@schema-invalid``  the content does not fit the requested schema
    ``@rate-limit``      an immediate call gets 429 with ``retry-after``
    ``@server-error``    an immediate call gets 500 or 503 (Anthropic 500 or 529)
    ``@slow``            an immediate call waits ``slow_seconds`` first

A batch that expires or is cancelled by a fault (marker, pattern or fraction)
has run its first ``partial_done`` items (rounded down) and never all of them:
at least one item of every such batch is hit, however small the batch (a
batch of one runs none). ``@fail-batch`` hits every item, ``@item-error`` and
``@schema-invalid`` each item they are named on.

The model in the answer echoes the request's model, markers included.

Billing (``GET /_emulator/billing``): ``{"immediate": {requests,
input_tokens, output_tokens, duplicates}, "batch": {...}, "by_key":
{"immediate": {body_hash: times billed}, "batch": {custom_id: times billed}},
"duplicates": N, "queue_refusals": N, "key_refusals": N}``. Only successful
answers are billed; error, expired and cancelled items are not.
``queue_refusals`` counts the batches refused for ``enqueued_token_limit``
since the emulator started (see :mod:`providers.emulator.queuecap`);
``key_refusals`` the OpenAI, Anthropic and Gemini calls refused for their API key
(``api_keys``).
"""

from providers.emulator.config import MARKERS, EmulatorConfig
from providers.emulator.runner import Emulator, serve

__all__ = ["MARKERS", "Emulator", "EmulatorConfig", "serve"]
