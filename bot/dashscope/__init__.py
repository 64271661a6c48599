"""Async client for Alibaba's Wan image APIs (DashScope)."""

from bot.dashscope.client import DashScopeClient, raise_for_task
from bot.dashscope.errors import (
    AuthenticationError,
    BadRequestError,
    ConnectionFailedError,
    ContentRejectedError,
    DashScopeError,
    DownloadError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ResponseFormatError,
    ServerError,
    SubmissionOutcomeUnknownError,
    TaskExpiredError,
    TaskFailedError,
)
from bot.dashscope.models import MODELS, Kind, ModelSpec, get_model
from bot.dashscope.requests import ImageRequest, validate
from bot.dashscope.results import SubmittedTask, TaskPage, TaskResult, TaskState
from bot.dashscope.retry import RetryPolicy

__all__ = [
    "MODELS",
    "AuthenticationError",
    "BadRequestError",
    "ConnectionFailedError",
    "ContentRejectedError",
    "DashScopeClient",
    "DashScopeError",
    "DownloadError",
    "ImageRequest",
    "Kind",
    "ModelSpec",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitedError",
    "ResponseFormatError",
    "RetryPolicy",
    "ServerError",
    "SubmissionOutcomeUnknownError",
    "SubmittedTask",
    "TaskExpiredError",
    "TaskFailedError",
    "TaskPage",
    "TaskResult",
    "TaskState",
    "get_model",
    "raise_for_task",
    "validate",
]
