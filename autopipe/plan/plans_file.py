"""plans.json: the serialized, human-editable form of `Plans` (autopipe.plan.configs).

Layout: components nest as JSON objects; every planned leaf is {"value": ..., "reason": "..."}.
A person may edit any value (and its reason). `load_plans` converts the file back into the frozen
dataclasses, driven by their type hints: unknown keys, wrong types, names outside their Choice dict
and values that break a component's invariants are rejected with an AutopipeError naming the key
path, e.g. "configurations.3d_fullres.patch_size: 3 values expected, got 2". Keys with a default
may be left out.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from autopipe.errors import AutopipeError
from autopipe.files import write_text_atomic
from autopipe.plan.configs import Choice, Plans, PlanValueError

LEAF_KEYS = ("value", "reason")
DEFAULT_REASON = "autopipe default"
FIX = "correct the value in plans.json, or delete the file and run `autopipe plan` again"


class _BadValue(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path, self.message = path, message


def plans_to_json(plans: Plans) -> dict:
    """The JSON-ready dict of a Plans object."""
    return _dump(plans)


def plans_from_json(data: object, where: str = "plans.json") -> Plans:
    """Plans from a parsed plans.json; AutopipeError naming the key path for anything invalid."""
    try:
        return _load(Plans, data, "")
    except _BadValue as exc:
        raise AutopipeError(f"{exc.path}: {exc.message}", where=where, fix=FIX) from None


def dumps_plans(plans: Plans) -> str:
    return format_json(plans_to_json(plans)) + "\n"


def save_plans(plans: Plans, path: Path) -> Path:
    """Write plans.json atomically (temporary file, then rename)."""
    return write_text_atomic(path, dumps_plans(plans))


def load_plans(path: Path | str) -> Plans:
    """Read and validate plans.json; AutopipeError naming the key path for anything invalid."""
    path = Path(path)
    if not path.is_file():
        raise AutopipeError("plans.json is missing", where=str(path), fix="run `autopipe plan` first")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AutopipeError(f"not valid JSON ({exc})", where=str(path), fix="repair the file's syntax") from exc
    return plans_from_json(data, where=str(path))


def format_json(obj: object, indent: int = 0) -> str:
    """JSON with 2-space indentation, but each {"value", "reason"} leaf and each list of numbers on one line."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, dict) and obj and not _is_leaf(obj):
        items = [f"{inner}{json.dumps(str(k))}: {format_json(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        return "[\n" + ",\n".join(inner + format_json(v, indent + 2) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


def _is_leaf(obj: dict) -> bool:
    return set(obj) <= set(LEAF_KEYS) and "value" in obj


# --- dataclass -> JSON ---------------------------------------------------------------------------------

def _dump(obj: Any) -> dict:
    hints = get_type_hints(type(obj), include_extras=True)
    plain = getattr(type(obj), "UNWRAPPED", ())
    out: dict[str, Any] = {name: _jsonable(getattr(obj, name)) for name in plain}  # identity first
    for f in fields(obj):
        if f.name == "reasons" or f.name in plain:
            continue
        value = getattr(obj, f.name)
        if _is_component(hints[f.name]):
            out[f.name] = _dump_component(value)
        else:
            out[f.name] = {"value": _jsonable(value), "reason": obj.reasons.get(f.name, DEFAULT_REASON)}
    return out


def _dump_component(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return _dump(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


# --- JSON -> dataclass ---------------------------------------------------------------------------------

def _load(cls: type, data: object, path: str) -> Any:
    if not isinstance(data, dict):
        raise _BadValue(path or "plans.json", f"a JSON object expected, got {_show(data)}")
    hints = get_type_hints(cls, include_extras=True)
    known = {f.name: f for f in fields(cls) if f.name != "reasons"}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise _BadValue(_join(path, unknown[0]), f"unknown key; valid keys here: {', '.join(known)}")
    plain = getattr(cls, "UNWRAPPED", ())
    kwargs: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    for name, f in known.items():
        key = _join(path, name)
        if name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise _BadValue(key, "missing (this key has no default)")
            continue
        hint = hints[name]
        if _is_component(hint):
            kwargs[name] = _load_component(hint, data[name], key)
        elif name in plain:
            kwargs[name] = _convert(data[name], hint, key)
        else:
            kwargs[name], reasons[name] = _load_leaf(data[name], hint, key)
    try:
        return cls(**kwargs, reasons=reasons)
    except PlanValueError as exc:
        raise _BadValue(_join(path, exc.key), exc.message) from None


def _load_leaf(entry: object, hint: Any, key: str) -> tuple[Any, str]:
    if not isinstance(entry, dict) or "value" not in entry:
        raise _BadValue(key, f'{{"value": ..., "reason": "..."}} expected, got {_show(entry)}')
    extra = sorted(set(entry) - set(LEAF_KEYS))
    if extra:
        raise _BadValue(_join(key, extra[0]), "unknown key; a planned value holds only 'value' and 'reason'")
    reason = entry.get("reason", "")
    if not isinstance(reason, str):
        raise _BadValue(_join(key, "reason"), f"text expected, got {_show(reason)}")
    return _convert(entry["value"], hint, key), reason


def _load_component(hint: Any, data: object, key: str) -> Any:
    hint = _non_null(hint, data, key, "an object")
    if data is None:
        return None
    if get_origin(hint) is dict:
        key_hint, value_hint = get_args(hint)
        if not isinstance(data, dict):
            raise _BadValue(key, f"a JSON object expected, got {_show(data)}")
        return {_convert(k, key_hint, _join(key, k)): _load(value_hint, v, _join(key, k)) for k, v in data.items()}
    return _load(hint, data, key)


def _convert(value: object, hint: Any, key: str) -> Any:
    """Check `value` against a type hint (bool, int, float, str, tuples, Optional, Choice) and convert it."""
    if get_origin(hint) is Annotated:
        base, *meta = get_args(hint)
        converted = _convert(value, base, key)
        for marker in meta:
            if isinstance(marker, Choice) and converted not in marker.options:
                raise _BadValue(key, f"unknown value {_show(value)}; valid: {', '.join(marker.options)}")
        return converted
    hint = _non_null(hint, value, key, "a value")
    if value is None:
        return None
    if get_origin(hint) is tuple:
        return _convert_tuple(value, get_args(hint), key)
    return _convert_scalar(value, hint, key)


def _convert_tuple(value: object, args: tuple, key: str) -> tuple:
    if not isinstance(value, list):
        raise _BadValue(key, f"a list expected, got {_show(value)}")
    if len(args) == 2 and args[1] is Ellipsis:
        item_hints = [args[0]] * len(value)
    else:
        if len(value) != len(args):
            raise _BadValue(key, f"{len(args)} values expected, got {len(value)}")
        item_hints = list(args)
    return tuple(_convert(v, h, f"{key}[{i}]") for i, (v, h) in enumerate(zip(value, item_hints, strict=True)))


def _convert_scalar(value: object, hint: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _BadValue(key, f"true or false expected, got {_show(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _BadValue(key, f"an integer expected, got {_show(value)}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise _BadValue(key, f"a number expected, got {_show(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise _BadValue(key, f"text expected, got {_show(value)}")
    raise TypeError(f"plans_file cannot convert type {hint!r} (at {key})")


def _non_null(hint: Any, value: object, key: str, expected: str) -> Any:
    """`hint` without its Optional; null is accepted only where the hint is Optional."""
    hint, optional = _strip_optional(hint)
    if value is None and not optional:
        raise _BadValue(key, f"{expected} expected, got null")
    return hint


def _strip_optional(hint: Any) -> tuple[Any, bool]:
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], len(args) < len(get_args(hint))
    return hint, False


def _is_component(hint: Any) -> bool:
    hint, _ = _strip_optional(hint)
    if get_origin(hint) is dict:
        return is_dataclass(get_args(hint)[1])
    return isinstance(hint, type) and is_dataclass(hint)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, float | int) or isinstance(value, bool) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
