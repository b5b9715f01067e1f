"""Imbalance diagnostics: linear probes (with floor), clustering purity, discrepancy measures."""
from .probe import linear_probe_accuracy

__all__ = ["linear_probe_accuracy"]
