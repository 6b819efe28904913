"""The error raised when a routing table's compliance settings cannot be compiled."""

from __future__ import annotations


class ComplianceConfigError(ValueError):
    """The compliance part of a routing table (or a policy file) is unusable.

    ``problems`` lists ``field: message`` lines that name the field or file and say what to do; the
    gateway should refuse the table (keep serving the previous one), as it does for an invalid table.
    """

    def __init__(self, problems: list[str], what: str = "compliance settings") -> None:
        self.problems = problems
        super().__init__(f"invalid {what}: " + "; ".join(problems))
