"""One writer process of the concurrency test (run as a script, not collected).

Usage: python _store_worker.py DB WORKER_ID ROUNDS START_AT

Waits until START_AT (a Unix time) so that both processes open a fresh
database at the same moment, then interleaves every kind of write.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from plugins.store import CallRecord, JournalRequest, Shard, Store, StoredResult
from providers.types import Usage


def main() -> None:
    db, worker, rounds, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    time.sleep(max(0.0, start_at - time.time()))
    with Store(Path(db), busy_timeout=0.05) as store:
        for i in range(rounds):
            own = f"{worker}-{i}"
            shared = f"shared-{i}"
            store.add_requests(
                "openai",
                [JournalRequest(own, "m", "t", b"{}"), JournalRequest(shared, "m", "t", b"{}")],
            )
            store.add_shard(Shard(f"shard-{own}", "openai", "m", batch_id=f"batch-{own}"))
            store.set_request_state("openai", [own], "submitted", shard_id=f"shard-{own}")
            with store.in_transaction():
                store.put_results(
                    "openai",
                    [
                        StoredResult(own, "m", "t", "batch", worker, Usage(1, 1), 0.01),
                        StoredResult(shared, "m", "t", "batch", worker, Usage(1, 1), 0.01),
                    ],
                )
                store.set_request_state("openai", [own], "succeeded")
                store.record_calls(
                    [CallRecord("openai", "m", "t", "batch", own, Usage(1, 1), 0.01)]
                )
            store.update_shard(f"shard-{own}", state="collected")
            store.put_documents("docs", [(own, {"worker": worker, "i": i})])
            if i % 10 == 0:
                # Bulk writes too, so the lock is sometimes held for longer.
                store.put_results(
                    "openai",
                    [
                        StoredResult(f"{own}-bulk-{j}", "m", None, "batch", "x", Usage(), None)
                        for j in range(500)
                    ],
                )
    print("done", worker)


if __name__ == "__main__":
    main()
