"""JSONPath: the subset of client-go's jsonpath that CRD printer columns use.

Fields, ``['quoted']`` fields, indexes, slices, ``*``, ``..`` and filters such as
``[?(@.type=="Ready")]``. Pure; used by :mod:`.table` to compute printer-column cells.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class JSONPathError(ValueError):
    """A printer column's jsonPath this evaluator cannot parse."""


@dataclass(frozen=True)
class _Filter:
    left: tuple[Any, ...]  # a relative path (steps), evaluated on each element
    op: str | None  # None: existence test
    right: Any


Step = tuple[str, Any]  # ("field", name) | ("fields", names) | ("index", ints) | ("slice", (a, b, c))
#                        | ("all", None) | ("recurse", None) | ("filter", _Filter)

def parse_jsonpath(expr: str) -> tuple[Step, ...]:
    """Parse ``.a.b[0]['c'][?(@.type=="Ready")].status`` (optionally wrapped in ``{}``)."""
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    steps, pos = _parse_steps(text, 0, relative=False)
    if pos != len(text):
        raise JSONPathError(f"unexpected {text[pos:]!r} in {expr!r}")
    return tuple(steps)


def _parse_steps(text: str, pos: int, *, relative: bool, stop: str = "") -> tuple[list[Step], int]:
    steps: list[Step] = []
    while pos < len(text) and text[pos] not in stop:
        char = text[pos]
        if text.startswith("..", pos):
            steps.append(("recurse", None))
            pos += 2
            if pos < len(text) and text[pos] == "[":
                continue
            pos = _parse_name(text, pos, steps, relative, stop)
        elif char == ".":
            pos = _parse_name(text, pos + 1, steps, relative, stop)
        elif char == "[":
            end = _closing_bracket(text, pos)
            steps.append(_parse_bracket(text[pos + 1:end].strip()))
            pos = end + 1
        elif char.isspace() and relative:
            break
        else:
            raise JSONPathError(f"unexpected {text[pos:]!r}")
    return steps, pos


def _parse_name(text: str, pos: int, steps: list[Step], relative: bool, stop: str) -> int:
    match = re.compile(r"[^.\[\s" + re.escape(stop) + r"]*").match(text, pos)
    assert match is not None
    name = match.group(0)
    if name == "*":
        steps.append(("all", None))
    elif name:
        steps.append(("field", name))
    return match.end()


def _closing_bracket(text: str, start: int) -> int:
    depth, quote = 0, ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return index
    raise JSONPathError(f"unclosed [ in {text!r}")


def _parse_bracket(inner: str) -> Step:
    if inner == "*":
        return ("all", None)
    if inner.startswith("?(") and inner.endswith(")"):
        return ("filter", _parse_filter(inner[2:-1].strip()))
    if inner[:1] in ("'", '"'):
        names = [_literal(part.strip()) for part in _split_top(inner, ",")]
        if not all(isinstance(n, str) for n in names):
            raise JSONPathError(f"bad field list [{inner}]")
        return ("fields", tuple(names))
    if ":" in inner:
        parts = [p.strip() for p in inner.split(":")]
        if len(parts) > 3 or not all(re.fullmatch(r"-?\d*", p) for p in parts):
            raise JSONPathError(f"bad slice [{inner}]")
        numbers = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
        return ("slice", tuple(numbers))
    indexes = [p.strip() for p in inner.split(",")]
    if not all(re.fullmatch(r"-?\d+", p) for p in indexes):
        raise JSONPathError(f"bad index [{inner}]")
    return ("index", tuple(int(p) for p in indexes))


def _split_top(text: str, sep: str) -> list[str]:
    parts, current, quote = [], "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == sep:
            parts.append(current)
            current = ""
            continue
        current += char
    parts.append(current)
    return parts


def _parse_filter(text: str) -> _Filter:
    if not text.startswith("@"):
        raise JSONPathError(f"filter must start with @: {text!r}")
    left, pos = _parse_steps(text, 1, relative=True, stop="=!<>")
    rest = text[pos:].strip()
    if not rest:
        return _Filter(tuple(left), None, None)
    match = re.match(r"(==|!=|<=|>=|<|>)\s*(.*)", rest, re.S)
    if match is None:
        raise JSONPathError(f"bad filter {text!r}")
    return _Filter(tuple(left), match.group(1), _literal(match.group(2).strip()))


def _literal(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    if text in ("null", "nil"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise JSONPathError(f"bad literal {text!r}") from None


def find(steps: tuple[Step, ...], data: Any) -> list[Any]:
    """All values the path selects (missing keys select nothing, as with ``AllowMissingKeys``)."""
    current = [data]
    for kind, arg in steps:
        current = [value for item in current for value in _step(kind, arg, item)]
    return current


def _step(kind: str, arg: Any, item: Any) -> Iterator[Any]:
    if kind == "field":
        if isinstance(item, dict) and arg in item:
            yield item[arg]
    elif kind == "fields":
        if isinstance(item, dict):
            yield from (item[name] for name in arg if name in item)
    elif kind == "all":
        if isinstance(item, dict):
            yield from (item[key] for key in sorted(item))
        elif isinstance(item, list):
            yield from item
    elif kind == "recurse":
        yield from _descend(item)
    elif kind == "index":
        if isinstance(item, list):
            for index in arg:
                if -len(item) <= index < len(item):
                    yield item[index]
    elif kind == "slice":
        if isinstance(item, list):
            yield from item[slice(*arg)]
    elif kind == "filter" and isinstance(item, list):
        yield from (element for element in item if _matches(arg, element))


def _descend(item: Any) -> Iterator[Any]:
    yield item
    children = [item[k] for k in sorted(item)] if isinstance(item, dict) else item if isinstance(item, list) else []
    for child in children:
        yield from _descend(child)


def _matches(flt: _Filter, element: Any) -> bool:
    lefts = find(flt.left, element)
    if len(lefts) != 1:
        return False
    if flt.op is None:
        return True
    left, right = lefts[0], flt.right
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numeric and type(left) is not type(right):
        return False  # client-go: "incompatible types for comparison"
    try:
        return bool({
            "==": lambda: left == right, "!=": lambda: left != right, "<": lambda: left < right,
            ">": lambda: left > right, "<=": lambda: left <= right, ">=": lambda: left >= right,
        }[flt.op]())
    except TypeError:
        return False
