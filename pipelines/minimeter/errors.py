"""One flat module of Minimeter's exceptions.

Every exception carries a machine-readable ``category`` and a ``detail`` that is safe to log:
details never contain plaintext, key material, or raw gateway / meter identifiers.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

CmsCategory = Literal[
    "malformed",
    "not-signed",
    "not-encrypted",
    "signature-invalid",
    "untrusted-signer",
    "not-a-recipient",
    "decryption-failed",
    "unsupported-algorithm",
    "payload-too-large",
    "revoked",
]

CMS_CATEGORIES: Final[frozenset[str]] = frozenset(get_args(CmsCategory))


class MinimeterError(Exception):
    """Base of every error Minimeter reports: ``category`` is machine-readable."""

    category: str

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(f"{category}: {detail}")
        self.category = category
        self.detail = detail


class CmsError(MinimeterError):
    """A CMS message could not be parsed, verified, decrypted or re-signed."""

    def __init__(self, category: CmsCategory, detail: str) -> None:
        if category not in CMS_CATEGORIES:  # pragma: no cover - programming error
            raise AssertionError(f"unknown CMS error category {category!r}")
        super().__init__(category, detail)


class ConfigError(MinimeterError):
    """A key, certificate or configuration file could not be used."""

    def __init__(self, detail: str, category: str = "config-invalid") -> None:
        super().__init__(category, detail)


class PolicyError(MinimeterError):
    """Policies, baselines or DPIA records are invalid; ``findings`` lists every problem."""

    def __init__(self, findings: list[str]) -> None:
        self.findings = list(findings)
        first = findings[0] if findings else "invalid policy set"
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__("policy-invalid", first + more)


class PayloadError(MinimeterError):
    """A decrypted payload is not a K461 profile Minimeter can read."""

    def __init__(self, detail: str) -> None:
        super().__init__("payload-invalid", detail)


class PayloadUnsupported(PayloadError):
    """A decrypted payload is in no format Minimeter reads (e.g. a VDE-AR-E 2418-6 document, a
    DSMR telegram, a gateway's plain-text answer). A ``PayloadError``, so that every handler of
    payload errors dead-letters it, but with its own category."""

    def __init__(self, detail: str) -> None:
        MinimeterError.__init__(self, "payload-unsupported", detail)


class SpillError(MinimeterError):
    """A spill file (decoded readings parked between stages) is missing, altered or unreadable."""

    def __init__(self, detail: str) -> None:
        super().__init__("spill-invalid", detail)


EXIT_USAGE = 2
"""Usage or configuration: nothing ran (or nothing moved)."""
EXIT_INPUT = 3
"""An unbalanced run or unreadable input."""
EXIT_CONFORMANCE = 4
"""A recipient failed conformance: its files of the run are in quarantine."""
EXIT_OTHER = 1

_EXIT_BY_CATEGORY = {
    "usage": EXIT_USAGE,
    "config-invalid": EXIT_USAGE,
    "policy-invalid": EXIT_USAGE,
    "unknown-recipient": EXIT_USAGE,
    "output-unwritable": EXIT_USAGE,
    "policy-mismatch": EXIT_USAGE,
    "unknown-meter": EXIT_USAGE,
    "unknown-run": EXIT_USAGE,
    "input-unreadable": EXIT_INPUT,
    "run-unbalanced": EXIT_INPUT,
    "conformance-failed": EXIT_CONFORMANCE,
}


def exit_code(error: MinimeterError) -> int:
    """The documented exit status of an error: 2 usage or configuration, 3 unbalanced run or
    unreadable input, 4 conformance failure, 1 anything else."""
    return _EXIT_BY_CATEGORY.get(error.category, EXIT_OTHER)


class UsageError(MinimeterError):
    """A command line that cannot be run: unknown option, missing or malformed value."""

    def __init__(self, detail: str) -> None:
        super().__init__("usage", detail)
