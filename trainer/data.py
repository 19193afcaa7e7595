"""Loading transformed splits into memory (they are small enough for the protocol's data sets)."""
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
    return {name: np.concatenate(parts) for name, parts in chunks.items()}
