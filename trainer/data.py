"""Loading transformed splits into memory (they are small enough for the protocol's data sets).

Rows come back in a canonical order (sorted by every column but the user histories), because
Beam writes them in an order that can change from run to run; with it, a seed fixes the batches.
A history is a function of the row's user and time, so rows equal in the other columns have equal
histories, and turning histories on does not reorder the rows.
"""
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf


def load_files(files: Sequence[str], feature_spec: Dict[str, tf.io.FixedLenFeature],
               batch_size: int = 16384) -> Dict[str, np.ndarray]:
    """All rows of GZIP TFRecord files of tf.Examples, parsed with `feature_spec`, as numpy."""
    if not files:
        raise FileNotFoundError("no input files")
    dataset = (tf.data.TFRecordDataset(list(files), compression_type="GZIP")
               .batch(batch_size).map(lambda x: tf.io.parse_example(x, feature_spec)))
    chunks = {name: [] for name in feature_spec}
    for batch in dataset.as_numpy_iterator():
        for name, value in batch.items():
            chunks[name].append(value)
    if not chunks or not next(iter(chunks.values())):
        raise ValueError(f"no rows in {list(files)}")
    arrays = {name: np.concatenate(parts) for name, parts in chunks.items()}
    return canonical_order(arrays)


def canonical_order(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    keys = []
    for name in sorted(arrays):
        if name.startswith("hist_"):  # user histories: see the module docstring
            continue
        column = arrays[name]
        keys.extend(column.reshape(len(column), -1).T[::-1])
    order = np.lexsort(keys[::-1]) if keys else np.arange(0)
    return {name: column[order] for name, column in arrays.items()}
