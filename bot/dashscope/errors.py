"""The typed error tree for DashScope answers.

Every error carries the HTTP status, DashScope's code and message, the request id and the task
id, as data: its message key (chosen by its class, and for content refusals by what was refused)
and the values those words need. The words are `bot.presenter`'s, so the client knows no
language. `error_from_response` maps the documented codes (docs/dashscope.md §Errors) onto the classes; an
unknown code falls back on its HTTP status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bot.errors import UserError

CONTENT_INPUT_TEXT = "input_text"
CONTENT_INPUT_IMAGE = "input_image"
CONTENT_OUTPUT = "output"
CONTENT_UNKNOWN = "unknown"


class DashScopeError(UserError):
    """Base of every error raised by the client. Never holds the API key."""

    message_key: ClassVar[str] = "error.server"
    #: Whether sending the same request again later may succeed.
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        task_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id
        self.task_id = task_id

    def __str__(self) -> str:
        parts = [f"{self.code or type(self).__name__}: {self.message}"]
        if self.status is not None:
            parts.append(f"HTTP {self.status}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        if self.task_id:
            parts.append(f"task {self.task_id}")
        return " (".join(parts[:1]) + (" (" + ", ".join(parts[1:]) + ")" if parts[1:] else "")

    @property
    def values(self) -> Mapping[str, object]:
        return {"detail": self.message, "code": self.code or "?"}


class AuthenticationError(DashScopeError):
    message_key = "error.authentication"


class PermissionDeniedError(DashScopeError):
    """Access denied to the model, the workspace, or the account is in arrears."""

    message_key = "error.permission"


class BadRequestError(DashScopeError):
    message_key = "error.bad_request"


class NotFoundError(DashScopeError):
    message_key = "error.not_found"


class ContentRejectedError(DashScopeError):
    """Moderation refused the input text, an input image, or the output."""

    def __init__(self, message: str, *, subject: str = CONTENT_UNKNOWN, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.subject = subject

    @property
    def ip_infringement(self) -> bool:
        return self.code == "IPInfringementSuspect"

    @property
    def key(self) -> str:
        return "error.content.ip" if self.ip_infringement else f"error.content.{self.subject}"


class RateLimitedError(DashScopeError):
    message_key = "error.rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(DashScopeError):
    message_key = "error.server"
    retryable = True


class TaskFailedError(DashScopeError):
    """A task ended FAILED (or CANCELED) with a code that is not about content."""

    message_key = "error.task_failed"


class TaskExpiredError(DashScopeError):
    """The task reads UNKNOWN: it never existed for this account, or it is older than 24 h."""

    message_key = "error.task_expired"


class ConnectionFailedError(DashScopeError):
    """The request never reached DashScope (connect refused, DNS, connect timeout)."""

    message_key = "error.connection"
    retryable = True


class SubmissionOutcomeUnknownError(DashScopeError):
    """A creating request was sent but its answer was lost: a task may exist and be billed."""

    message_key = "error.outcome_unknown"


class ResponseFormatError(DashScopeError):
    """A 2xx answer whose body we cannot read."""

    message_key = "error.bad_response"


class DownloadError(DashScopeError):
    """A result URL could not be fetched (expired, refused by the allow-list, too large)."""

    message_key = "error.download"


class DownloadRefused(DownloadError):
    """The URL was refused without being fetched whole (off the allow-list, a bad redirect, over
    the size cap): asking again cannot succeed, so the image is dropped, not retried."""


# Codes whose family is decided by a prefix (docs/dashscope.md §Errors).
_PREFIXES: tuple[tuple[str, type[DashScopeError]], ...] = (
    ("InvalidApiKey", AuthenticationError),
    ("NOT AUTHORIZED", AuthenticationError),
    ("AccessDenied", PermissionDeniedError),
    ("Model.AccessDenied", PermissionDeniedError),
    ("Workspace.AccessDenied", PermissionDeniedError),
    ("App.AccessDenied", PermissionDeniedError),
    ("AllocationQuota", PermissionDeniedError),
    ("Arrearage", PermissionDeniedError),
    ("CommodityNotPurchased", PermissionDeniedError),
    ("PrepaidBillOverdue", PermissionDeniedError),
    ("PostpaidBillOverdue", PermissionDeniedError),
    ("Throttling", RateLimitedError),
    # Quota used up: waiting seconds will not help, the operator must act.
    ("Throttling.AllocationQuota", PermissionDeniedError),
    ("InvalidParameter", BadRequestError),
    ("InvalidURL", BadRequestError),
    ("InvalidImage", BadRequestError),
    ("BadRequest", BadRequestError),
    ("UnsupportedOperation", BadRequestError),
    ("ModelNotFound", NotFoundError),
    ("model_not_found", NotFoundError),
    ("WorkSpaceNotFound", NotFoundError),
    ("NotFound", NotFoundError),
    ("InternalError", ServerError),
    ("SystemError", ServerError),
    ("RequestTimeOut", ServerError),
    ("ModelServingError", ServerError),
    ("ModelUnavailable", ServerError),
)

_CONTENT_CODES = ("DataInspectionFailed", "IPInfringementSuspect")

_BY_STATUS: dict[int, type[DashScopeError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ServerError,
    409: ServerError,
    429: RateLimitedError,
}


def content_subject(message: str) -> str:
    """Which part moderation refused, from DashScope's wording (docs/dashscope.md §Moderation)."""
    lowered = message.lower()
    if "input or output" in lowered:
        return CONTENT_UNKNOWN
    if "input text" in lowered:
        return CONTENT_INPUT_TEXT
    if "image" in lowered and "input" in lowered:
        return CONTENT_INPUT_IMAGE
    if lowered.startswith("output") or "output data" in lowered:
        return CONTENT_OUTPUT
    # "Input data may contain…" does not say whether the text or an image was refused.
    return CONTENT_UNKNOWN


def error_class_for(code: str | None, status: int | None) -> type[DashScopeError]:
    if code:
        # Longest prefix first so that e.g. "Model.AccessDenied" beats "AccessDenied".
        for prefix, cls in sorted(_PREFIXES, key=lambda p: -len(p[0])):
            if code.startswith(prefix):
                return cls
    if status is not None:
        if status >= 500:
            return ServerError
        if status in _BY_STATUS:
            return _BY_STATUS[status]
    return DashScopeError


def error_from_response(
    status: int | None,
    code: str | None,
    message: str | None,
    request_id: str | None,
    *,
    retry_after: float | None = None,
    task_id: str | None = None,
) -> DashScopeError:
    message = message or "(no message)"
    common: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": request_id,
        "task_id": task_id,
    }
    if code in _CONTENT_CODES:
        subject = CONTENT_UNKNOWN if code == "IPInfringementSuspect" else content_subject(message)
        return ContentRejectedError(message, subject=subject, **common)
    cls = error_class_for(code, status)
    if cls is RateLimitedError:
        return RateLimitedError(message, retry_after=retry_after, **common)
    return cls(message, **common)


def error_from_task(
    code: str | None, message: str | None, *, task_id: str, request_id: str | None
) -> DashScopeError:
    """The error for a FAILED task: content refusals keep their class, the rest is TaskFailed."""
    if code in _CONTENT_CODES:
        return error_from_response(None, code, message, request_id, task_id=task_id)
    return TaskFailedError(
        message or "task failed", code=code, request_id=request_id, task_id=task_id
    )
