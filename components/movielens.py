"""MovieLens parsing (pure functions) and the Beam-based ExampleGen executor.

Two on-disk layouts are read:
- ML-1M: `ratings.dat[.gz]`, `users.dat`, `movies.dat` with `::` separators (latin-1 text);
- ML-100K as shipped in the recbole wheel: `ml-100k.{inter,user,item}`, tab-separated with a
  typed header line.

Every rating becomes one tf.Example with the user and item features joined on:
user_id, gender, age, occupation, zip_code | item_id, year, title (tokens), genres |
timestamp, rating, label = 1[rating >= 4].
"""
import os
import re
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam
import tensorflow as tf
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor

from components import example_io

LABEL_THRESHOLD = 4
_WORD = re.compile(r"\w+")
_YEAR_AT_END = re.compile(r"\((\d{4})\)\s*$")


class BadRecord(ValueError):
    """A line that cannot be parsed; the message says why."""


def detect_layout(data_dir: str) -> Dict[str, str]:
    """Returns the file paths of the MovieLens layout found in `data_dir`, or raises."""
    names = set(tf.io.gfile.listdir(data_dir)) if tf.io.gfile.isdir(data_dir) else set()
    if {"ml-100k.inter", "ml-100k.user", "ml-100k.item"} <= names:
        files = {"layout": "ml-100k", "ratings": "ml-100k.inter", "users": "ml-100k.user",
                 "items": "ml-100k.item"}
    elif {"users.dat", "movies.dat"} <= names and names & {"ratings.dat", "ratings.dat.gz"}:
        ratings = "ratings.dat" if "ratings.dat" in names else "ratings.dat.gz"
        files = {"layout": "ml-1m", "ratings": ratings, "users": "users.dat", "items": "movies.dat"}
    else:
        raise FileNotFoundError(
            f"{data_dir!r} holds no MovieLens data: expected ml-100k.{{inter,user,item}} (recbole) "
            f"or ratings.dat[.gz] + users.dat + movies.dat (ML-1M); found {sorted(names) or 'nothing'}")
    return {k: (v if k == "layout" else os.path.join(data_dir, v)) for k, v in files.items()}


def _fields(line: str, sep: str, n: int) -> List[str]:
    parts = line.rstrip("\r\n").split(sep)
    if len(parts) != n:
        raise BadRecord(f"expected {n} fields separated by {sep!r}, got {len(parts)}")
    return parts


def _int(value: str, name: str) -> int:
    try:
        return int(float(value)) if "." in value else int(value)
    except ValueError:
        raise BadRecord(f"{name} is not a number: {value!r}") from None


def parse_rating(line: str, layout: str) -> Tuple[str, str, int, int]:
    """(user_id, item_id, rating, timestamp) of one ratings line."""
    sep = "::" if layout == "ml-1m" else "\t"
    user, item, rating, ts = _fields(line, sep, 4)
    if not user or not item:
        raise BadRecord("empty user or item id")
    rating_value = _int(rating, "rating")
    if not 1 <= rating_value <= 5:
        raise BadRecord(f"rating {rating_value} outside 1..5")
    return user, item, rating_value, _int(ts, "timestamp")


def parse_user(line: str, layout: str) -> Tuple[str, Dict[str, str]]:
    if layout == "ml-1m":
        user, gender, age, occupation, zip_code = _fields(line, "::", 5)
    else:
        user, age, gender, occupation, zip_code = _fields(line, "\t", 5)
    return user, {"gender": gender, "age": age, "occupation": occupation, "zip_code": zip_code}


def parse_item(line: str, layout: str) -> Tuple[str, Dict[str, Any]]:
    """Item features: year, title tokens (`\\w+`, case kept), genres."""
    if layout == "ml-1m":
        item, title, genres = _fields(line, "::", 3)
        match = _YEAR_AT_END.search(title)
        year = match.group(1) if match else ""
        title = title[:match.start()] if match else title
        genre_list = [g for g in genres.split("|") if g]
    else:
        item, title, year, genres = _fields(line, "\t", 4)
        genre_list = genres.split()
    return item, {"year": year, "title": _WORD.findall(title), "genres": genre_list}


def make_example(rating: Tuple[str, str, int, int], user: Dict[str, str],
                 item: Dict[str, Any]) -> tf.train.Example:
    user_id, item_id, rating_value, ts = rating
    return example_io.to_example({
        "user_id": user_id, "item_id": item_id, **user,
        "year": item["year"], "title": item["title"], "genres": item["genres"],
        "timestamp": ts, "rating": rating_value, "label": int(rating_value >= LABEL_THRESHOLD),
    })


def _decode(raw: bytes, layout: str) -> str:
    # ML-1M's movies.dat is latin-1; the recbole files are UTF-8.
    return raw.decode("latin-1" if layout == "ml-1m" else "utf-8")


def _read_table(pipeline, label, path, layout, parse, header):
    lines = pipeline | f"Read{label}" >> beam.io.ReadFromText(
        path, coder=beam.coders.BytesCoder(), skip_header_lines=1 if header else 0)
    return lines | f"Parse{label}" >> beam.Map(lambda raw: parse(_decode(raw, layout), layout))


class _JoinRating(beam.DoFn):
    """Parses a ratings line and joins user and item features (side inputs)."""

    def __init__(self, layout: str, path: str):
        self._layout = layout
        self._path = path

    def process(self, raw: bytes, users, items) -> Iterable[tf.train.Example]:
        try:
            line = raw.decode("utf-8")
            rating = parse_rating(line, self._layout)
        except (BadRecord, UnicodeDecodeError) as err:
            raise BadRecord(f"{self._path}: bad ratings line {raw[:200]!r}: {err}") from None
        if rating[0] not in users:
            raise BadRecord(f"{self._path}: user {rating[0]!r} is not in the users file")
        if rating[1] not in items:
            raise BadRecord(f"{self._path}: item {rating[1]!r} is not in the items file")
        yield make_example(rating, users[rating[0]], items[rating[1]])


@beam.ptransform_fn
@beam.typehints.with_input_types(beam.Pipeline)
@beam.typehints.with_output_types(tf.train.Example)
def MovieLensToExample(pipeline: beam.Pipeline, exec_properties: Dict[str, Any],
                       split_pattern: str) -> beam.PCollection:
    """Reads one MovieLens folder (`input_base`) and emits joined tf.Examples."""
    del split_pattern  # the layout is fixed; the three files are found by name
    files = detect_layout(exec_properties["input_base"])
    layout = files["layout"]
    header = layout == "ml-100k"
    users = _read_table(pipeline, "Users", files["users"], layout, parse_user, header)
    items = _read_table(pipeline, "Items", files["items"], layout, parse_item, header)
    ratings = pipeline | "ReadRatings" >> beam.io.ReadFromText(
        files["ratings"], coder=beam.coders.BytesCoder(), skip_header_lines=1 if header else 0)
    return ratings | "JoinFeatures" >> beam.ParDo(
        _JoinRating(layout, files["ratings"]), beam.pvalue.AsDict(users), beam.pvalue.AsDict(items))


class Executor(BaseExampleGenExecutor):
    """FileBasedExampleGen executor for MovieLens folders."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return MovieLensToExample
