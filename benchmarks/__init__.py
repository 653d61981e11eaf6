"""Benchmarks (``python -m benchmarks …`` from the repository root): each measures one ceiling with
real processes on 127.0.0.1. Not part of the installed package; ``bridge`` never imports them.

They are commands, not tests: run them on a quiet machine and read the figures.
"""
