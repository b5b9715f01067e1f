"""Datasets: the contract (:mod:`.base`), the embedded and synthetic ones (:mod:`.builtin`)."""
from ..config import DataConfig
from ..registry import DATASETS
from .base import BatchDataset, DataError, IndexBatch, MultimodalDataset, Splits, split_in_memory
from . import builtin  # noqa: F401  (registers datasets)
from . import papers  # noqa: F401  (registers the paper datasets)


def build_splits(cfg: DataConfig) -> Splits:
    """Build the train/val/test splits of the dataset named in ``cfg``."""
    return DATASETS.get(cfg.name)(cfg)


def from_arrays(inputs, labels, num_classes=None, class_names=None, val_fraction=0.15, test_fraction=0.15,
                split_seed=0, name="arrays") -> Splits:
    """Python API for your own data: ``{modality: array [N, ...]}`` + labels -> stratified splits."""
    return split_in_memory(MultimodalDataset(inputs, labels, num_classes, class_names, name),
                           val_fraction, test_fraction, split_seed)


__all__ = ["BatchDataset", "DataError", "IndexBatch", "MultimodalDataset", "Splits", "build_splits", "from_arrays"]
