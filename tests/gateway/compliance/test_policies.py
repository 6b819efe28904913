"""The shipped AUP policy files: each one loads and follows the documented format, the format's
validation rejects what it should, and the files ship inside the wheel where the gateway finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from newapi_gateway.compliance.aup_policy import (
    POLICY_FILE_NAME,
    PROVIDERS,
    SHIPPED_POLICY_DIR,
    AupPolicyError,
    AupPolicyFile,
    PolicyLibrary,
    keyword_pattern,
    load_policy_file,
    load_policy_library,
    parse_policy_file,
)
from newapi_operator.api.v1alpha1 import AupProvider

ROOT = Path(__file__).resolve().parents[3]
#: Categories every commercial provider's file must block (the core of the compliance posture).
REQUIRED_BLOCKS = {"child-sexual-content", "mass-casualty-weapons", "explosive-devices", "violent-attack-planning"}


def test_every_provider_has_a_shipped_policy(library: PolicyLibrary) -> None:
    assert sorted(library) == sorted(PROVIDERS)
    assert set(PROVIDERS) == set(AupProvider.__args__)  # a file per aupProvider value
    assert library.directory == SHIPPED_POLICY_DIR


@pytest.mark.parametrize("provider", PROVIDERS)
def test_shipped_file_is_valid(provider: str) -> None:
    path = SHIPPED_POLICY_DIR / provider / POLICY_FILE_NAME
    raw = yaml.safe_load(path.read_text())
    policy = AupPolicyFile.model_validate(raw)  # the documented format, strictly (unknown keys rejected)
    assert policy.provider == provider
    assert policy.version
    assert policy.description
    ids = [c.id for c in policy.categories]
    assert len(ids) == len(set(ids))
    for cat in policy.categories:
        assert cat.patterns or cat.keywords
        assert len(cat.description) >= 40, f"{provider}/{cat.id}: describe the category for people"
    blocks = {c.id for c in policy.categories if c.action == "block"}
    assert "child-sexual-content" in blocks
    assert "mass-casualty-weapons" in blocks
    if provider != "in-cluster":
        assert blocks >= REQUIRED_BLOCKS, f"{provider} must block {REQUIRED_BLOCKS - blocks}"
    assert load_policy_file(path) == policy


def test_shared_categories_agree_on_their_action(library: PolicyLibrary) -> None:
    actions: dict[str, set[str]] = {}
    for policy in library.values():
        for cat in policy.categories:
            actions.setdefault(cat.id, set()).add(cat.action)
    assert {k: v for k, v in actions.items() if len(v) > 1} == {}


def test_repository_policies_folder_is_the_packaged_one() -> None:
    top = ROOT / "policies"
    assert top.is_symlink(), "policies/ at the repository root is a symlink to gateway/compliance/policies"
    assert top.resolve() == (ROOT / "gateway" / "compliance" / "policies").resolve()
    for provider in PROVIDERS:
        # The installed package (editable or not) ships exactly the repository's files.
        repo_file = top / provider / POLICY_FILE_NAME
        assert repo_file.is_file()
        assert (SHIPPED_POLICY_DIR / provider / POLICY_FILE_NAME).read_bytes() == repo_file.read_bytes()
    assert sorted(load_policy_library(top)) == sorted(PROVIDERS)


# --- the format's validation -------------------------------------------------------------------------

VALID = """
provider: openai
version: "1"
categories:
  - id: demo
    description: a demo category for the tests
    action: block
    patterns: ['\\bforbidden\\s+thing\\b']
