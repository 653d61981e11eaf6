"""Benchmarks (``bridge benchmark …``): each measures one ceiling with real processes on 127.0.0.1.

They are commands, not tests: run them on a quiet machine and read the figures.
"""
