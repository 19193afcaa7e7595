"""tf.Example <-> Python dict conversion, and reading an Examples artifact split."""
import os
from typing import Any, Dict, Iterator, List

import tensorflow as tf


def to_example(features: Dict[str, Any]) -> tf.train.Example:
    """str/bytes -> bytes_list, int -> int64_list, float -> float_list; lists of those too.

    Fills the Example in place: 3x faster than building Feature messages (issue 12)."""
    example = tf.train.Example()
    feature_map = example.features.feature
    for name, value in features.items():
        kind = type(value)  # exact scalar types first: most cells are one of them
        if kind is str:
            feature_map[name].bytes_list.value.append(value.encode("utf-8"))
            continue
        if kind is int:
            feature_map[name].int64_list.value.append(value)
            continue
        if kind is float:
            feature_map[name].float_list.value.append(value)
            continue
        values = value if isinstance(value, (list, tuple)) else (value,)
        if all(isinstance(v, (str, bytes)) for v in values):
            entry = feature_map[name].bytes_list
            entry.SetInParent()  # an empty list is still a bytes_list
            entry.value.extend([v.encode("utf-8") if isinstance(v, str) else v for v in values])
        elif all(isinstance(v, (bool, int)) for v in values):
            feature_map[name].int64_list.value.extend(values)
        elif all(isinstance(v, (int, float)) for v in values):
            feature_map[name].float_list.value.extend(values)
        else:
            raise TypeError(f"feature {name!r}: unsupported value {value!r}")
    return example


def from_example(example: tf.train.Example) -> Dict[str, List[Any]]:
    """Inverse of to_example; every value comes back as a list (bytes stay bytes)."""
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[name] = list(getattr(feature, kind).value) if kind else []
    return out


def split_files(examples_uri: str, split: str) -> List[str]:
    """TFRecord files of one split of an Examples artifact (`Split-<name>/*`)."""
    pattern = os.path.join(examples_uri, f"Split-{split}", "*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no files for split {split!r} under {examples_uri}")
    return files


READ_BATCH = 4096  # records per tf.data batch: one C++ call each, not one per record


def read_gzip_records(path: str) -> Iterator[bytes]:
    """The records of one gzipped TFRecord file, in order."""
    dataset = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(READ_BATCH)
    for batch in dataset.as_numpy_iterator():
        yield from batch.tolist()


def read_records(examples_uri: str, split: str) -> Iterator[bytes]:
    for path in split_files(examples_uri, split):
        yield from read_gzip_records(path)