"""


def _doc(**changes: object) -> str:
    doc = yaml.safe_load(VALID)
    cat = doc["categories"][0]
    for key, value in changes.items():
        if key.startswith("cat_"):
            if value is None:
                cat.pop(key[4:], None)
            else:
                cat[key[4:]] = value
        elif value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return yaml.safe_dump(doc)


def test_valid_document_parses() -> None:
    policy = parse_policy_file(VALID)
    assert policy.categories[0].sources() == ("\\bforbidden\\s+thing\\b",)


@pytest.mark.parametrize(("changes", "message"), [
    ({"cat_patterns": ["(?=lookahead)x"]}, "not a valid RE2 expression"),
    ({"cat_patterns": ["(\\w+) \\1"]}, "not a valid RE2 expression"),
    ({"cat_patterns": ["a*"]}, "matches the empty string"),
    ({"cat_patterns": ["(unclosed"]}, "not a valid RE2 expression"),
    ({"cat_patterns": [], "cat_keywords": []}, "neither patterns nor keywords"),
    ({"cat_patterns": None}, "neither patterns nor keywords"),
    ({"cat_keywords": ["  "]}, "non-empty phrase"),
    ({"cat_action": "warn"}, "categories[0].action"),
    ({"cat_id": "Bad Id"}, "categories[0].id"),
    ({"cat_description": "short"}, "categories[0].description"),
    ({"cat_severity": "high"}, "unknown field"),
    ({"provider": "acme"}, "provider"),
    ({"version": None}, "version: required field is missing"),
    ({"categories": []}, "categories"),
    ({"extra": 1}, "extra: unknown field"),
])
def test_invalid_documents_are_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(AupPolicyError) as info:
        parse_policy_file(_doc(**changes), "x/aup.yaml")
    assert any(message in p for p in info.value.problems), info.value.problems
    assert all(p.startswith("x/aup.yaml: ") for p in info.value.problems)


def test_duplicate_ids_and_bad_yaml_are_rejected() -> None:
    doc = yaml.safe_load(VALID)
    doc["categories"].append(dict(doc["categories"][0]))
    with pytest.raises(AupPolicyError, match="appears twice"):
        parse_policy_file(yaml.safe_dump(doc))
    with pytest.raises(AupPolicyError, match="not valid YAML"):
        parse_policy_file("provider: [unclosed")
    with pytest.raises(AupPolicyError, match="must be a mapping"):
        parse_policy_file("- a list")


def test_directory_name_must_match_the_provider(tmp_path: Path) -> None:
    (tmp_path / "google").mkdir()
    (tmp_path / "google" / POLICY_FILE_NAME).write_text(VALID)
    with pytest.raises(AupPolicyError, match="provider is 'openai' but the file is in directory 'google'"):
        load_policy_library(tmp_path)


def test_library_errors(tmp_path: Path) -> None:
    with pytest.raises(AupPolicyError, match="does not exist"):
        load_policy_library(tmp_path / "missing")
    with pytest.raises(AupPolicyError, match=r"no <provider>/aup\.yaml files found"):
        load_policy_library(tmp_path)
    (tmp_path / "openai").mkdir()
    (tmp_path / "openai" / POLICY_FILE_NAME).write_text(VALID)
    (tmp_path / "anthropic").mkdir()
    (tmp_path / "anthropic" / POLICY_FILE_NAME).write_text("provider: anthropic\n")
    with pytest.raises(AupPolicyError) as info:
        load_policy_library(tmp_path)
    assert all("anthropic/aup.yaml" in p for p in info.value.problems)


def test_keywords_match_whole_words_in_any_case() -> None:
    import re2  # type: ignore[import-untyped]

    from newapi_gateway.compliance.aup_policy import rx_options

    rx = re2.compile(keyword_pattern("ransomware builder"), rx_options())
    assert rx.search("get a RANSOMWARE \t builder now")
    assert not rx.search("ransomware builders")
    assert not rx.search("xransomware builder")
    assert re2.compile(keyword_pattern("c++ crypter"), rx_options()).search("a C++ crypter!")
    assert keyword_pattern("a.b") == "\\ba\\.b\\b"


# --- shipped inside the wheel ----------------------------------------------------------------------


def test_policies_ship_in_the_wheel_and_load_from_it(tmp_path: Path) -> None:
    """Build the distribution from a copy of the sources, then load the policies from the unpacked
    wheel in a fresh interpreter (not from the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "operator", src / "operator", ignore=ignore)
    shutil.copytree(ROOT / "gateway", src / "gateway", ignore=ignore)
    out = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        missing = [p for p in PROVIDERS if f"newapi_gateway/compliance/policies/{p}/aup.yaml" not in names]
        assert not missing, (
            f"the wheel lacks the policy files of {missing}: list newapi_gateway.compliance in [tool.setuptools] "
            'packages and add "newapi_gateway.compliance" = ["policies/*/aup.yaml"] to package-data'
        )
        unpacked = tmp_path / "site"
        zf.extractall(unpacked)
    probe = (
        "import newapi_gateway.compliance.aup_policy as m\n"
        "lib = m.load_policy_library()\n"
        "print(m.SHIPPED_POLICY_DIR)\n"
        "print(','.join(sorted(lib)))\n"
    )
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert run.returncode == 0, run.stderr
    where, providers = run.stdout.split()
    assert Path(where).is_relative_to(unpacked)
    assert providers == ",".join(sorted(PROVIDERS))
