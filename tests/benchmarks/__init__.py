"""Benchmarks: throughput, CPU overhead, memory and start-up, side by side with SDKs and peers.

Not part of the default ``pytest`` run. Run them all from the repository root with
``python -m tests.benchmarks.run_all`` (``--quick`` for smaller sizes), or one with
``python -m tests.benchmarks.bench_batch`` (and ``bench_immediate``, ``bench_memory``,
``bench_startup``).
"""
