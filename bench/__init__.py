"""Benchmarks that print figures beside their targets (docs/performance.md) and write JSON to
``bench/results/``.

``make bench`` runs them all (``python -m bench.run_all``); each also runs alone
(``python -m bench.scale``, ``bench.reaction``, ``bench.drain``, ``bench.economy``). Figures only: the
tests never assert on timing.
"""
