"""Evaluation protocols: how a log is split, what is trained and evaluated when, and by which
slices results are reported. One registry, one module per protocol (issue 16).

A protocol declares
- its parameters: `defaults` (every parameter with its default; the default's type is the
  parameter's type), `choices` (allowed values), `bounds` (inclusive (low, high), None = open)
  and `check(params)`, checked by the one option parser (trainer/options.py) when
  the protocol is built, before any work;
- its split names and their roles: `splits` (every split it writes, in order), `pretrain_split`,
  `validation_split` (for a Tuner; None if it has none), `eval_split`;
- its stages, in order (`stages()`): a name, the split a method may adapt on in that stage (or
  None), what may train then (`"item_table"`, `"domain"` or None) and the split it evaluates;
- its Tuner objective (`tuning_objective`, from a run of its `view: tuning`);
- its slice features (`slice_features`): written with every test prediction; `row_features` are
  the ones its split adds to every row (the rest come from the stage, e.g. `phase`), of which
  `model_features` are model inputs (numeric);
- its split, twice: `split(rows)`, the pure reference on an in-memory log of dicts, and
  `beam_split()`, a PTransform from serialized tf.Examples to ({split: serialized tf.Examples},
  a one-element PCollection with the statistics as a JSON string). Tests hold the two equal.

Adding a protocol: a module with a `Protocol` subclass decorated with `@register("name")`, and
its import at the end of this file.
"""
import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import numpy as np

from trainer import options

PROTOCOLS: Dict[str, Type["Protocol"]] = {}
TRAINS = ("item_table", "domain")  # what a stage may train, besides nothing (None)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One evaluation point. Before evaluating `evaluate_split`, a method may adapt on
    `adapt_split` (None: no adaptation), restricted to rows whose feature `adapt_where[0]` is in
    `adapt_where[1]` when given, training only `trains` (None: nothing)."""
    name: str
    adapt_split: Optional[str] = None
    trains: Optional[str] = None
    evaluate_split: str = "test"
    adapt_where: Optional[Tuple[str, Tuple[str, ...]]] = None


@dataclasses.dataclass
class SplitResult:
    """What a pure split returns for an input log of n rows.

    `splits[i]`: the split of row i, or None when the row is written nowhere (counted in `stats`);
    `features[i]`: the features the split adds to row i (e.g. `count`, `user_group`);
    `stats`: the statistics the Beam version writes as `split_stats.json`."""
    splits: List[Optional[str]]
    features: List[Dict[str, Any]]
    stats: Dict[str, Any]

    def rows(self, split: str) -> List[int]:
        """Indices of the input rows in `split`, in input order."""
        return [i for i, s in enumerate(self.splits) if s == split]


class Protocol:
    name = ""
    defaults: Dict[str, Any] = {}
    choices: Dict[str, Tuple[Any, ...]] = {}
    bounds: Dict[str, Tuple[Optional[float], Optional[float]]] = {}
    splits: Tuple[str, ...] = ()
    pretrain_split = ""
    validation_split: Optional[str] = None
    eval_split = "test"
    slice_features: Tuple[str, ...] = ()
    row_features: Tuple[str, ...] = ()
    model_features: Tuple[str, ...] = ()  # row features the backbones read (item_frequency: count)
    slice_values: Tuple[str, ...] = ()  # the slice values' order in reports (others: sorted, after)

    def __init__(self, **params):
        self.params = options.validate(type(self), params, label=f"protocol {self.name}")

    @classmethod
    def check(cls, params: Dict[str, Any]) -> None:
        """Checks across parameters (`params`: all of them); raises ValueError in one line."""

    def input_features(self) -> Dict[str, str]:
        """{example feature: why} for the features the split reads beyond user_id, item_id,
        timestamp and label, which every data set has; the run checks them before any work."""
        return {}

    def stages(self) -> List[Stage]:
        raise NotImplementedError

    def split(self, rows: Sequence[Mapping[str, Any]]) -> SplitResult:
        raise NotImplementedError

    def beam_split(self):
        raise NotImplementedError

    def slice_name(self, value: str) -> str:
        """How a slice-feature value is named in the report."""
        return value

    def report_slices(self, results: Mapping[str, Mapping[str, Any]]) -> Dict[str, Any]:
        """{stage: {slice: metrics}} (trainer/protocol.warm_up_and_evaluate) -> {slice: metrics},
        the report's columns: the stages when the stage is the slice (`phase`); otherwise the
        last stage's `overall` and slice values, earlier stages' prefixed `stage/`."""
        names = [s.name for s in self.stages()]
        names = [name for name in names if name in results]  # a run cut short has fewer
        if "phase" in self.slice_features:
            return {name: results[name]["overall"] for name in names}
        out = {}
        order = {value: index for index, value in enumerate(("overall", *self.slice_values))}
        for name in names:
            prefix = "" if name == names[-1] else f"{name}/"
            for key, value in sorted(results[name].items(),
                                     key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
                out[prefix + (key if key == "overall" else self.slice_name(key))] = value
        return out

    def tuning_objective(self, results: Mapping[str, Mapping[str, Mapping[str, float]]],
                         stages: Optional[Sequence[str]] = None, metric: str = "auc") -> float:
        """The Tuner's objective (higher is better) of one run of the tuning view, from its
        {stage: {slice: metrics}} (trainer/protocol.warm_up_and_evaluate): here the mean `metric`
        of the `overall` slice over `stages` (default: every stage)."""
        stages = list(stages or [s.name for s in self.stages()])
        return float(np.mean([results[s]["overall"][metric] for s in stages]))

    def describe(self) -> Dict[str, Any]:
        """Name, parameters, split roles, stages and slices, as JSON-ready values."""
        return {"name": self.name, "params": dict(self.params), "splits": list(self.splits),
                "pretrain_split": self.pretrain_split, "validation_split": self.validation_split,
                "eval_split": self.eval_split, "slice_features": list(self.slice_features),
                "row_features": list(self.row_features),
                "stages": [dataclasses.asdict(s) for s in self.stages()]}


def slice_column(feature: str) -> str:
    """The column holding the raw value of slice feature `feature` in the transformed data
    (trainer/preprocessing.py writes it beside the model's features)."""
    return f"slice_{feature}"


def slice_value(value) -> str:
    """A slice-feature value as text (tf.Example strings arrive as bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def register(name: str):
    def wrap(cls):
        PROTOCOLS[name] = cls
        cls.name = name
        return cls
    return wrap


def protocol_class(name: str) -> Type[Protocol]:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; known: {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name]


def build(name: str, **params) -> Protocol:
    """The protocol `name` with its parameters checked (ValueError in one line otherwise)."""
    return protocol_class(name)(**params)


# Registrations (imported last: they subclass Protocol).
from trainer.protocols import item_frequency, leave_last_out, per_domain  # noqa: E402,F401  pylint: disable=wrong-import-position,cyclic-import
