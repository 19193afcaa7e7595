"""Search spaces of cold-start methods' options, and the names of their hyperparameters (issue 17).
Pure: no TFX, no keras-tuner, no data.

A method class declares `search_space` beside its defaults: {option: spec}, with
  {"type": "float", "min": a, "max": b, "sampling": "linear" | "log"}
  {"type": "int", "min": a, "max": b, "step": s, "sampling": "linear" | "log"}  (step optional)
  {"type": "choice", "values": [v, ...]}
`check_space` holds a space to the method's options (the option exists, the spec's type is the
option's type, every value passes the option's choices and bounds) before any work; a YAML file
`{method: {option: spec}}` (`--search-space FILE`) replaces a method's declared space
(`search_spaces`).

Hyperparameters are named `<method label>.<option>` (e.g. `csdm.diff_coef`), so a saved
`best_hyperparameters` file (keras-tuner's `HyperParameters.get_config()` JSON, as the TFX Tuner
writes it) says which method it belongs to; `load_hyperparameters` turns it back into checked
options (`--hyperparameters FILE`). The search (keras-tuner): trainer/method_tuner.py.
"""
import json
import math
import os
import re
from typing import Any, Dict, Mapping, Optional, Sequence

import yaml

from trainer import options as options_lib

SPEC_KEYS = {"float": {"type", "min", "max", "sampling"},
             "int": {"type", "min", "max", "step", "sampling"},
             "choice": {"type", "values"}}
TUNERS = ("random", "bayesian", "hyperband")
OBJECTIVE = "objective"
HP_FILE = "best_hyperparameters.txt"  # the TFX Tuner's file name in its artifact


# -- search spaces ------------------------------------------------------------------------------
def _number(value, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)


def check_spec(cls, option: str, spec: Any) -> Dict[str, Any]:
    """`spec` of `option` of method class `cls`, checked and completed (sampling, step); raises
    ValueError (without the method's label)."""
    if option not in cls.defaults:
        raise ValueError(f"unknown option {option!r}; known: {sorted(cls.defaults)}")
    if not isinstance(spec, Mapping) or spec.get("type") not in SPEC_KEYS:
        raise ValueError(f"{option}: a spec is a mapping with type float, int or choice, "
                         f"not {spec!r}")
    kind = spec["type"]
    extra = set(spec) - SPEC_KEYS[kind]
    if extra:
        raise ValueError(f"{option}: unknown keys {sorted(extra)} for type {kind}; "
                         f"known: {sorted(SPEC_KEYS[kind])}")
    option_type = type(cls.defaults[option])
    if kind == "choice":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError(f"{option}: values must be a non-empty list, not {values!r}")
        if option_type in (list, dict):
            raise ValueError(f"{option} takes {options_lib.TYPE_NAMES[option_type]}: not searchable")
        checked = [options_lib.check_value(cls, option, v) for v in values]
        if len(set(checked)) < len(checked):
            raise ValueError(f"{option}: values repeat: {values}")
        return {"type": kind, "values": checked}
    if option_type is not (int if kind == "int" else float):
        raise ValueError(f"{option} takes {options_lib.TYPE_NAMES[option_type]}, not a range "
                         f"of {kind}s")
    low, high = spec.get("min"), spec.get("max")
    if not (_number(low, kind == "int") and _number(high, kind == "int")) or not low < high:
        raise ValueError(f"{option}: min and max must be {kind}s with min < max, "
                         f"not {low!r} and {high!r}")
    low, high = options_lib.check_value(cls, option, low), options_lib.check_value(cls, option, high)
    sampling = spec.get("sampling", "linear")
    if sampling not in ("linear", "log"):
        raise ValueError(f"{option}: sampling must be linear or log, not {sampling!r}")
    if sampling == "log" and low <= 0:
        raise ValueError(f"{option}: log sampling needs min > 0, not {low:g}")
    out = {"type": kind, "min": low, "max": high, "sampling": sampling}
    if kind == "int":  # step: added (linear, default 1) or multiplied (log, default none)
        step = spec.get("step", 1 if sampling == "linear" else None)
        if step is not None and (not _number(step, True) or step < (1 if sampling == "linear" else 2)):
            raise ValueError(f"{option}: step must be an integer >= 1 (>= 2 with log sampling), "
                             f"not {step!r}")
        out["step"] = step
    return out


def check_space(cls, space: Any, label: str,
                fixed: Optional[Mapping[str, Any]] = None) -> Dict[str, Dict[str, Any]]:
    """The checked search space of method `label` (class `cls`); `fixed`: its options set on the
    command line, which the search must not also vary. Raises ValueError naming `label`."""
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"search space {label}: a non-empty mapping option -> spec is needed, "
                         f"not {space!r}")
    both = sorted(set(space) & set(fixed or {}))
    if both:
        raise ValueError(f"search space {label}: {both} are both set (--set) and searched")
    out = {}
    for option, spec in space.items():
        try:
            out[option] = check_spec(cls, option, spec)
        except ValueError as err:
            raise ValueError(f"search space {label}: {err}") from None
    return out


