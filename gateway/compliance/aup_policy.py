"""AUP policy files: the documented rule format, its validation, and where the shipped files live.

A policy file is ``<policies dir>/<provider>/aup.yaml`` (provider: ``openai``, ``anthropic``,
``google`` or ``in-cluster``)::

    provider: openai            # must equal the directory name
    version: "2026-05-11"       # free text; the date of the last review is recommended
    description: ...            # optional, for people
    categories:
      - id: mass-casualty-weapons        # lower-case, digits and dashes; unique in the file
        description: ...                 # what the category covers, in plain words
        action: block                    # block (HTTP 400) or flag (recorded in the audit decision)
        patterns: ['\\bhow\\s+to\\s+...']    # RE2 regular expressions, matched case-insensitively
        keywords: [ransomware builder]   # optional: literal words/phrases, whole words, any case

A category matches when any of its patterns or keywords occurs anywhere in the request text
(:mod:`newapi_gateway.compliance.extract`). Patterns use RE2 syntax (the subset of Python's ``re``
without backreferences and look-around) so matching time is linear in the text length whatever the
pattern; ``\\b`` is an ASCII word boundary. A pattern that matches the empty string is rejected.

The shipped files are package data in ``newapi_gateway/compliance/policies/`` (the repository's
top-level ``policies/`` is a symlink to that folder); :data:`SHIPPED_POLICY_DIR` locates them in an
installed wheel as in a checkout.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Literal

import re2  # type: ignore[import-untyped]
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from newapi_operator.api.compliance import violations_from_validation_error
from newapi_operator.api.v1alpha1 import AupProvider

from .problems import ComplianceConfigError

#: The policies shipped with the gateway (package data).
SHIPPED_POLICY_DIR = Path(__file__).resolve().parent / "policies"
#: The file name inside each provider's directory.
POLICY_FILE_NAME = "aup.yaml"
#: Every provider a channel can name in ``aupProvider`` (a policy file is shipped for each).
PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "google", "in-cluster")

AupAction = Literal["block", "flag"]


def rx_options(max_mem: int = 8 << 20) -> re2.Options:
    """RE2 options of every AUP expression: case-insensitive, no captures, errors raised not logged."""
    opts = re2.Options()
    opts.case_sensitive = False
    opts.never_capture = True
    opts.log_errors = False
    opts.max_mem = max_mem
    return opts


def keyword_pattern(keyword: str) -> str:
    """A literal keyword as a pattern: escaped, any whitespace between words, whole words at the ends."""
    words = keyword.split()
    body = r"\s+".join(re2.escape(w) for w in words)
    start = r"\b" if words[0][0].isalnum() or words[0][0] == "_" else ""
    end = r"\b" if words[-1][-1].isalnum() or words[-1][-1] == "_" else ""
    return f"{start}{body}{end}"


class PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AupCategory(PolicyModel):
    """One kind of prohibited or watched content."""

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{0,62}$", description="Category id, e.g. mass-casualty-weapons.")
    description: str = Field(min_length=10, description="What the category covers, for people.")
    action: AupAction = Field(description="block: refuse with 400; flag: forward and record in the audit log.")
    patterns: tuple[str, ...] = Field(default=(), description="RE2 expressions, case-insensitive.")
    keywords: tuple[str, ...] = Field(default=(), description="Literal words or phrases, whole words, any case.")

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for i, pattern in enumerate(patterns):
            try:
                compiled = re2.compile(pattern, rx_options())
            except re2.error as err:
                raise ValueError(
                    f"patterns[{i}] is not a valid RE2 expression ({err}); RE2 has no backreferences or "
                    "look-around: rewrite the pattern without them"
                ) from None
            if compiled.search("") is not None:
                raise ValueError(f"patterns[{i}] matches the empty string and would match every request")
        return patterns

    @field_validator("keywords")
    @classmethod
    def _keywords_plain(cls, keywords: tuple[str, ...]) -> tuple[str, ...]:
        for i, kw in enumerate(keywords):
            if not kw.strip() or len(kw) > 200 or "\n" in kw:
                raise ValueError(f"keywords[{i}] must be a non-empty phrase on one line (at most 200 characters)")
        return keywords

    @model_validator(mode="after")
    def _has_rules(self) -> AupCategory:
        if not self.patterns and not self.keywords:
            raise ValueError(f"category {self.id!r} has neither patterns nor keywords; add at least one")
        return self

    def sources(self) -> tuple[str, ...]:
        """Every expression of the category: its patterns, then its keywords as patterns."""
        return self.patterns + tuple(keyword_pattern(k) for k in self.keywords)


class AupPolicyFile(PolicyModel):
    """One provider's ``aup.yaml``."""

    provider: AupProvider = Field(description="openai, anthropic, google or in-cluster; equals the directory name.")
    version: str = Field(min_length=1, description="Version of the file, e.g. the date of its last review.")
    description: str = Field(default="", description="What the policy covers, for people.")
    categories: tuple[AupCategory, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> AupPolicyFile:
        seen: set[str] = set()
        for cat in self.categories:
            if cat.id in seen:
                raise ValueError(f"category id {cat.id!r} appears twice; ids must be unique in a file")
            seen.add(cat.id)
        return self


class AupPolicyError(ComplianceConfigError):
    """A policy file is unusable; ``problems`` name the file and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, "AUP policy file")


def parse_policy_file(text: str | bytes, source: str = "<policy>") -> AupPolicyFile:
    """Parse and validate one policy file's content; ``source`` names it in the errors."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise AupPolicyError([f"{source}: not valid YAML ({err})"]) from None
    if not isinstance(doc, dict):
        raise AupPolicyError([f"{source}: must be a mapping with provider, version and categories"])
    try:
        return AupPolicyFile.model_validate(doc)
    except ValidationError as err:
        raise AupPolicyError([f"{source}: {v}" for v in violations_from_validation_error(err)]) from None


def load_policy_file(path: Path) -> AupPolicyFile:
    """Load ``<dir>/<provider>/aup.yaml``; the ``provider`` field must equal the directory name."""
    source = str(path)
    try:
        text = path.read_bytes()
    except OSError as err:
        raise AupPolicyError([f"{source}: cannot be read ({err.strerror or err})"]) from None
    policy = parse_policy_file(text, source)
    if policy.provider != path.parent.name:
        raise AupPolicyError([
            f"{source}: provider is {policy.provider!r} but the file is in directory {path.parent.name!r}; "
            "they must agree"
        ])
    return policy


class PolicyLibrary(Mapping[str, AupPolicyFile]):
    """The policy files of one directory, by provider."""

    def __init__(self, policies: Mapping[str, AupPolicyFile], directory: Path | None = None) -> None:
        self._policies = dict(policies)
        self.directory = directory

    def __getitem__(self, provider: str) -> AupPolicyFile:
        return self._policies[provider]

    def __iter__(self) -> Iterator[str]:
        return iter(self._policies)

    def __len__(self) -> int:
        return len(self._policies)

    def path_of(self, provider: str) -> str:
        base = self.directory if self.directory is not None else Path("policies")
        return str(base / provider / POLICY_FILE_NAME)


_PROVIDER_DIR = re.compile(r"[a-z][a-z0-9-]*")


def load_policy_library(directory: Path | None = None) -> PolicyLibrary:
    """Load every ``<directory>/<provider>/aup.yaml`` (default: the shipped policies).

    Raises :class:`AupPolicyError` listing every unusable file; an empty or missing directory is an
    error too (a gateway without policies would enforce nothing).
    """
    base = SHIPPED_POLICY_DIR if directory is None else directory
    if not base.is_dir():
        raise AupPolicyError([f"{base}: the AUP policy directory does not exist"])
    policies: dict[str, AupPolicyFile] = {}
    problems: list[str] = []
    for sub in sorted(base.iterdir()):
        path = sub / POLICY_FILE_NAME
        if not sub.is_dir() or not _PROVIDER_DIR.fullmatch(sub.name) or not path.is_file():
            continue
        try:
            policies[sub.name] = load_policy_file(path)
        except AupPolicyError as err:
            problems.extend(err.problems)
    if problems:
        raise AupPolicyError(problems)
    if not policies:
        raise AupPolicyError([f"{base}: no <provider>/{POLICY_FILE_NAME} files found"])
    return PolicyLibrary(policies, base)
