"""Typed, checked options of methods and protocols: the one parser of `--set METHOD.OPTION=VALUE` (used by
`coldstart run`, `coldstart compile` and the benchmarks) and the check every method runs on its
options when it is built.

A method class (and a protocol, trainer/protocols) declares
- `defaults`: option -> default; the option's type is the type of its default (bool, int, float,
  str, list of str, dict of str to str; a float option also accepts an int, a list a tuple);
- `choices` (optional): option -> tuple of the allowed values;
- `bounds` (optional): option -> (low, high), inclusive, None = unbounded;
- `check(options)` (optional classmethod): cross-option and strict checks on the full options,
  raising ValueError.
Text values: bool is true/false in any case, int an integer literal (not 1e2), float any finite
number, str one of the choices when they are declared, list and dict JSON (["music"]).
"""
import json
import math
import re
from typing import Any, Dict, Optional, Sequence

INTEGER = re.compile(r"[+-]?[0-9]+\Z")
TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              list: "a list of strings", dict: "a mapping of strings to strings"}


ITEM_NAMES = {str: "strings", int: "integers", float: "numbers"}


def _option_type(cls, option: str) -> type:
    return type(cls.defaults[option])


def _unknown(cls, label: str, names) -> ValueError:
    return ValueError(f"{label}: unknown options {sorted(names)}; "
                      f"known: {sorted(cls.defaults) or 'none'}")


def parse_value(cls, option: str, text: str) -> Any:
    """The value of `option` of method class `cls` written as `text` (from the command line)."""
    kind = _option_type(cls, option)
    value = None
    if kind is bool and text.lower() in ("true", "false"):
        value = text.lower() == "true"
    elif kind is int and INTEGER.match(text):
        value = int(text)
    elif kind is float:
        try:
            value = float(text)
        except ValueError:
            pass
    elif kind is str:
        value = text
    elif kind in (list, dict):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            pass
    if value is None:
        raise ValueError(f"{option} takes {TYPE_NAMES[kind]}, not {text!r}")
    return check_value(cls, option, value)


def check_value(cls, option: str, value: Any) -> Any:
    """`value` checked against the type, choices and bounds of `option`; a float option's int
    becomes a float. Raises ValueError naming the option."""
    kind = _option_type(cls, option)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if kind is list and isinstance(value, tuple):
        value = list(value)
    # A list's items have the type of the default's items (strings if the default is empty).
    items = type(cls.defaults[option][0]) if kind is list and cls.defaults[option] else str
    if (type(value) is not kind  # pylint: disable=unidiomatic-typecheck
            or (kind is float and not math.isfinite(value))
            or (kind is list and not all(type(v) is items for v in value))  # pylint: disable=unidiomatic-typecheck
            or (kind is dict and not all(isinstance(k, str) and isinstance(v, str)
                                         for k, v in value.items()))):
        what = (f"a list of {ITEM_NAMES.get(items, items.__name__)}" if kind is list
                else TYPE_NAMES[kind])
        raise ValueError(f"{option} takes {what}, not {value!r}")
    if kind in (list, dict):
        return type(value)(value)  # a copy: the caller's value stays its own
    choices = getattr(cls, "choices", {}).get(option)
    if choices is not None and value not in choices:
        allowed = (" or ".join(map(str, choices)) if len(choices) == 2
                   else "one of " + ", ".join(map(str, choices)))
        raise ValueError(f"{option} must be {allowed}, not {value!r}")
    low, high = getattr(cls, "bounds", {}).get(option, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            where = f"between {low:g} and {high:g}"
        elif low is not None:
            where = f"at least {low:g}"
        else:
            where = f"at most {high:g}"
        raise ValueError(f"{option} must be {where}, not {value:g}")
    return value


def validate(cls, options: Dict[str, Any], label: str = "") -> Dict[str, Any]:
    """The full options of a `cls` method (defaults overridden by `options`), each checked, then
    the class's cross-option `check`. Raises ValueError starting with `label` (default: the
    method's name)."""
    label = label or cls.name
    unknown = set(options) - set(cls.defaults)
    if unknown:
        raise _unknown(cls, label, unknown)
    full = dict(cls.defaults)
    for option, value in options.items():
        try:
            full[option] = check_value(cls, option, value)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
    try:
        cls.check(full)
    except ValueError as err:
        raise ValueError(f"{label}: {err}") from None
    return full


def parse_sets(items: Sequence[str], labels: Sequence[str],
               extra: Optional[Dict[str, type]] = None) -> Dict[str, Dict[str, Any]]:
    """["csdm.iters=2", "csdm/code.train_denoiser=false"] -> {"csdm": {"iters": 2},
    "csdm/code": {"train_denoiser": False}}, for the method labels of `--methods`. Every label and
    every value is checked; raises ValueError naming the `--set` item at fault. `extra`: more
    prefixes and their classes (e.g. {"protocol": the protocol's class}); their options are
    typed here and validated as a whole by the caller (with defaults from elsewhere merged)."""
    from trainer.methods import method_class  # pylint: disable=import-outside-toplevel
    classes = {label: method_class(label) for label in labels}
    classes.update(extra or {})
    options: Dict[str, Dict[str, Any]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        label, dot, option = key.rpartition(".")
        if not sep or not dot or not label or not option:
            raise ValueError(f"--set takes METHOD.OPTION=VALUE, not {item!r}")
        if label not in classes:
            raise ValueError(f"--set {item}: {label!r} is not in --methods {','.join(labels)}"
                             + (f" nor one of {', '.join(extra)}" if extra else ""))
        cls = classes[label]
        if option not in cls.defaults:
            raise ValueError(f"--set {item}: {_unknown(cls, label, [option])}")
        if option in options.get(label, {}):
            raise ValueError(f"--set {item}: {label}.{option} is set twice")
        try:
            options.setdefault(label, {})[option] = parse_value(cls, option, text)
        except ValueError as err:
            raise ValueError(f"--set {item}: {err}") from None
    for label in labels:
        validate(classes[label], options.get(label, {}), label)
    return options
