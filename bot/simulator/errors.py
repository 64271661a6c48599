"""DashScope error replies: the exception the handlers raise and the texts the service uses.

Messages are verbatim from docs/dashscope.md §Errors where it has them, including the service's own
spelling ("occured"); where the real text is unconfirmed the message says plainly what is wrong.
"""

from __future__ import annotations

from typing import NamedTuple


class ErrorSpec(NamedTuple):
    status: int
    code: str
    message: str


class ApiError(Exception):
    """A DashScope error envelope `{"request_id","code","message"}` with its HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, spec: ErrorSpec) -> ApiError:
        return cls(spec.status, spec.code, spec.message)


def invalid_parameter(message: str) -> ApiError:
    return ApiError(400, "InvalidParameter", message)


def parameter_invalid(name: str) -> ApiError:
    return invalid_parameter(
        f"Required parameter({name}) missing or invalid, please check the request parameters."
    )


NO_API_KEY = ErrorSpec(401, "InvalidApiKey", "No API-key provided.")
INVALID_API_KEY = ErrorSpec(401, "InvalidApiKey", "Invalid API-key provided.")
SYNC_NOT_SUPPORTED = ErrorSpec(
    403, "AccessDenied", "current user api does not support synchronous calls"
)
ASYNC_NOT_SUPPORTED = ErrorSpec(
    403, "AccessDenied", "current user api does not support asynchronous calls"
)
MODEL_NOT_EXIST = ErrorSpec(400, "InvalidParameter", "Model not exist.")
URL_ERROR = ErrorSpec(400, "InvalidParameter", "url error, please check url!")
NOT_FOUND = ErrorSpec(404, "NotFound", "Not found!")
EMPTY_MODEL = ErrorSpec(
    400, "BadRequest.EmptyModel", 'Required parameter "model" missing from request.'
)
EMPTY_INPUT = ErrorSpec(
    400, "BadRequest.EmptyInput", "Required input parameter missing from request."
)
ILLEGAL_INPUT = ErrorSpec(
    400, "BadRequest.IllegalInput", "The input parameter requires json format."
)
BODY_INVALID = ErrorSpec(
    400, "InvalidParameter", "Required body invalid, please check the request body format."
)
BODY_TOO_LARGE = ErrorSpec(413, "InvalidParameter", "The request body is too large.")
THROTTLED = ErrorSpec(
    429, "Throttling.RateQuota", "Requests rate limit exceeded, please try again later."
)
INTERNAL_ERROR = ErrorSpec(
    500,
    "InternalError",
    "An internal error has occured, please try again later or contact service support.",
)
MODEL_UNAVAILABLE = ErrorSpec(
    503, "ModelUnavailable", "Model is unavailable, please try again later."
)
CANCEL_UNSUPPORTED = ErrorSpec(
    400,
    "UnsupportedOperation",
    "Failed to cancel the task, please confirm if the task is in PENDING status.",
)
INPUT_INAPPROPRIATE = ErrorSpec(
    400, "DataInspectionFailed", "Input data may contain inappropriate content."
)
IP_INFRINGEMENT = ErrorSpec(
    400, "IPInfringementSuspect", "Input data is suspected of being involved in IP infringement."
)
DOWNLOAD_FAILED = ErrorSpec(
    400,
    "InvalidParameter.DataInspection",
    "Unable to download the media resource during the data inspection process.",
)
DOWNLOAD_TIMEOUT = ErrorSpec(
    400,
    "InvalidParameter.DataInspection",
    "Download the media resource timed out during the data inspection process.",
)
# wan2.6-image's interleaved (text-and-image) output only comes as a stream, which the
# simulator does not serve: the bot never asks for it.
INTERLEAVE_NOT_STREAMED = (
    "enable_interleave=true requires streaming output: send the X-DashScope-SSE: enable header."
)
INTERLEAVE_STREAMED = "Streaming interleaved output is not served by the simulator."

# Codes a task can end with, and the message and HTTP status each has when a synchronous call
# reports it directly.
TASK_FAILURES: dict[str, tuple[int, str]] = {
    "DataInspectionFailed": (400, "Input or output data may contain inappropriate content."),
    "IPInfringementSuspect": (400, IP_INFRINGEMENT.message),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "Arrearage": (400, "Access denied, please make sure your account is in good standing."),
    "InternalError": (500, INTERNAL_ERROR.message),
    "InternalError.Timeout": (
        500,
        "An internal timeout error has occured during execution, "
        "please try again later or contact service support.",
    ),
    "InternalError.Algo": (500, "inference internal error."),
    "InternalError.Upload": (500, "Failed to upload result."),
    "SystemError": (500, "An system error has occured, please try again later."),
    "RequestTimeOut": (500, "Request timed out, please try again later."),
    "ModelUnavailable": (503, MODEL_UNAVAILABLE.message),
}

IMAGE_MODERATION_MESSAGE = (
    "Green net check failed for image (input): Input data may contain inappropriate content."
)
OUTPUT_MODERATION_MESSAGE = "Output data may contain inappropriate content."


def failure_message(code: str) -> str:
    """The message a task failed with `code` carries."""
    known = TASK_FAILURES.get(code)
    return known[1] if known else f"The task failed with {code} (simulated)."


def failure_status(code: str) -> int:
    """The HTTP status a synchronous call answers with when its work failed with `code`."""
    known = TASK_FAILURES.get(code)
    if known:
        return known[0]
    return 500 if code.startswith(("InternalError", "SystemError")) else 400
