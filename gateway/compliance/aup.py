"""AUP enforcement: which policies apply to a request, compiled once per routing table, and the check.

Enforcement (``policy.aup.enforcement``):

* ``provider-strictest``: the union of the policies of every channel in the table (each channel's
  ``aupProvider``, else derived from its type, see :func:`channel_aup_providers`), checked once per
  request before routing (the admission seam). In-cluster channels contribute the ``in-cluster``
  policy, so an instance with only vllm channels still enforces its baseline.
* ``per-channel``: the chosen channel's policy, checked per candidate channel (the channel-filter
  seam); a request blocked for one channel may still be served by another whose policy allows it.
* ``off``: nothing; refused when the table has commercial channels (as the operator's validation does).

A set of policies compiles into one :class:`AupMatcher`: a single RE2 alternation of every
expression answers "anything at all?" in one linear pass (the common case ends there), and only
when it matches are the per-category expressions run to name the categories.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import re2  # type: ignore[import-untyped]

from ..routing_table import ChannelRoute, RoutingTable
from .aup_policy import PolicyLibrary, rx_options
from .problems import ComplianceConfigError

#: The AUP provider of each channel type when ``aupProvider`` is not set. ``openai-compatible``
#: means OpenAI's policy: set ``aupProvider`` on channels that reach another provider through an
#: OpenAI-compatible endpoint (e.g. ``google``). byok-passthrough: the request's BYOK provider.
TYPE_AUP_PROVIDER: Mapping[str, str] = {"vllm": "in-cluster", "anthropic": "anthropic", "openai-compatible": "openai"}
#: Memory RE2 may use for the combined expression of one policy set (its DFA cache).
COMBINED_MAX_MEM = 64 << 20

# Characters with no visible glyph that could be slipped between letters to dodge a pattern.
_INVISIBLE: tuple[str, ...] = tuple(chr(c) for c in (
    0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0,
    *range(0x200B, 0x2010), *range(0x202A, 0x202F), *range(0x2060, 0x2070),
))
# Compatibility letters and digits that NFKC folds to ASCII (full-width, circled, mathematical).
_COMPAT_CLASS = "\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u24b6-\u24e9\U0001d400-\U0001d7ff"
_COMPAT = re2.compile(f"[{_COMPAT_CLASS}]", rx_options())
#: Joined to every combined expression: a text holding any of these takes the slow path (normalised, then
#: every category checked), so the common path stays one scan.
SUSPECT_CHARACTERS = "[" + "".join(f"\\x{{{ord(c):x}}}" for c in _INVISIBLE) + _COMPAT_CLASS + "]"

VerdictAction = Literal["allow", "flag", "block"]


class AupConfigError(ComplianceConfigError):
    """The table's AUP settings cannot be compiled (a policy file missing, ``off`` with commercial channels)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems, "AUP settings")


@dataclass(frozen=True, slots=True)
class AupVerdict:
    """The outcome of one check: ``allow``, ``flag`` (``flags``: category ids) or ``block`` (the first
    blocking ``category``; ``providers``: every applied policy that blocks it, ``provider`` the first;
    ``flags`` may be set too)."""

    action: VerdictAction
    category: str | None = None
    providers: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def provider(self) -> str | None:
        return self.providers[0] if self.providers else None

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def label(self) -> str:
        """Short form for audit rows: ``allow``, ``flag:a,b``, ``block:cat@provider``."""
        if self.action == "block":
            return f"block:{self.category}@{self.provider}"
        if self.action == "flag":
            return "flag:" + ",".join(self.flags)
        return "allow"


ALLOW = AupVerdict("allow")


def normalize_text(text: str) -> str:
    """What the patterns see: compatibility letters (full-width, circled, mathematical) folded to plain
    ones by NFKC, and invisible format characters removed. ASCII text is returned as is."""
    if text.isascii():
        return text
    if _COMPAT.search(text) is not None:
        text = unicodedata.normalize("NFKC", text)
    for ch in _INVISIBLE:
        if ch in text:
            text = text.replace(ch, "")
    return text


@dataclass(frozen=True, slots=True, eq=False)
class _Rule:
    id: str
    action: str
    providers: tuple[str, ...]
    source: str
    regex: Any


