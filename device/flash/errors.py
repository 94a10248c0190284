"""The failures of a flash: each a :class:`FlashError` with a one-line message the user can act on."""

from __future__ import annotations

from edge_affectsr.bundle import BundleError
from edge_affectsr.errors import UserError


class FlashError(UserError):
    """A flash that cannot go on; the message (one line) says what and where."""


class UnreachableHostError(FlashError):
    """The ssh target does not answer (refused, no route, timed out, unknown name)."""


class PermissionDeniedError(FlashError):
    """Login refused, or the target folder (or systemctl) is not writable/allowed for this user."""


class NoSpaceError(FlashError):
    """The target's filesystem has no room for the release."""


class TamperedBundleError(FlashError, BundleError):
    """The bundle fails verification here (a file's sha256, a missing file, a bad or newer manifest, a
    path that leaves the bundle, a signature the trusted keys do not accept)."""


class FlashLockedError(FlashError):
    """Another flash to the same target holds its lock; the message names the holder."""


class SelfTestFailedError(FlashError):
    """The copied bundle did not pass ``selftest`` on the target (or it could not be run there)."""


class ServiceError(FlashError):
    """``systemctl restart`` failed on the target."""


class HealthCheckError(FlashError):
    """The health URL did not answer 200 within the timeout after the restart."""


def one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, cut at ``limit``: every FlashError message is one line."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def last_line(*texts: str | None) -> str:
    """The last non-empty line of the first text that has one."""
    for text in texts:
        lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
        if lines:
            return one_line(lines[-1])
    return "no output"
