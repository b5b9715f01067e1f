"""Imbalance diagnostics: linear probes (with floor), clustering purity, discrepancy measures."""
from .probe import linear_probe_accuracy
from .purity import clustering_purity, kmeans, purity

__all__ = ["clustering_purity", "kmeans", "linear_probe_accuracy", "purity"]
