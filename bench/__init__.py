"""Benchmarks: ratios against impacket and Samba measured in the same run (``python -m bench.bench_codec``)."""
