"""Corruption benchmarks, eps*, attacks and reports."""
