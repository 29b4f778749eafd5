"""Domain exceptions with stable codes.

Domain code raises these; the web layer maps each class to an HTTP status in one table
(`api.errors.STATUS`) and the CLI prints the message. Messages are safe to show a user and say
what to fix; internal detail (SQL, paths) goes to the log only.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base of every domain error."""

    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(TwinError):
    code = "not-found"


class InvalidParameter(TwinError):
    code = "invalid-parameter"


class LimitExceeded(TwinError):
    code = "limit-exceeded"


class TileOutOfRange(TwinError):
    code = "tile-out-of-range"


class Conflict(TwinError):
    code = "conflict"


class PreconditionFailed(TwinError):
    """An edit made against a version that is no longer current (a stale ETag)."""

    code = "stale-version"


class PreconditionRequired(TwinError):
    code = "if-match-required"


class ReadOnly(TwinError):
    code = "read-only"


class InvalidData(TwinError):
    """A file or payload whose content cannot be loaded (the import report says why)."""

    code = "invalid-data"


class Unauthorized(TwinError):
    """No usable credentials: missing, malformed, expired, revoked or unknown (401)."""

    code = "unauthorized"


class Forbidden(TwinError):
    """Valid credentials without the grant for this action (403)."""

    code = "forbidden"


class TooManyRequests(TwinError):
    """A caller over its rate limit (429); ``retry_after`` in seconds."""

    code = "rate-limited"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DatabaseUnavailable(TwinError):
    code = "database-unavailable"


class SetupError(TwinError):
    """Something missing on the machine (a package, a binary, a permission)."""

    code = "setup"


class PayloadTooLarge(TwinError):
    """A request body over its size limit (413)."""

    code = "payload-too-large"


class StatementTimeout(TwinError):
    """A statement that ran past the statement timeout and was cancelled (504)."""

    code = "statement-timeout"


class ServerBusy(TwinError):
    """Every database connection in use for longer than a request may wait for one (503)."""

    code = "busy"
