"""Config dataclasses that check themselves: each field says what it means and what it accepts.

    @dataclass
    class TrainConfig:
        learning_rate: float = flag(1e-3, "peak learning rate", above=0)
        beta2: float = flag(0.99, "AdamW's second-moment decay", at_least=0, below=1)

``flag`` is ``dataclasses.field`` with the help text and the accepted range stored in the
field's metadata.  From that one place the command line gets its ``--help`` (``cli.py``) and
``check_fields`` refuses a bad value -- a wrong type or out of range -- with a message that
names the flag, the value and what would be accepted, before any work starts.  The same type
check guards a model's ``config.json`` (a hand-edited ``"n_layer": "4"``).
"""
from __future__ import annotations

import dataclasses
import math
import operator

# The annotations a config uses (strings, because of ``from __future__ import annotations``).
TYPES = {"int": int, "float": float, "str": str, "bool": bool, "dict": dict, "list": list,
         "tuple": (tuple, list)}


def flag(default, help: str, *, at_least=None, above=None, at_most=None, below=None,
         choices=None, default_factory=None):
    """A dataclass field with its ``help`` and accepted range (all bounds inclusive except
    ``above`` and ``below``); ``choices``: the accepted values."""
    metadata = {"help": help, "at_least": at_least, "above": above, "at_most": at_most,
                "below": below, "choices": choices}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def type_error(name: str, value, annotation) -> str | None:
    """Why ``value`` cannot be a field annotated ``annotation``, or None when it can.  An int
    is a float (JSON writes 1.0 as 1); a bool is not an int (``True`` is not a layer count)."""
    annotation = getattr(annotation, "__name__", annotation)     # a class, or its name
    kind = TYPES.get(str(annotation))
    if kind is None:
        return None
    ok = isinstance(value, kind)
    if kind is int:
        ok = ok and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        return None
    return f"{name} must be {annotation}, not {type(value).__name__} {value!r}"


def range_text(meta) -> str:
    """The accepted range in interval notation: ``[0, 1)``, ``> 0``, ``one of ('a', 'b')``."""
    if meta.get("choices") is not None:
        return f"one of {tuple(meta['choices'])}"
    low = (f"[{meta['at_least']}" if meta.get("at_least") is not None else
           f"({meta['above']}" if meta.get("above") is not None else None)
    high = (f"{meta['at_most']}]" if meta.get("at_most") is not None else
            f"{meta['below']})" if meta.get("below") is not None else None)
    if low and high:
        return f"in {low}, {high}"
    if low:
        return (">= " if low[0] == "[" else "> ") + low[1:]
    if high:
        return ("<= " if high[-1] == "]" else "< ") + high[:-1]
    return ""


def range_error(name: str, value, meta) -> str | None:
    """Why ``value`` is outside the field's range, or None."""
    if meta.get("choices") is not None:
        ok = value in meta["choices"]
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        bounds = ((meta.get("at_least"), operator.ge), (meta.get("above"), operator.gt),
                  (meta.get("at_most"), operator.le), (meta.get("below"), operator.lt))
        ok = math.isfinite(value) and all(b is None or test(value, b) for b, test in bounds)
    else:
        return None
    return None if ok else f"{name} must be {range_text(meta)}, got {value!r}"


def metadata(config_cls, name: str) -> dict:
    """A field's help and range.  A subclass that redefines a field only to change its default
    (``max_iters: int = 1500``) inherits them from the class that declared it with ``flag``."""
    for cls in config_cls.__mro__:
        f = getattr(cls, "__dataclass_fields__", {}).get(name)
        if f is not None and f.metadata:
            return dict(f.metadata)
    return {}


def check_fields(config, prefix: str = "--") -> None:
    """Every field of the dataclass ``config`` against its type and range; the first problem
    raises ValueError naming the field as ``{prefix}{name}``."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        problem = (type_error(prefix + f.name, value, f.type)
                   or range_error(prefix + f.name, value, metadata(type(config), f.name)))
        if problem:
            raise ValueError(problem)


def check_types(config_cls, values: dict) -> None:
    """The values a JSON file gives for ``config_cls``'s fields, against their annotations:
    ValueError naming the key."""
    annotations = {f.name: f.type for f in dataclasses.fields(config_cls)}
    for key, value in values.items():
        problem = key in annotations and type_error(repr(key), value, annotations[key])
        if problem:
            raise ValueError(problem)
