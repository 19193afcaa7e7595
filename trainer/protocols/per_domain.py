"""`per_domain`: several domains (scenarios), some of them cold, judged per domain (Diff-MSR,
diff_msr.md 2.1, 2.3 and 13).

Every row names its domain in `domain_field`. Splits `train` / `validation` / `test`:
- `assign: files`: the log's own files decide. `files` maps file-name patterns (fnmatch, first
  match wins) to a split; the row's file name is read from `file_field`. A row whose file matches
  no pattern stops the run with its file name. Douban ships train/val/test files per domain
  (its movie train file is missing: spec 2.3 (b) maps movie_val to train and movie_test to test,
  which leaves movie without validation rows; the statistics list such holes).
- `assign: random`: per domain, rows ordered by a seeded hash of (domain, user, item, timestamp,
  label): the first floor(train_fraction * n) are train, the next floor(validation_fraction * n)
  validation, the rest test. 8:1:1 with floors reproduces the shipped Douban files' sizes
  (music 3,123 -> 2,498 / 312 / 313; book 96,041 -> 76,832 / 9,604 / 9,605).
`cold_domains` names the cold ones (Diff-MSR: music on Douban). Stages: evaluation of the
pretrained model on all domains, then, if there are cold domains, adaptation of each cold domain's
own parameters on its train rows and evaluation again. The slice is the domain.
"""
import fnmatch
import hashlib
import json
import math
from fractions import Fraction
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf

from trainer.protocols import Protocol, SplitResult, Stage, register

SPLITS = ("train", "validation", "test")


def order_key(seed: int, domain: str, user: str, item: str, timestamp: int, label: int) -> int:
    """The seeded position of a row in its domain's draw: the first 63 bits of sha256 (a signed
    64-bit integer, as Beam's coders want)."""
    text = "\x1f".join(str(v) for v in (seed, domain, user, item, timestamp, label))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def draw_sizes(n: int, train_fraction: float, validation_fraction: float) -> Tuple[int, int]:
    """(train rows, validation rows) of a domain of n rows; test takes the rest."""
    return (math.floor(Fraction(str(train_fraction)) * n),
            math.floor(Fraction(str(validation_fraction)) * n))


def drawn_splits(n: int, train_fraction: float, validation_fraction: float) -> List[str]:
    """Split names of a domain's n rows in draw order."""
    train, validation = draw_sizes(n, train_fraction, validation_fraction)
    return ["train"] * train + ["validation"] * validation + ["test"] * (n - train - validation)


