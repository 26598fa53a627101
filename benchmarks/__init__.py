"""Benchmark harness and Locust load test for modelserve.

``python -m benchmarks.run`` starts real servers on 127.0.0.1, drives them with wrk and writes
``benchmarks/results/latest.md`` and ``latest.json``. See ``benchmarks/README.md``.
"""
