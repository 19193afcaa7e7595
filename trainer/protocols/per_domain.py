"""`per_domain`: several domains (scenarios), some of them cold, judged per domain (Diff-MSR,
diff_msr.md 2.1, 2.3 and 13).

Every row names its domain in `domain_field`. Splits `train` / `validation` / `test`:
- `assign: files`: the log's own files decide. `files` maps file names and patterns (fnmatch)
  to a split: a file's own name wins over patterns, and the patterns that match a file must
  agree (order does not count). The row's file name is read from `file_field`, which the data
  set's config must name (`file_field: source_file` in dataset.yaml; the run checks it before
  any work). A row whose file matches no pattern, or patterns that disagree, stops the run.
  Douban ships train/val/test files per domain (its movie train file is missing: spec 2.3 (b)
  maps movie_val to train and movie_test to test, which leaves movie without validation rows;
  the statistics list such holes).
- `assign: random`: per domain, rows ordered by a seeded hash of (domain, user, item, timestamp,
  label): the first floor(train_fraction * n) are train, the next floor(validation_fraction * n)
  validation, the rest test. 8:1:1 with floors reproduces the shipped Douban files' sizes
  (music 3,123 -> 2,498 / 312 / 313; book 96,041 -> 76,832 / 9,604 / 9,605).
`cold_domains` names the cold ones (Diff-MSR: music on Douban). Stages: evaluation of the
pretrained model on all domains, then, if there are cold domains, adaptation of each cold domain's
own parameters on its train rows and evaluation again. The slice is the domain.

view `tuning` (issue 17; Diff-MSR's options, chosen on validation data; the objective is the
cold domains' AUC, diff_msr.md 10 and 13): the final view's `validation` rows are `test`, its
`test` rows are written nowhere (stats `withheld`), and its `train` rows are split again per
domain: in the order of `order_key` (with `seed`), the last floor(validation_fraction * n_train)
are `validation` (Diff-MSR stops early on validation log-loss, diff_msr.md 7 and 12.10), the
others `train`. Tuning never reads the final test rows.
"""
import fnmatch
import hashlib
import json
import math
from fractions import Fraction
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

from trainer.protocols import Protocol, SplitResult, Stage, register

SPLITS = ("train", "validation", "test")


def order_key(seed: int, domain: str, user: str, item: str, timestamp: int, label: int) -> int:
    """The seeded position of a row in its domain's draw: the first 63 bits of sha256 (a signed
    64-bit integer, as Beam's coders want)."""
    text = "\x1f".join(str(v) for v in (seed, domain, user, item, timestamp, label))
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") >> 1


def share(fraction: float, n: int) -> int:
    """floor(fraction * n), exactly (from the fraction's decimal text: 0.1 of 10 is 1)."""
    return math.floor(Fraction(str(fraction)) * n)


def draw_sizes(n: int, train_fraction: float, validation_fraction: float) -> Tuple[int, int]:
    """(train rows, validation rows) of a domain of n rows; test takes the rest."""
    return share(train_fraction, n), share(validation_fraction, n)


def drawn_splits(n: int, train_fraction: float, validation_fraction: float) -> List[str]:
    """Split names of a domain's n rows in draw order."""
    train, validation = draw_sizes(n, train_fraction, validation_fraction)
    return ["train"] * train + ["validation"] * validation + ["test"] * (n - train - validation)


def tuning_splits(n_train: int, validation_fraction: float) -> List[str]:
    """The tuning view's split names of a domain's n_train final train rows in draw order."""
    validation = share(validation_fraction, n_train)
    return ["train"] * (n_train - validation) + ["validation"] * validation