def file_split(path: str, files: Mapping[str, str]) -> str:
    """The split of a row read from `path` (its base name is matched)."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    for pattern, split in files.items():
        if fnmatch.fnmatchcase(name, pattern):
            return split
    raise ValueError(f"protocol per_domain: file {name!r} matches none of the patterns "
                     f"{sorted(files)} of `files`")


@register("per_domain")
class PerDomain(Protocol):
    defaults = {"domain_field": "domain", "cold_domains": [], "assign": "random",
                "files": {}, "file_field": "source_file", "train_fraction": 0.8,
                "validation_fraction": 0.1, "seed": 0, "domain_names": {}}
    choices = {"assign": ("random", "files")}
    bounds = {"train_fraction": (0.0, 1.0), "validation_fraction": (0.0, 1.0)}
    splits = SPLITS
    pretrain_split = "train"
    validation_split = "validation"
    eval_split = "test"
    row_features = ()

    def __init__(self, **params):
        super().__init__(**params)
        self.slice_features = (self.params["domain_field"],)

    @classmethod
    def check(cls, params) -> None:
        p = params
        if p["train_fraction"] + p["validation_fraction"] > 1:
            raise ValueError("train_fraction + validation_fraction > 1")
        if p["assign"] == "files":
            if not p["files"]:
                raise ValueError("assign=files needs `files` (file-name pattern -> split)")
            wrong = sorted(set(p["files"].values()) - set(SPLITS))
            if wrong:
                raise ValueError(f"files map to unknown splits {wrong}; known: {list(SPLITS)}")

    def slice_name(self, value: str) -> str:
        return self.params["domain_names"].get(value, value)

    def stages(self) -> List[Stage]:
        stages = [Stage("pretrained")]
        if self.params["cold_domains"]:
            stages.append(Stage("adapted", adapt_split="train", trains="domain",
                                adapt_where=(self.params["domain_field"],
                                             tuple(self.params["cold_domains"]))))
        return stages

    def _stats(self, counted: Mapping[Tuple[str, str], int]) -> Dict[str, Any]:
        """counted: rows per (split, domain)."""
        domains = sorted({d for _, d in counted})
        stats: Dict[str, Any] = {s: sum(n for (s2, _), n in counted.items() if s2 == s)
                                 for s in SPLITS}
        stats["domains"] = {d: {s: int(counted.get((s, d), 0)) for s in SPLITS} for d in domains}
        stats["domains_without_rows"] = {s: [d for d in domains if not counted.get((s, d))]
                                         for s in SPLITS}
        stats["missing_cold_domains"] = [d for d in self.params["cold_domains"] if d not in domains]
        stats.update(self.params)
        return stats

    def split(self, rows: Sequence[Mapping[str, Any]]) -> SplitResult:
        """rows: dicts with the domain field, and the file field (assign=files) or user_id,
        item_id, timestamp, label (assign=random)."""
        p = self.params
        out: List[Any] = [None] * len(rows)
        if p["assign"] == "files":
            out = [file_split(r[p["file_field"]], p["files"]) for r in rows]
        else:
            by_domain: Dict[str, List[int]] = {}
            for index, row in enumerate(rows):
                by_domain.setdefault(str(row[p["domain_field"]]), []).append(index)
            for domain, indices in by_domain.items():
                indices.sort(key=lambda i: order_key(p["seed"], domain, rows[i]["user_id"],  # pylint: disable=cell-var-from-loop
                                                     rows[i]["item_id"], rows[i]["timestamp"],
                                                     rows[i]["label"]))
                for index, name in zip(indices, drawn_splits(len(indices), p["train_fraction"],
                                                             p["validation_fraction"])):
                    out[index] = name
        counted: Dict[Tuple[str, str], int] = {}
        for row, name in zip(rows, out):
            key = (name, str(row[p["domain_field"]]))
            counted[key] = counted.get(key, 0) + 1
        return SplitResult(out, [{} for _ in rows], self._stats(counted))

    def beam_split(self):
        return _PerDomainSplit(self)  # pylint: disable=no-value-for-parameter


def _feature(example: tf.train.Example, name: str) -> Any:
    feature = example.features.feature
    if name not in feature or not feature[name].WhichOneof("kind"):
        raise ValueError(f"protocol per_domain: a row has no feature {name!r}")
    values = getattr(feature[name], feature[name].WhichOneof("kind")).value
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else value


class _Assign(beam.DoFn):
    """assign=files: record -> (split, domain) tagged with its split."""

    def __init__(self, params):
        self._p = params

    def process(self, record: bytes):
        example = tf.train.Example.FromString(record)
        name = file_split(str(_feature(example, self._p["file_field"])), self._p["files"])
        yield beam.pvalue.TaggedOutput(name, record)
        yield beam.pvalue.TaggedOutput("keys", (name, str(_feature(example, self._p["domain_field"]))))


class _Draw(beam.DoFn):
    """assign=random: (domain, [(order key, record)]) -> records tagged with their split."""

    def __init__(self, params):
        self._p = params

    def process(self, element):
        domain, keyed = element
        ordered = sorted(keyed)  # by order key; ties (identical key fields) by the record bytes
        for (_, record), name in zip(ordered, drawn_splits(
                len(ordered), self._p["train_fraction"], self._p["validation_fraction"])):
            yield beam.pvalue.TaggedOutput(name, record)
        for name in SPLITS:
            yield beam.pvalue.TaggedOutput("keys", ((name, domain), 0))


def _keyed(record: bytes, params) -> Tuple[str, Tuple[int, bytes]]:
    example = tf.train.Example.FromString(record)
    domain = str(_feature(example, params["domain_field"]))
    return domain, (order_key(params["seed"], domain, *(_feature(example, f) for f in (
        "user_id", "item_id", "timestamp", "label"))), record)


@beam.ptransform_fn
def _PerDomainSplit(examples: beam.PCollection, protocol: PerDomain):
    """assign=files streams; assign=random groups each domain's rows on one worker (memory: the
    largest domain) to draw exact sizes."""
    p = protocol.params
    if p["assign"] == "files":
        routed = examples | "Assign" >> beam.ParDo(_Assign(p)).with_outputs(*SPLITS, "keys")
        keys = routed.keys | "One" >> beam.Map(lambda key: (key, 1))
    else:
        routed = (examples | "ByDomain" >> beam.Map(_keyed, p)
                  | "GroupDomains" >> beam.GroupByKey()
                  | "Draw" >> beam.ParDo(_Draw(p)).with_outputs(*SPLITS, "keys"))
        counted = [routed[name] | f"Key[{name}]" >> beam.Map(
            lambda r, name=name: ((name, str(_feature(tf.train.Example.FromString(r),
                                                      p["domain_field"]))), 1)) for name in SPLITS]
        keys = (routed.keys, *counted) | "AllKeys" >> beam.Flatten()
    stats = (keys | "Count" >> beam.CombinePerKey(sum) | "ToDict" >> beam.combiners.ToDict()
             | "Complete" >> beam.Map(
                 lambda counted: json.dumps(protocol._stats(counted), sort_keys=True)))  # pylint: disable=protected-access
    return {name: routed[name] for name in SPLITS}, stats
