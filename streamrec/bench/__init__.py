"""Benchmarks behind ``streamrec bench``: they print figures and can write them as JSON."""
