"""Layering configs: defaults in code, then a preset, a YAML file, flags and `--set key=value`.

Every layer is a nested mapping `{section: {key: value}}`. `combine` puts layers together
(later ones win) and `merge` applies the result to a config, refusing unknown sections and
keys; the sections check their values when rebuilt. Applying all layers at once means that
fields which must fit together (PK batch size and K) are checked only as they end up.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from tripletlab.config.sections import PhaseConfig, RunConfig


def combine(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Layers of overrides as one: a later layer's keys win; `phases` is replaced whole."""
    combined: dict[str, Any] = {}
    for layer in layers:
        for name, values in (layer or {}).items():
            if name != "phases" and isinstance(values, dict):
                existing = combined.get(name)
                combined[name] = {**(existing if isinstance(existing, dict) else {}), **values}
            else:
                combined[name] = values
    return combined


def merge(config: RunConfig, overrides: dict[str, Any] | None) -> RunConfig:
    """Return `config` with `{section: {key: value}}` overrides applied. A None value (YAML's
    null) sets the key to None, which only keys that may be unset accept.

    Raises:
        ValueError: an unknown section or key (the message lists the known ones), or a value a
            section refuses.
    """
    sections = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    for name, values in (overrides or {}).items():
        if name == "phases":
            sections["phases"] = _phases(values)
            continue
        if name not in sections:
            raise ValueError(f"unknown config section {name!r}; expected {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ValueError(f"config section {name!r} must be a mapping of keys to values")
        section = sections[name]
        known = {f.name for f in dataclasses.fields(section)}
        for key in values:
            if key not in known:
                raise ValueError(
                    f"unknown key {name}.{key}; expected one of {', '.join(sorted(known))}"
                )
        sections[name] = dataclasses.replace(section, **values)
    return RunConfig(**sections)


def _phases(values: Any) -> tuple[PhaseConfig, ...]:
    if values is None:
        return ()
    if not isinstance(values, (list, tuple)) or not all(isinstance(v, dict) for v in values):
        raise ValueError(
            "phases must be a list of mappings (epochs, lr, optimizer, freeze, schedule)"
        )
    known = {f.name for f in dataclasses.fields(PhaseConfig)}
    phases = []
    for number, phase in enumerate(values, start=1):
        unknown = set(phase) - known
        if unknown:
            raise ValueError(
                f"unknown key(s) {', '.join(sorted(map(str, unknown)))} in phase {number}; "
                f"expected {', '.join(sorted(known))}"
            )
        freeze = phase.get("freeze")
        if isinstance(freeze, dict) and list(freeze) == ["until"]:  # freeze: {until: layer4}
            phase = {**phase, "freeze": f"until:{freeze['until']}"}
        try:
            phases.append(PhaseConfig(**phase))
        except ValueError as error:
            raise ValueError(str(error).replace("phases[]", f"phases[{number}]", 1)) from None
    return tuple(phases)


def upgrade_saved(values: dict[str, Any]) -> dict[str, Any]:
    """A run config saved by an earlier version, with the settings it ran with made explicit
    where the defaults changed since (so that its data parts stay the same)."""
    data = values.get("data")
    if isinstance(data, dict) and "split_order" not in data:
        values = {**values, "data": {**data, "split_order": "global"}}
    model = values.get("model")
    if isinstance(model, dict) and "input_scaling" not in model:  # before 2026-12-01: [0, 1]
        values = {**values, "model": {**model, "input_scaling": "unit"}}
    return values


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML run config (sections data, model, loss, train, phases) with the safe loader.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not YAML, a tag the safe loader refuses (`!!python/...`), or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}: not a valid YAML run config{line}: {problem}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    if values is None:  # an empty file
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a run config must be a mapping of sections")
    return values


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """`["train.lr=3e-3", "model.flip=true", "phases=[{epochs: 2}]"]` as nested overrides.

    Each value is read as YAML (so `true`, `0.5`, `[64, 64]` and `null` mean what they say).

    Raises:
        ValueError: an assignment without `=`, without a `section.key` name or without a value.
    """
    overrides: dict[str, Any] = {}
    for text in assignments:
        name, equals, raw = text.partition("=")
        name = name.strip()
        if not equals or not name:
            raise ValueError(f"--set {text!r}: expected section.key=value, e.g. train.lr=3e-3")
        if not raw.strip():
            raise ValueError(f"--set {text!r}: no value (write null to unset a key)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ValueError(f"--set {text!r}: the value is not valid YAML") from None
        if name == "phases":
            overrides["phases"] = value
            continue
        section, dot, key = name.partition(".")
        if not dot or not key or "." in key:
            raise ValueError(f"--set {text!r}: expected section.key=value, e.g. train.lr=3e-3")
        overrides.setdefault(section, {})[key] = value
    return overrides
