"""Gzipped TFRecord files read and written in Beam with TensorFlow's C++ record I/O (issue 12).

Beam's own `ReadFromTFRecord` / `WriteToTFRecord` frame, checksum and (de)compress every record in
Python, one zlib call per record. On 487,650 ML-1M rows, the item split (read, split, six writes)
took 32.2 s with them and 23.7 s with these (README, issue 12).
The records and their framing are the same bytes as Beam's (tests/test_tfrecord_io.py). Reading goes
through example_io.read_gzip_records, which example_io.read_records also uses.
Reading is one file per worker, as with the raw logs: shard large inputs into many files.
"""
from typing import Sequence

import apache_beam as beam
import tensorflow as tf
from apache_beam.io import filebasedsink
from apache_beam.io.filesystem import CompressionTypes

from components import example_io


class _GzipTFRecordSink(filebasedsink.FileBasedSink):
    """Beam's sharding, temp files and finalisation; tf.io.TFRecordWriter writes each shard."""

    def __init__(self, file_path_prefix: str):
        super().__init__(file_path_prefix, coder=beam.coders.BytesCoder(), file_name_suffix=".gz",
                         num_shards=0, shard_name_template=None,
                         mime_type="application/octet-stream",
                         compression_type=CompressionTypes.UNCOMPRESSED)  # the writer gzips

    def open(self, temp_path):
        return tf.io.TFRecordWriter(temp_path, options="GZIP")

    def write_encoded_record(self, file_handle, encoded_value):
        file_handle.write(encoded_value)

    def close(self, file_handle):
        file_handle.close()


@beam.ptransform_fn
def WriteGzipTFRecords(records: beam.PCollection, file_path_prefix: str):
    """Serialized records -> `<prefix>-SSSSS-of-NNNNN.gz`, as beam.io.WriteToTFRecord(prefix,
    file_name_suffix=".gz") names them."""
    return records | "Write" >> beam.io.Write(_GzipTFRecordSink(file_path_prefix))


@beam.ptransform_fn
def ReadGzipTFRecords(pipeline: beam.Pipeline, files: Sequence[str]):
    """Every record of the gzipped TFRecord `files` (at least one), e.g. example_io.split_files."""
    if not files:
        raise ValueError("no TFRecord files to read")
    return (pipeline | "Files" >> beam.Create(list(files))
            | "OneFilePerWorker" >> beam.Reshuffle()
            | "Records" >> beam.FlatMap(example_io.read_gzip_records))
