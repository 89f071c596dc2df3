"""`finsignal bench`: the throughput harness of issue 7 (rows 1-6, one run, same texts).

Lives in the source checkout (it needs bench/data and the train extra for the torch baselines);
``worker/bench_cli.py`` is the CLI entry point.
"""
