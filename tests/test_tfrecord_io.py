"""Our C++-backed TFRecord read and write against Beam's own TFRecord I/O, byte for byte."""
import glob
import gzip
import os

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.testing import test_pipeline
from apache_beam.testing.util import assert_that, equal_to
import tensorflow as tf

from components import tfrecord_io

# An empty record, binary bytes with NULs, a serialized Example and one record of 300 KB (larger
# than the writer's and the reader's buffers).
RECORDS = [b"", b"\x00\x01\xff\x00", tf.train.Example().SerializeToString(),
           bytes(range(256)) * 1200] + [f"row {i}".encode() for i in range(1000)]


def write_with(write, prefix, records=RECORDS):
    with test_pipeline.TestPipeline() as p:
        _ = p | beam.Create(records) | write(prefix)
    return sorted(glob.glob(prefix + "*"))


class TFRecordIOTest(tf.test.TestCase):

    def test_write_same_bytes_as_beam(self):
        tmp = self.get_temp_dir()
        ours = write_with(tfrecord_io.WriteGzipTFRecords, os.path.join(tmp, "ours", "data"))
        beams = write_with(lambda prefix: beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz"),
                           os.path.join(tmp, "beam", "data"))
        self.assertEqual([os.path.basename(f) for f in ours], ["data-00000-of-00001.gz"])
        self.assertEqual([os.path.basename(f) for f in beams], ["data-00000-of-00001.gz"])
        with gzip.open(ours[0]) as a, gzip.open(beams[0]) as b:
            self.assertEqual(a.read(), b.read())  # framing, lengths and CRCs included

    def test_no_record_gives_one_empty_file_as_beam(self):
        tmp = self.get_temp_dir()
        ours = write_with(tfrecord_io.WriteGzipTFRecords, os.path.join(tmp, "ours", "data"), [])
        beams = write_with(lambda prefix: beam.io.WriteToTFRecord(prefix, file_name_suffix=".gz"),
                           os.path.join(tmp, "beam", "data"), [])
        self.assertEqual([os.path.basename(f) for f in ours], [os.path.basename(f) for f in beams])
        self.assertEqual(os.listdir(os.path.join(tmp, "ours")), ["data-00000-of-00001.gz"])
        with gzip.open(ours[0]) as a:
            self.assertEqual(a.read(), b"")

    def test_finalize_names_the_reported_files_and_removes_the_rest(self):
        tmp = self.get_temp_dir()
        temp_dir = os.path.join(tmp, "out", "data-temp")
        os.makedirs(temp_dir)
        for name, records in (("b", [b"2", b"3"]), ("a", [b"1"]), ("retried", [b"x"])):
            with tf.io.TFRecordWriter(os.path.join(temp_dir, name), "GZIP") as writer:
                for record in records:
                    writer.write(record)
        names = tfrecord_io._finalize(  # pylint: disable=protected-access
            [os.path.join(temp_dir, "b"), os.path.join(temp_dir, "a")],
            os.path.join(tmp, "out", "data"), temp_dir)
        self.assertEqual(sorted(os.listdir(os.path.join(tmp, "out"))),
                         ["data-00000-of-00002.gz", "data-00001-of-00002.gz"])
        self.assertEqual(names, [os.path.join(tmp, "out", n) for n in sorted(os.listdir(
            os.path.join(tmp, "out")))])
        self.assertEqual([list(tf.data.TFRecordDataset(n, "GZIP").as_numpy_iterator())
                          for n in names], [[b"1"], [b"2", b"3"]])

    def test_beam_reads_what_we_write(self):
        files = write_with(tfrecord_io.WriteGzipTFRecords,
                           os.path.join(self.get_temp_dir(), "data"))
        with test_pipeline.TestPipeline() as p:
            got = p | beam.io.ReadFromTFRecord(files[0], compression_type=CompressionTypes.GZIP)
            assert_that(got, equal_to(RECORDS))

    def test_we_read_what_beam_writes_from_every_file(self):
        tmp = self.get_temp_dir()
        with test_pipeline.TestPipeline() as p:
            _ = (p | beam.Create(RECORDS)
                 | beam.io.WriteToTFRecord(os.path.join(tmp, "data"), file_name_suffix=".gz",
                                           num_shards=3))
        self.assertLen(glob.glob(os.path.join(tmp, "data-*")), 3)
        with test_pipeline.TestPipeline() as p:
            got = p | tfrecord_io.ReadGzipTFRecords(sorted(glob.glob(os.path.join(tmp, "data-*"))))  # pylint: disable=no-value-for-parameter
            assert_that(got, equal_to(RECORDS))

    def test_no_file_is_an_error(self):
        with self.assertRaisesRegex(ValueError, "no TFRecord files to read"):
            with test_pipeline.TestPipeline() as p:
                _ = p | tfrecord_io.ReadGzipTFRecords([])  # pylint: disable=no-value-for-parameter


if __name__ == "__main__":
    tf.test.main()
