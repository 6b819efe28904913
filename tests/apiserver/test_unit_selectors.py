"""Label and field selector parsing and matching (pure)."""

from __future__ import annotations

import pytest

from newapi_operator.apiserver.selectors import SelectorError, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "pro", "n": "5"}


@pytest.mark.parametrize(("text", "matches"), [
    ("", True),
    ("app=web", True),
    ("app == web", True),
    ("app!=web", False),
    ("missing!=x", True),
    ("app in (web, api)", True),
    ("app notin (web)", False),
    ("missing notin (x)", True),
    ("tier", True),
    ("!tier", False),
    ("!missing", True),
    ("app=web,tier=pro", True),
    ("app=web,tier=free", False),
    ("n>4", True),
    ("n<5", False),
    ("example.com/key=v", False),
    ("app=", False),
])
def test_label_selector_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


def test_empty_value_matches_empty_label() -> None:
    assert parse_label_selector("app=").matches({"app": ""})


@pytest.mark.parametrize("text", [
    "app in web", "app in (", "app in ()", "=x", "app=web,", "app=(x)", "bad key=x", "app=has space",
    "n>x", "app notin (a,", "app===b", "a,,b",
])
def test_malformed_label_selectors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_field_selectors() -> None:
    obj = {"metadata": {"name": "a", "namespace": "ns"}}
    assert parse_field_selector("metadata.name=a").matches(obj)
    assert parse_field_selector("metadata.name==a,metadata.namespace=ns").matches(obj)
    assert not parse_field_selector("metadata.name!=a").matches(obj)
    assert parse_field_selector("metadata.namespace!=other").matches(obj)
    assert parse_field_selector("metadata.name=a").exact_name() == "a"
    assert parse_field_selector("").matches(obj)


@pytest.mark.parametrize("text", ["spec.size=1", "status.phase=Running", "metadata.name"])
def test_unsupported_field_selectors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(text)
