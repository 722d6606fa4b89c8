"""What every executor of one batch strategy shares, made from the strategy's context."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from plugins.batch.events import HookEvents
from plugins.batch.interfaces import ExecutorKit
from plugins.batch.polling import PollSchedule
from plugins.batch.queuecap import QueueRoom, shard_tokens

if TYPE_CHECKING:
    from plugins.batch.cleanup import FileCleanup
    from plugins.batch.settlement import Settlement
    from plugins.registry import StrategyContext
    from providers.protocol import BatchEndpoint

__all__ = ["executor_kit"]


def executor_kit(
    context: StrategyContext,
    endpoint: BatchEndpoint,
    settlement: Settlement,
    cleanup: FileCleanup,
) -> ExecutorKit:
    """The endpoint, journal, settlement, observers, retry policy, queue room and polling
    schedule that each shard's executor is given (never the strategy itself)."""
    name = context.provider_name
    bset = context.settings.batch
    pset = context.settings.provider_settings(name)
    events = HookEvents(context.hooks, name)
    queue = QueueRoom(
        pset.enqueued_token_cap,
        pset.max_enqueued_tokens is not None or bool(pset.max_enqueued_tokens_by_model),
        (bset.poll_interval, bset.max_poll_interval),
        events.waiting_for_room,
    )
    return ExecutorKit(
        endpoint=endpoint,
        journal=context.store,
        settlement=settlement,
        events=events,
        retry=context.retry,
        queue=queue,
        cleanup=cleanup,
        # Held by an executor from journaling "submitting" until its batch is created.
        create_lock=asyncio.Lock(),
        polls=functools.partial(
            PollSchedule, bset.first_poll, bset.poll_interval, bset.max_poll_interval
        ),
        tokens=functools.partial(shard_tokens, context.store, name, estimate=queue.capped),
        estimated=functools.partial(shard_tokens, context.store, name, estimate=True),
        queue_full_as_quota=bool(context.spec.batch and context.spec.batch.queue_full_as_quota),
    )
