"""``python -m providers.emulator --port P [--state DIR] [--batch-seconds S] [--api-key K]...
[--enqueued-token-limit N] [--config JSON]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from providers.emulator.config import EmulatorConfig
from providers.emulator.runner import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m providers.emulator",
        description="Serve the OpenAI, Anthropic, Gemini and Mistral API emulator on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--state", type=Path, default=None, help="directory that survives restarts")
    parser.add_argument("--batch-seconds", type=float, default=None)
    parser.add_argument(
        "--enqueued-token-limit",
        type=int,
        default=None,
        help="tokens a model may have in batches not yet ended; past it batches are refused",
    )
    parser.add_argument("--config", default=None, help="JSON object of EmulatorConfig fields")
    parser.add_argument(
        "--api-key",
        action="append",
        default=None,
        help="a key to accept (repeatable); without it any key is accepted",
    )
    args = parser.parse_args(argv)
    fields = orjson.loads(args.config) if args.config else {}
    if args.api_key:
        fields["api_keys"] = args.api_key
    if args.batch_seconds is not None:
        fields["batch_seconds"] = args.batch_seconds
    if args.enqueued_token_limit is not None:
        fields["enqueued_token_limit"] = args.enqueued_token_limit
    serve(args.host, args.port, args.state, EmulatorConfig.model_validate(fields), ready=_say)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
