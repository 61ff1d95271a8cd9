"""Typed errors. Every expected "no answer" is one of these, never a bare traceback.

The CLI prints ``str(error)`` on one line and exits 1 for any :class:`KvoptError`.
"""

from __future__ import annotations

from collections.abc import Sequence


class KvoptError(Exception):
    """Base of every error kvopt raises on purpose."""


class CatalogError(KvoptError, ValueError):
    """A catalog entry (model card, GPU card, data file) is missing, unknown or malformed."""

    def __init__(self, message: str, *, suggestions: Sequence[str] = ()) -> None:
        self.suggestions = tuple(suggestions)
        if self.suggestions:
            message = f"{message}; did you mean: {', '.join(self.suggestions)}?"
        super().__init__(message)


class InputError(KvoptError, ValueError):
    """A user-supplied value is out of range or inconsistent (names field, value, rule, fix)."""

    def __init__(self, field: str, value: object, rule: str, fix: str = "") -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.fix = fix
        text = f"{field}={value!r}: {rule}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class UnsupportedError(KvoptError):
    """kvopt cannot model this combination (e.g. BF16 on a GPU without BF16 tensor cores)."""


class InfeasiblePlanError(KvoptError):
    """No plan satisfies the constraints; ``data`` carries what binds and the best achievable
    values (e.g. ``budget_shortfall_usd_per_hour``)."""

    def __init__(self, message: str, *, data: dict[str, object] | None = None) -> None:
        self.data = dict(data or {})
        super().__init__(message)


class SolverError(KvoptError, RuntimeError):
    """A solver is unavailable or failed."""