class AupMatcher:
    """The compiled policies of a set of providers. :meth:`check` is pure and thread-safe."""

    __slots__ = ("_any", "_patterns", "_rules", "_set", "providers", "versions")

    def __init__(self, library: PolicyLibrary, providers: Iterable[str]) -> None:
        self.providers = tuple(sorted(set(providers)))
        self.versions = {p: library[p].version for p in self.providers}
        grouped: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
        for provider in self.providers:
            for cat in library[provider].categories:
                grouped.setdefault((cat.id, cat.action, cat.sources()), []).append(provider)
        blocks: list[_Rule] = []
        flags: list[_Rule] = []
        every: list[str] = []
        for (cid, action, sources), owners in grouped.items():
            source = "|".join(f"(?:{s})" for s in sources)
            every.extend(s for s in sources if s not in every)
            rule = _Rule(cid, action, tuple(owners), source, re2.compile(source, rx_options()))
            (blocks if action == "block" else flags).append(rule)
        self._rules = tuple(blocks + flags)
        self._set = re2.Set.SearchSet(rx_options(COMBINED_MAX_MEM))
        for rule in self._rules:
            self._set.Add(rule.source)
        self._set.Compile()
        alternatives = [f"(?:{s})" for s in every]
        self._patterns = re2.compile("|".join(alternatives), rx_options(COMBINED_MAX_MEM)) if every else None
        self._any = (
            re2.compile("|".join([*alternatives, SUSPECT_CHARACTERS]), rx_options(COMBINED_MAX_MEM)) if every else None
        )

    @property
    def empty(self) -> bool:
        return self._any is None

    def check(self, text: str) -> AupVerdict:
        """The verdict for ``text`` (the output of :func:`~newapi_gateway.compliance.extract.request_text`)."""
        combined = self._any
        if combined is None or not text:
            return ALLOW
        data = text.encode()
        if combined.search(data) is None:  # the common case: one linear scan
            return ALLOW
        if not text.isascii():  # the match may be a suspect character: normalise, then look again
            clean = normalize_text(text)
            if clean is not text:
                data = clean.encode()
            if self._patterns is None or self._patterns.search(data) is None:
                return ALLOW
        block: _Rule | None = None
        flags: list[str] = []
        for rule in self._matching_rules(data):
            if rule.action == "block":
                if block is None:
                    block = rule
            elif rule.id not in flags:
                flags.append(rule.id)
        if block is not None:
            return AupVerdict("block", block.id, block.providers, tuple(flags))
        if flags:
            return AupVerdict("flag", flags=tuple(flags))
        return ALLOW

    def _matching_rules(self, data: bytes) -> list[_Rule]:
        """Every rule matching ``data``, in rule order: one pass of the RE2 set; when the set finds
        nothing (it also answers nothing when its automaton runs out of memory), each rule on its own."""
        hits = self._set.Match(data)
        if hits:
            return [self._rules[i] for i in sorted(hits)]
        return [rule for rule in self._rules if rule.regex.search(data) is not None]

    def __repr__(self) -> str:
        return f"AupMatcher({', '.join(self.providers) or 'no policy'})"


def channel_aup_providers(channel: ChannelRoute, byok_provider: str | None = None) -> tuple[str, ...]:
    """The AUP policies that apply to ``channel``: ``aupProvider`` when set, else by type; for
    byok-passthrough the request's provider, or every allowed provider when it is not known."""
    if channel.aup_provider is not None:
        return (channel.aup_provider,)
    if channel.type == "byok-passthrough":
        if byok_provider is not None:
            return (byok_provider,)
        return tuple(sorted(set(channel.allowed_providers)))
    return (TYPE_AUP_PROVIDER[channel.type],)


@dataclass(frozen=True, slots=True, eq=False)
class AupPlan:
    """The AUP part of a routing table, compiled (see :func:`compile_aup_plan`)."""

    enforcement: str
    #: provider-strictest: the one matcher checked at admission (None: nothing to check)
    strictest: AupMatcher | None
    #: per-channel: channel name -> matcher (byok channels: every allowed provider)
    per_channel: Mapping[str, AupMatcher]
    #: per-channel, byok channels without aupProvider: (channel name, provider) -> matcher
    per_byok_provider: Mapping[tuple[str, str], AupMatcher]

    def for_channel(self, channel: str, byok_provider: str | None = None) -> AupMatcher | None:
        """per-channel: the matcher of ``channel`` (for ``byok_provider`` on a BYOK channel)."""
        if byok_provider is not None:
            matcher = self.per_byok_provider.get((channel, byok_provider))
            if matcher is not None:
                return matcher
        return self.per_channel.get(channel)


def compile_aup_plan(table: RoutingTable, library: PolicyLibrary) -> AupPlan:
    """Compile the AUP enforcement of ``table``; raise :class:`AupConfigError` when a needed policy file
    is missing or ``off`` is set while commercial channels are bound. Matchers are shared between
    channels with the same policy set."""
    enforcement = table.policy.aup.enforcement
    if enforcement == "off":
        commercial = sorted(ch.name for ch in table.channels if ch.commercial)
        if commercial:
            raise AupConfigError([
                "aup.enforcement: 'off' is not allowed while commercial channels are bound "
                f"({', '.join(commercial)}); use provider-strictest or per-channel"
            ])
        return AupPlan("off", None, {}, {})
    problems: list[str] = []
    for ch in table.channels:
        for provider in channel_aup_providers(ch):
            if provider not in library:
                problems.append(
                    f"channels[{ch.name}]: needs the AUP policy {library.path_of(provider)}, which is missing; "
                    "ship it or set aupProvider to a provider that has one"
                )
    if problems:
        raise AupConfigError(sorted(set(problems)))
    cache: dict[frozenset[str], AupMatcher] = {}

    def matcher(providers: Iterable[str]) -> AupMatcher:
        key = frozenset(providers)
        found = cache.get(key)
        if found is None:
            found = cache[key] = AupMatcher(library, key)
        return found

    if enforcement == "provider-strictest":
        union = {p for ch in table.channels for p in channel_aup_providers(ch)}
        return AupPlan(enforcement, matcher(union) if union else None, {}, {})
    per_channel: dict[str, AupMatcher] = {}
    per_byok: dict[tuple[str, str], AupMatcher] = {}
    for ch in table.channels:
        per_channel[ch.name] = matcher(channel_aup_providers(ch))
        if ch.type == "byok-passthrough" and ch.aup_provider is None:
            for provider in ch.allowed_providers:
                per_byok[(ch.name, provider)] = matcher((provider,))
    return AupPlan(enforcement, None, per_channel, per_byok)
