"""When to ask a provider about a batch again: an adaptive schedule of status polls.

A batch of a few requests often ends within a minute, one of fifty thousand
within hours. A fixed wait between polls is either wasteful for the second or
slow for the first: a 30 s wait collects a batch that ended after 5 s only
25 s later. The schedule therefore starts short and grows::

    first_poll, times 1.25 up to poll_interval, then times 1.5 up to max_poll_interval

so a small batch is collected within seconds of ending, while a long one is
asked about at most once per ``max_poll_interval`` after a while. A provider
that says when to ask again (Anthropic sends ``retry-after`` with every
answer about a batch in progress) is never asked sooner than that.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PollSchedule"]

#: Growth per poll below ``poll_interval``: from 2 s, a batch ending in its
#: first 20 s is collected within 7 s, one ending in its first minute within
#: 15 s; the wait reaches 30 s after about two and a half minutes, in 13 polls.
FAST_GROWTH = 1.25
#: Growth per poll from ``poll_interval`` on, up to ``max_poll_interval``.
SLOW_GROWTH = 1.5


@dataclass(slots=True)
class PollSchedule:
    """The waits between the status polls of one batch.

    Attributes:
        first: seconds before the first poll after the batch was created.
        interval: the wait the schedule grows to quickly (``batch.poll_interval``).
        ceiling: the longest wait (``batch.max_poll_interval``).
    """

    first: float
    interval: float
    ceiling: float
    _next: float = 0.0

    def __post_init__(self) -> None:
        self.interval = max(self.interval, 0.0)
        self.first = min(self.first, self.interval) if self.first > 0 else self.interval
        self.ceiling = max(self.ceiling, self.interval)
        self._next = self.first

    def next_wait(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next poll; never less than ``retry_after``.

        Each call advances the schedule by one poll.
        """
        wait = self._next
        if self._next < self.interval:
            self._next = min(self._next * FAST_GROWTH, self.interval)
        else:
            self._next = min(self._next * SLOW_GROWTH, self.ceiling)
        if retry_after is not None and retry_after > wait:
            return retry_after
        return wait
