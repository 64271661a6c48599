"""An async client for the Wan image APIs on httpx.

Retries: 429, 5xx and transport errors are retried with jittered exponential backoff, honouring
Retry-After. Requests that *create* something billable (a task submission, a synchronous
generation) are retried only when DashScope provably did not act on them:

* the connection was never made (connect error or timeout, no free pooled connection), or
* DashScope itself answered with an error envelope (429 Throttling, 500 InternalError,
  503 ModelUnavailable...): an error answer carries no task id, so no task exists to bill.

When the request went out and its answer was lost (read timeout, dropped connection, or a
gateway's 502/504 without a DashScope envelope, where the upstream may have acted), a task may
already exist and be billed. Sending it again could pay twice for one job, so the client raises
`SubmissionOutcomeUnknownError` instead and leaves the decision to the caller, which can look
for the orphan with `list_tasks` (by model and time window). Idempotent reads (task queries,
lists) are retried on every transient failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr

from bot.dashscope import constants
from bot.dashscope.errors import (
    ConnectionFailedError,
    DashScopeError,
    RateLimitedError,
    ResponseFormatError,
    SubmissionOutcomeUnknownError,
    TaskExpiredError,
    error_from_response,
    error_from_task,
)
from bot.dashscope.requests import ImageRequest, build_body
from bot.dashscope.results import (
    DASHSCOPE_TZ,
    SubmittedTask,
    TaskPage,
    TaskResult,
    TaskState,
    parse_submitted,
    parse_task,
    parse_task_page,
)
from bot.dashscope.retry import RetryPolicy, retry_after_seconds

log = logging.getLogger(__name__)

# Transport failures that happen before a request is on the wire: safe to retry anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSPORT = (httpx.TransportError,)

# How the simple `wait` polls: quick at first, then every few seconds.
WAIT_INTERVALS = (1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0)

UpdateCallback = Callable[[TaskResult], Awaitable[None] | None]


class DashScopeClient:
    """Talks to one DashScope gateway with one API key.

    Pass an `httpx.AsyncClient` to share a connection pool; otherwise the client makes and owns
    one. Use as `async with DashScopeClient(...) as client:`.
    """

    def __init__(
        self,
        api_key: SecretStr | str,
        base_url: str,
        *,
        http: httpx.AsyncClient | None = None,
        workspace: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._api_key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False)
        self._workspace = workspace
        self.retry = retry or RetryPolicy()

    def with_retry(self, retry: RetryPolicy) -> DashScopeClient:
        """The same key, gateway and connection pool with another retry policy."""
        twin = DashScopeClient(
            self._api_key, self.base_url, http=self._http, workspace=self._workspace, retry=retry
        )
        twin._owns_http = False
        return twin

    def __repr__(self) -> str:
        return f"DashScopeClient(base_url={self.base_url!r}, api_key=SecretStr('**********'))"

    async def __aenter__(self) -> DashScopeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- the API -------------------------------------------------------------------------

    async def submit(self, request: ImageRequest) -> SubmittedTask:
        """Create an asynchronous task; returns its id. The request should be validated."""
        body = await self._call(
            "POST",
            request.spec.async_path,
            json=build_body(request),
            headers={"X-DashScope-Async": "enable"},
            timeout=constants.SUBMIT_TIMEOUT,
            creates=True,
        )
        return _parse(parse_submitted, body)

    async def generate(self, request: ImageRequest) -> TaskResult:
        """Run a synchronous generation (wan2.6-t2i, wan2.2-t2i-*); may take minutes."""
        spec = request.spec
        if spec.sync_path is None:
            raise ValueError(f"{spec.name} has no synchronous endpoint")
        body = await self._call(
            "POST",
            spec.sync_path,
            json=build_body(request),
            timeout=constants.SYNC_TIMEOUT,
            creates=True,
        )
        result = _parse(lambda b: parse_task(b, default_state=TaskState.SUCCEEDED), body)
        return raise_for_task(result)

    async def get_task(self, task_id: str) -> TaskResult:
        """One reading of a task. FAILED/UNKNOWN are returned, not raised: see `raise_for_task`."""
        body = await self._call(
            "GET", f"/tasks/{_task_path(task_id)}", timeout=constants.QUERY_TIMEOUT
        )
        return _parse(parse_task, body)

    async def list_tasks(
        self,
        *,
        status: TaskState | None = None,
        model: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        task_id: str | None = None,
        page_no: int = 1,
        page_size: int = 10,
    ) -> TaskPage:
        """List the account's tasks (docs/dashscope.md §Task list); the range spans at most 24 h."""
        params: dict[str, str | int] = {"page_no": page_no, "page_size": page_size}
        if start is not None:
            params["start_time"] = _list_time(start)
        if end is not None:
            params["end_time"] = _list_time(end)
        if model:
            params["model_name"] = model
        if status is not None:
            params["status"] = status.value
        if task_id:
            params["task_id"] = task_id
        body = await self._call("GET", "/tasks", params=params, timeout=constants.QUERY_TIMEOUT)
        return _parse(parse_task_page, body)

    async def cancel_task(self, task_id: str) -> str | None:
        """Cancel a PENDING task; returns the request id. Raises BadRequestError otherwise."""
        body = await self._call(
            "POST", f"/tasks/{_task_path(task_id)}/cancel", timeout=constants.QUERY_TIMEOUT
        )
        return body.get("request_id")

    async def wait(
        self,
        task_id: str,
        *,
        on_update: UpdateCallback | None = None,
        intervals: tuple[float, ...] = WAIT_INTERVALS,
        timeout: float | None = None,
    ) -> TaskResult:
        """Poll one task until it finishes; raise the typed error if it did not succeed.

        For one task at a time (the CLI). The bot's engine polls many tasks under one budget.
        """
        started = time.monotonic()
        step = 0
        while True:
            result = await self.get_task(task_id)
            if on_update is not None:
                maybe = on_update(result)
                if maybe is not None:
                    await maybe
            if result.state.finished:
                return raise_for_task(result)
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(f"task {task_id} still {result.state} after {timeout:.0f} s")
            await asyncio.sleep(intervals[min(step, len(intervals) - 1)])
            step += 1

    # --- transport -------------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._api_key.get_secret_value()}",
            "Accept": "application/json",
            "User-Agent": constants.USER_AGENT,
        }
        if self._workspace:
            headers["X-DashScope-WorkSpace"] = self._workspace
        if extra:
            headers.update(extra)
        return headers

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str | int] | None = None,
        headers: dict[str, str] | None = None,
        timeout: httpx.Timeout,
        creates: bool = False,
    ) -> dict[str, Any]:
        url = self.base_url + path
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                response = await self._http.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=self._headers(headers),
                    timeout=timeout,
                )
            except _NOT_SENT as exc:
                error: DashScopeError = ConnectionFailedError(
                    f"could not connect to {httpx.URL(url).host}: {type(exc).__name__}"
                )
            except _TRANSPORT as exc:
                if creates:
                    raise SubmissionOutcomeUnknownError(
                        f"{method} {path}: the answer was lost ({type(exc).__name__}); "
                        "a task may have been created"
                    ) from None
                error = ConnectionFailedError(f"{method} {path}: {type(exc).__name__}")
            else:
                elapsed = (time.monotonic() - started) * 1000
                request_id = response.headers.get("x-request-id")
                log.debug(
                    "dashscope %s %s -> %s in %.0f ms (request %s)",
                    method,
                    path,
                    response.status_code,
                    elapsed,
                    request_id,
                )
                body, envelope = _decode(response)
                if response.is_success and not (
                    isinstance(body, dict) and body.get("code") and "output" not in body
                ):
                    if not isinstance(body, dict):
                        raise ResponseFormatError(
                            "the answer is not a JSON object",
                            status=response.status_code,
                            request_id=request_id,
                        )
                    return body
                error = _error_from(response, body)
                if creates and not envelope and response.status_code >= 500:
                    # A proxy's error page, not DashScope's: the upstream may have acted.
                    raise SubmissionOutcomeUnknownError(
                        f"{method} {path}: HTTP {response.status_code} from a gateway without "
                        "a DashScope answer; a task may have been created",
                        status=response.status_code,
                    )
            if not error.retryable or attempt >= self.retry.max_retries:
                raise error
            retry_after = error.retry_after if isinstance(error, RateLimitedError) else None
            if retry_after is not None and retry_after > self.retry.retry_after_max:
                raise error
            delay = self.retry.backoff.delay(attempt, retry_after)
            log.info(
                "dashscope %s %s failed (%s); retry %d/%d in %.1f s",
                method,
                path,
                error.code or type(error).__name__,
                attempt + 1,
                self.retry.max_retries,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1


def raise_for_task(result: TaskResult) -> TaskResult:
    """Return a SUCCEEDED result; raise the typed error for FAILED, CANCELED and UNKNOWN."""
    if result.state is TaskState.SUCCEEDED:
        return result
    task_id = result.task_id or "?"
    if result.state is TaskState.UNKNOWN:
        raise TaskExpiredError(
            "task not found (expired or never existed)",
            code="UNKNOWN",
            request_id=result.request_id,
            task_id=task_id,
        )
    if result.state is TaskState.CANCELED:
        raise error_from_task(
            result.code or "Canceled",
            result.message or "the task was cancelled",
            task_id=task_id,
            request_id=result.request_id,
        )
    if result.state is TaskState.FAILED:
        raise error_from_task(
            result.code, result.message, task_id=task_id, request_id=result.request_id
        )
    raise ValueError(f"task {task_id} is still {result.state}")


def _task_path(task_id: str) -> str:
    # Task ids are UUIDs; refuse anything that could change the path.
    if not task_id or any(c in task_id for c in "/?#% \t\n") or task_id in (".", ".."):
        raise ValueError("invalid task id")
    return task_id


def _list_time(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(DASHSCOPE_TZ)
    return value.strftime("%Y%m%d%H%M%S")


def _decode(response: httpx.Response) -> tuple[Any, bool]:
    """The JSON body (or None) and whether it is a DashScope envelope (has a request_id)."""
    try:
        body = response.json()
    except ValueError:
        return None, False
    return body, isinstance(body, dict) and ("request_id" in body or "code" in body)


def _error_from(response: httpx.Response, body: Any) -> DashScopeError:
    request_id = response.headers.get("x-request-id")
    code = message = None
    if isinstance(body, dict):
        # Text as documented; anything else (a number, an object) is shown as its JSON text.
        code, message, request_id = (
            value if value is None or isinstance(value, str) else json.dumps(value)
            for value in (
                body.get("code") or None,
                body.get("message") or body.get("msg") or None,
                body.get("request_id") or request_id,
            )
        )
    else:
        message = response.text[:200].strip() or response.reason_phrase
    return error_from_response(
        response.status_code,
        code,
        message,
        request_id,
        retry_after=retry_after_seconds(response.headers),
    )


def _parse(parser: Callable[[dict[str, Any]], Any], body: dict[str, Any]) -> Any:
    try:
        return parser(body)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ResponseFormatError(
            f"unexpected answer: {exc}", request_id=body.get("request_id")
        ) from None
