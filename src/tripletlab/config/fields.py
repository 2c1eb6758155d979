"""Field checks of the config sections: type, allowed values and range, once, when built.

Each section dataclass calls `check_fields(self)` in `__post_init__`. Values are converted
where that is unambiguous (an int where a float is wanted, a number written as text, as
PyYAML reads `1e-3`; a list where a tuple is wanted; one int for a square image size) and
refused otherwise, with a `ValueError` that names the key (`train.schedule`) and what it
accepts. Rules that involve more than one field live in `tripletlab.config.checks`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, Union

# A field's range: metadata={"check": (predicate, "text of what is accepted")}.
Check = tuple[Callable[[Any], bool], str]


def at_least(low: float) -> dict[str, Check]:
    """Field metadata: the value (or each element of a tuple) must be >= low."""
    return {"check": (lambda value: value >= low, f">= {low}")}


def above(low: float) -> dict[str, Check]:
    """Field metadata: the value must be > low."""
    return {"check": (lambda value: value > low, f"> {low}")}


def within(low: float, high: float, *, closed: bool = False) -> dict[str, Check]:
    """Field metadata: low <= value < high (value <= high with `closed`)."""
    bracket = "]" if closed else ")"
    if closed:
        return {"check": (lambda value: low <= value <= high, f"in [{low}, {high}{bracket}")}
    return {"check": (lambda value: low <= value < high, f"in [{low}, {high}{bracket}")}


def module_names() -> dict[str, Check]:
    """Field metadata: each element must be a dotted module name (`my_package.backbones`)."""

    def valid(name: str) -> bool:
        return bool(name) and all(part.isidentifier() for part in name.split("."))

    return {"check": (valid, "importable module names like my_package.backbones")}


def check_fields(section: Any) -> None:
    """Convert and check every field of a frozen section dataclass in place.

    Raises:
        ValueError: naming `<section>.<key>`, the value and what is accepted.
    """
    hints = _hints(type(section))
    prefix = getattr(section, "SECTION", type(section).__name__)
    for field in dataclasses.fields(section):
        key = f"{prefix}.{field.name}"
        value = convert(key, getattr(section, field.name), hints[field.name])
        if "check" in field.metadata and value is not None:
            predicate, accepted = field.metadata["check"]
            for item in value if isinstance(value, tuple) else (value,):
                if not predicate(item):  # NaN fails every comparison, so it is refused too
                    raise ValueError(f"{key} must be {accepted}, got {_show(value)}")
        object.__setattr__(section, field.name, value)


def convert(key: str, value: Any, annotation: Any) -> Any:
    """`value` as `annotation` (bool, int, float, str, Literal, tuple, X | None) wants it.

    Raises:
        ValueError: the value has another type, or is not one of the Literal's values.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [arg for arg in args if arg is not type(None)]
        return convert(key, value, inner)
    if origin is Literal:
        if value in args and type(value) in {type(arg) for arg in args}:
            return value
        choices = ", ".join(str(arg) for arg in args)
        raise ValueError(f"{key} must be one of {choices}; got {_show(value)}")
    if origin is tuple:
        return _tuple(key, value, args)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key} must be true or false, got {_show(value)}")
    if annotation is int:
        return _integer(key, value)
    if annotation is float:
        return _real(key, value)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"{key} must be text, got {_show(value)}")
    raise TypeError(f"{key}: no conversion for {annotation!r}")  # a field of a new kind


def _tuple(key: str, value: Any, args: tuple) -> tuple:
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[X, ...]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{key} must be a list, got {_show(value)}")
        return tuple(convert(key, item, args[0]) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and len(set(args)) == 1:
        value = (value,) * len(args)  # image_size: 64 means 64 x 64
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise ValueError(f"{key} must be a list of {len(args)} values, got {_show(value)}")
    return tuple(convert(key, item, arg) for item, arg in zip(value, args, strict=True))


def _integer(key: str, value: Any) -> int:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"{key} must be a whole number, got {_show(value)}")


def _real(key: str, value: Any) -> float:
    if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as text
        with contextlib.suppress(ValueError):
            value = float(value.strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
        raise ValueError(f"{key} must be a finite number, got {value}")
    raise ValueError(f"{key} must be a number, got {_show(value)}")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]
