"""Label and field selectors, parsed and matched as the Kubernetes API server does.

Label selectors: equality (``k=v``, ``k==v``, ``k!=v``), set-based (``k in (a,b)``,
``k notin (a,b)``), existence (``k``, ``!k``) and the numeric ``k>n``/``k<n``; requirements
are comma-separated and all must hold. Field selectors: ``metadata.name`` and
``metadata.namespace`` with ``=``, ``==``, ``!=``. Parse errors raise :class:`SelectorError`
(the server answers 400 BadRequest).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .validation import label_key_errors, label_value_errors


class SelectorError(ValueError):
    """A selector that cannot be parsed; the message says what was found and expected."""


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op in (">", "<"):
            if not present:
                return False
            try:
                have = int(str(value))
            except ValueError:
                return False
            want = int(self.values[0])
            return have > want if self.op == ">" else have < want
        raise AssertionError(self.op)  # pragma: no cover


@dataclass(frozen=True)
class LabelSelector:
    """A parsed label selector; empty selects everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_TOKEN = re.compile(r"\s*(?:(?P<op>==|!=|=|>|<|!|\(|\)|,)|(?P<word>[^\s=!<>(),]+))")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise SelectorError(f"unable to parse requirement: unexpected character at {text[pos:]!r}")
        out.append(match.group("op") or match.group("word"))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def _check_key(key: str) -> None:
    errors = label_key_errors(key)
    if errors:
        raise SelectorError(f"unable to parse requirement: key {key!r}: {'; '.join(errors)}")


def _check_value(value: str) -> None:
    errors = label_value_errors(value)
    if errors:
        raise SelectorError(f"unable to parse requirement: value {value!r}: {'; '.join(errors)}")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``labelSelector``; raises :class:`SelectorError` when malformed."""
    if not text or not text.strip():
        return LabelSelector()
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def expect_word(what: str) -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i] in ("==", "!=", "=", ">", "<", "!", "(", ")", ","):
            found = tokens[i] if i < len(tokens) else "end of string"
            raise SelectorError(f"unable to parse requirement: found {found!r}, expected: {what}")
        word = tokens[i]
        i += 1
        return word

    while i < len(tokens):
        if tokens[i] == "!":
            i += 1
            key = expect_word("identifier after '!'")
            _check_key(key)
            reqs.append(Requirement(key, "!"))
        else:
            key = expect_word("identifier")
            _check_key(key)
            nxt = tokens[i] if i < len(tokens) else ","
            if nxt == ",":
                reqs.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                i += 1
                value = tokens[i] if i < len(tokens) and tokens[i] not in (",",) else ""
                if value and value in ("==", "!=", "=", ">", "<", "!", "(", ")"):
                    raise SelectorError(f"unable to parse requirement: found {value!r}, expected: value")
                if value:
                    i += 1
                _check_value(value)
                reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
            elif nxt in (">", "<"):
                i += 1
                value = expect_word("integer value")
                if not re.fullmatch(r"-?\d+", value):
                    raise SelectorError(f"unable to parse requirement: for {nxt!r}, {value!r} is not an integer")
                reqs.append(Requirement(key, nxt, (value,)))
            elif nxt in ("in", "notin"):
                i += 1
                if i >= len(tokens) or tokens[i] != "(":
                    found = tokens[i] if i < len(tokens) else "end of string"
                    raise SelectorError(f"unable to parse requirement: found {found!r}, expected: '('")
                i += 1
                values: list[str] = []
                while True:
                    if i < len(tokens) and tokens[i] == ")":
                        i += 1
                        break
                    if i < len(tokens) and tokens[i] == ",":
                        values.append("")
                        i += 1
                        continue
                    value = expect_word("value or ')'")
                    _check_value(value)
                    values.append(value)
                    if i < len(tokens) and tokens[i] == ",":
                        i += 1
                    elif i >= len(tokens) or tokens[i] != ")":
                        found = tokens[i] if i < len(tokens) else "end of string"
                        raise SelectorError(f"unable to parse requirement: found {found!r}, expected: ',' or ')'")
                if not values:
                    raise SelectorError(
                        f"unable to parse requirement: for 'in', 'notin' operators, values set can't be empty ({key})"
                    )
                reqs.append(Requirement(key, nxt, tuple(values)))
            else:
                raise SelectorError(
                    f"unable to parse requirement: found {nxt!r}, expected: in, notin, =, ==, !=, gt, lt"
                )
        if i < len(tokens):
            if tokens[i] != ",":
                raise SelectorError(f"unable to parse requirement: found {tokens[i]!r}, expected: ','")
            i += 1
            if i >= len(tokens):
                raise SelectorError("unable to parse requirement: found end of string, expected: identifier")
    return LabelSelector(tuple(reqs))


#: Field selector labels every resource supports (the only ones custom resources support).
FIELD_LABELS = ("metadata.name", "metadata.namespace")


@dataclass(frozen=True)
class FieldSelector:
    """A parsed field selector over ``metadata.name``/``metadata.namespace``."""

    terms: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        for path, equal, value in self.terms:
            have = meta.get(path.split(".", 1)[1]) or ""
            if (have == value) != equal:
                return False
        return True

    def exact_name(self) -> str | None:
        """The name when the selector pins ``metadata.name=x`` (a single-object watch)."""
        for path, equal, value in self.terms:
            if path == "metadata.name" and equal:
                return value
        return None


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def parse_field_selector(text: str | None) -> FieldSelector:
    """Parse ``fieldSelector``; raises :class:`SelectorError` for unsupported fields or syntax."""
    if not text or not text.strip():
        return FieldSelector()
    terms: list[tuple[str, bool, str]] = []
    for part in _split_unescaped(text, ","):
        part = part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([^=!]+?)\s*(==|!=|=)\s*(.*)", part)
        if not match:
            raise SelectorError(f"invalid selector: {part!r}; can't understand {part!r}")
        path, op, value = match.group(1).strip(), match.group(2), match.group(3).strip()
        if path not in FIELD_LABELS:
            raise SelectorError(
                f'field label not supported: {path} ("{path}" is not a known field selector: only '
                '"metadata.name", "metadata.namespace")'
            )
        terms.append((path, op != "!=", value))
    return FieldSelector(tuple(terms))