def file_split(path: str, files: Mapping[str, str]) -> str:
    """The split of a row read from `path` (its base name is matched). An exact file name in
    `files` wins over the patterns that match it; otherwise the matching patterns must agree.
    The mapping's order does not count: configs travel as JSON with sorted keys."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    if name in files:
        return files[name]
    matches = {pattern: split for pattern, split in files.items()
               if fnmatch.fnmatchcase(name, pattern)}
    if not matches:
        raise ValueError(f"protocol per_domain: file {name!r} matches none of the patterns "
                         f"{sorted(files)} of `files`")
    if len(set(matches.values())) > 1:
        raise ValueError(f"protocol per_domain: file {name!r} matches patterns {sorted(matches)} "
                         f"of `files` that name different splits; name the file itself to choose")
    return next(iter(matches.values()))


@register("per_domain")
class PerDomain(Protocol):
    defaults = {"domain_field": "domain", "cold_domains": [], "assign": "random",
                "files": {}, "file_field": "source_file", "train_fraction": 0.8,
                "validation_fraction": 0.1, "seed": 0, "domain_names": {}, "view": "final"}
    choices = {"assign": ("random", "files"), "view": ("final", "tuning")}
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

    def input_features(self) -> Dict[str, str]:
        p = self.params
        out = {p["domain_field"]: "domain_field"}
        if p["assign"] == "files":  # the data set's `file_field` (components/log_config.py)
            out[p["file_field"]] = "file_field, for assign=files: set `file_field` in the config"
        return out

    def slice_name(self, value: str) -> str:
        return self.params["domain_names"].get(value, value)

    def stages(self) -> List[Stage]:
        stages = [Stage("pretrained")]
        if self.params["cold_domains"]:
            stages.append(Stage("adapted", adapt_split="train", trains="domain",
                                adapt_where=(self.params["domain_field"],
                                             tuple(self.params["cold_domains"]))))
        return stages

    def tuning_objective(self, results, stages=None, metric: str = "auc") -> float:
        """The mean `metric` over the cold domains (Diff-MSR's primary figure, diff_msr.md 10 and
        13), or `overall` without cold domains, averaged over `stages` (default: the last)."""
        stages = list(stages or [self.stages()[-1].name])
        slices = [str(d) for d in self.params["cold_domains"]] or ["overall"]
        missing = sorted({d for s in stages for d in slices if d not in results[s]})
        if missing:
            raise ValueError(f"protocol per_domain: the tuning view's test split has no rows of "
                             f"the cold domains {missing} (the final view's validation rows)")
        return float(np.mean([np.mean([results[s][d][metric] for d in slices]) for s in stages]))

    def _stats(self, counted: Mapping[Tuple[str, str], int]) -> Dict[str, Any]:
        """counted: rows per (split, domain); split `withheld` in the tuning view."""
        domains = sorted({d for _, d in counted})
        names = SPLITS + (("withheld",) if self.params["view"] == "tuning" else ())
        stats: Dict[str, Any] = {s: sum(n for (s2, _), n in counted.items() if s2 == s)
                                 for s in names}
        stats["domains"] = {d: {s: int(counted.get((s, d), 0)) for s in names} for d in domains}
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
            for indices in self._in_draw_order(rows, range(len(rows))):
                for index, name in zip(indices, drawn_splits(len(indices), p["train_fraction"],
                                                             p["validation_fraction"])):
                    out[index] = name
        if p["view"] == "tuning":
            train = [i for i, name in enumerate(out) if name == "train"]
            out = [{"validation": "test", "test": None}.get(name, name) for name in out]
            for indices in self._in_draw_order(rows, train):
                for index, name in zip(indices, tuning_splits(len(indices),
                                                              p["validation_fraction"])):
                    out[index] = name
        counted: Dict[Tuple[str, str], int] = {}
        for row, name in zip(rows, out):
            key = (name or "withheld", str(row[p["domain_field"]]))
            counted[key] = counted.get(key, 0) + 1
        return SplitResult(out, [{} for _ in rows], self._stats(counted))

    def _in_draw_order(self, rows, indices) -> List[List[int]]:
        """`indices` of `rows` grouped by domain, each group in draw order (order_key)."""
        p = self.params
        by_domain: Dict[str, List[int]] = {}
        for index in indices:
            by_domain.setdefault(str(rows[index][p["domain_field"]]), []).append(index)
        return [sorted(group, key=lambda i: order_key(p["seed"], domain, rows[i]["user_id"],  # pylint: disable=cell-var-from-loop
                                                      rows[i]["item_id"], rows[i]["timestamp"],
                                                      rows[i]["label"]))
                for domain, group in by_domain.items()]

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
        self._split_of = {}  # file -> split: resolved once per file, not per row

    def process(self, record: bytes):
        example = tf.train.Example.FromString(record)
        path = str(_feature(example, self._p["file_field"]))
        if path not in self._split_of:
            self._split_of[path] = file_split(path, self._p["files"])
        name = self._split_of[path]
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


class _Redraw(beam.DoFn):
    """The tuning view: (domain, [(order key, record)]) of final train rows -> records tagged
    train or validation."""

    def __init__(self, params):
        self._p = params

    def process(self, element):
        _, keyed = element
        ordered = sorted(keyed)
        for (_, record), name in zip(ordered, tuning_splits(len(ordered),
                                                            self._p["validation_fraction"])):
            yield beam.pvalue.TaggedOutput(name, record)


def _domain_key(name: str, record: bytes, params) -> Tuple[Tuple[str, str], int]:
    return (name, str(_feature(tf.train.Example.FromString(record), params["domain_field"]))), 1


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
            lambda r, name=name: _domain_key(name, r, p)) for name in SPLITS]
        keys = (routed.keys, *counted) | "AllKeys" >> beam.Flatten()
    if p["view"] == "tuning":
        redrawn = (routed["train"] | "TuningKeyed" >> beam.Map(_keyed, p)
                   | "GroupTrain" >> beam.GroupByKey()
                   | "Redraw" >> beam.ParDo(_Redraw(p)).with_outputs("train", "validation"))
        routed = {"train": redrawn.train, "validation": redrawn.validation,
                  "test": routed["validation"], "withheld": routed["test"]}
        keys = tuple(routed[name] | f"TuningKey[{name}]" >> beam.Map(
            lambda r, name=name: _domain_key(name, r, p)) for name in routed
                     ) | "TuningKeys" >> beam.Flatten()
    stats = (keys | "Count" >> beam.CombinePerKey(sum) | "ToDict" >> beam.combiners.ToDict()
             | "Complete" >> beam.Map(
                 lambda counted: json.dumps(protocol._stats(counted), sort_keys=True)))  # pylint: disable=protected-access
    return {name: routed[name] for name in SPLITS}, stats
