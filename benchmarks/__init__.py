"""Benchmarks: workloads timed eager vs compiled vs numpy (see workloads.py)."""