def _read(path: str, flag: str, parse, errors, kind: str) -> Any:
    """`parse(file)` of the file at `path`; a missing file or a parse error is a one-line
    ValueError naming `flag`."""
    try:
        with open(path, encoding="utf-8") as f:
            return parse(f)
    except OSError as err:
        raise ValueError(f"{flag} {path}: {err.strerror}") from None
    except errors as err:
        raise ValueError(f"{flag} {path}: not {kind} ({str(err).splitlines()[0]})") from None


class _Loader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML with YAML 1.2 floats: `1e-3` is a number (PyYAML's YAML 1.1 reads it as text)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."))


def load_space_file(path: str) -> Dict[str, Any]:
    """The YAML file {method label: {option: spec}} (unchecked: see `search_spaces`)."""
    raw = _read(path, "--search-space", lambda f: yaml.load(f, _Loader), yaml.YAMLError, "YAML")
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError(f"--search-space {path}: expected {{method: {{option: spec}}}}")
    return raw


def search_spaces(labels: Sequence[str], path: Optional[str] = None,
                  fixed: Optional[Mapping[str, Mapping[str, Any]]] = None
                  ) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """{label: checked space} of the tuned method labels (`--tune`): the file's space where
    `path` (`--search-space`) names one for the label, else the method's declared one. `fixed`:
    {label: options from --set}. Raises ValueError in one line; call it before any work."""
    from trainer.methods import method_class  # pylint: disable=import-outside-toplevel
    overrides = load_space_file(path) if path else {}
    stray = sorted(set(overrides) - set(labels))
    if stray:
        raise ValueError(f"--search-space {path}: {stray} are not tuned (--tune "
                         f"{','.join(labels)})")
    spaces = {}
    for label in labels:
        cls = method_class(label)
        space = overrides.get(label, getattr(cls, "search_space", {}))
        if not space:
            raise ValueError(f"--tune {label}: {cls.name} declares no search space; give one "
                             "with --search-space")
        spaces[label] = check_space(cls, space, label, (fixed or {}).get(label))
    return spaces


def check_search(kind: str, trials: int) -> None:
    """`--tuner` and `--trials`, checked before any work."""
    if kind not in TUNERS:
        raise ValueError(f"--tuner must be one of {', '.join(TUNERS)}, not {kind!r}")
    if trials < 1:
        raise ValueError(f"--trials must be at least 1, not {trials}")


def in_space(spec: Mapping[str, Any], value: Any) -> bool:
    """Whether a checked spec can draw `value` (on the step grid of a linear int range)."""
    if spec["type"] == "choice":
        return value in spec["values"]
    if not spec["min"] <= value <= spec["max"]:
        return False
    return spec["type"] == "float" or spec["sampling"] == "log" or \
        (value - spec["min"]) % spec["step"] == 0


# -- hyperparameter names -----------------------------------------------------------------------
def options_of(values: Mapping[str, Any], label: Optional[str] = None) -> Dict[str, Dict[str, Any]]:
    """{label: {option: value}} of hyperparameter values `<label>.<option>` (keras-tuner's own
    `tuner/...` entries left out); only `label`'s when given."""
    out: Dict[str, Dict[str, Any]] = {}
    for name, value in values.items():
        if name.startswith("tuner/"):
            continue
        method, dot, option = name.rpartition(".")
        if not dot or not method:
            raise ValueError(f"hyperparameter {name!r} is not named METHOD.OPTION")
        if label is None or method == label:
            out.setdefault(method, {})[option] = value
    return out


# -- best hyperparameters: saving and loading --------------------------------------------------
def load_hyperparameters(path: str, labels: Optional[Sequence[str]] = None
                         ) -> Dict[str, Dict[str, Any]]:
    """{label: checked options} of a best_hyperparameters file, or of the folder of a TFX
    HyperParameters artifact holding `best_hyperparameters.txt` (`--hyperparameters FILE`).
    Accepts keras-tuner's `{"space": ..., "values": {...}}`, or `{"values": {...}}`, or the bare
    values mapping.
    `labels`: the run's method labels, which must hold every label of the file."""
    from trainer.methods import method_class  # pylint: disable=import-outside-toplevel
    if os.path.isdir(path):
        path = os.path.join(path, HP_FILE)
    raw = _read(path, "--hyperparameters", json.load, json.JSONDecodeError, "JSON")
    values = raw.get("values") if isinstance(raw, dict) and "values" in raw else raw
    if not isinstance(values, dict) or not values:
        raise ValueError(f"--hyperparameters {path}: no hyperparameter values")
    try:
        found = options_of(values)
    except ValueError as err:
        raise ValueError(f"--hyperparameters {path}: {err}") from None
    out = {}
    for label, options in found.items():
        if labels is not None and label not in labels:
            raise ValueError(f"--hyperparameters {path}: method {label!r} is not in --methods "
                             f"{','.join(labels)}")
        cls = method_class(label)
        full = options_lib.validate(cls, options, f"--hyperparameters {path}: {label}")
        out[label] = {option: full[option] for option in options}
    return out
