"""The JSON shapes of task output, usage, synchronous answers and list items.

From docs/dashscope.md §Tasks, §Results and §Task list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.simulator.clock import epoch_ms, format_task_time
from bot.simulator.models import ROUTE_FUNCTION, Protocol
from bot.simulator.tasks import CANCELED, FAILED, PENDING, RUNNING, SUCCEEDED, UNKNOWN, Task

UrlFor = Callable[[int], str]
PROMPT_EXTENSION = (
    ", rendered with rich detail, balanced composition, soft natural light and crisp focus"
)


def actual_prompt(prompt: str) -> str:
    """What the simulated prompt rewriter makes of a prompt (deterministic)."""
    return prompt.rstrip(" .,;") + PROMPT_EXTENSION


def size_text(task: Task) -> str:
    return f"{task.size[0]}*{task.size[1]}"


def usage(task: Task) -> dict[str, Any]:
    if task.video is not None:
        # `duration`, `SR`: the documented shape; `video_duration`, `video_ratio`: what the SDK's
        # VideoSynthesisUsage reads (wanx2.1's shape).
        return {
            "duration": task.video.seconds,
            "video_count": 1,
            "SR": task.video.sr,
            "video_duration": task.video.seconds,
            "video_ratio": size_text(task),
        }
    count = len(task.succeeded_images())
    if task.model.protocol is Protocol.MESSAGES:
        return {
            "image_count": count,
            "input_tokens": 0,
            "output_tokens": 0,
            "size": size_text(task),
            "total_tokens": 0,
        }
    return {"image_count": count}


def choices(task: Task, url_for: UrlFor) -> list[dict[str, Any]]:
    return [
        {
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": [{"image": url_for(i), "type": "image"}]},
        }
        for i in task.succeeded_images()
    ]


def results(task: Task, url_for: UrlFor) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i in range(task.n):
        failed = task.outcome.failed_images.get(i)
        if failed:
            entries.append({"code": failed[0], "message": failed[1]})
            continue
        entry = {"url": url_for(i), "orig_prompt": task.prompt}
        if task.prompt_extend:
            entry["actual_prompt"] = actual_prompt(task.prompt)
        entries.append(entry)
    return entries


def metrics(task: Task, status: str) -> dict[str, int]:
    succeeded = len(task.succeeded_images()) if status == SUCCEEDED else 0
    failed = task.n - succeeded if status in (SUCCEEDED, FAILED) else 0
    return {"TOTAL": task.n, "SUCCEEDED": succeeded, "FAILED": failed}


def task_output(task: Task, status: str, url_for: UrlFor) -> dict[str, Any]:
    """`output` of GET /tasks/{id} for a task in `status`."""
    output: dict[str, Any] = {"task_id": task.task_id, "task_status": status}
    if status == UNKNOWN:
        return output
    output["submit_time"] = format_task_time(task.submitted_at)
    if status in (PENDING, CANCELED):
        return output
    assert task.started_at is not None and task.ended_at is not None
    output["scheduled_time"] = format_task_time(task.started_at)
    if status == RUNNING:
        if task.video is None:
            output["task_metrics"] = metrics(task, status)
        return output
    output["end_time"] = format_task_time(task.ended_at)
    if status == FAILED:
        assert task.outcome.failure is not None
        output["code"], output["message"] = task.outcome.failure
        if task.video is None:
            output["task_metrics"] = metrics(task, status)
    elif task.video is not None:
        output["video_url"] = url_for(0)
        output["orig_prompt"] = task.prompt
        if task.prompt_extend:
            output["actual_prompt"] = actual_prompt(task.prompt)
    elif task.model.protocol is Protocol.MESSAGES:
        output["choices"] = choices(task, url_for)
        output["finished"] = True
    else:
        output["results"] = results(task, url_for)
        output["task_metrics"] = metrics(task, status)
    return output


def unknown_body(task_id: str) -> dict[str, Any]:
    """GET /tasks/{id} for an id that does not exist (any more): still HTTP 200."""
    return {"output": {"task_id": task_id, "task_status": UNKNOWN}}


def task_body(task: Task, status: str, url_for: UrlFor) -> dict[str, Any]:
    """The body of GET /tasks/{id} without its request_id."""
    body: dict[str, Any] = {"output": task_output(task, status, url_for)}
    if status == SUCCEEDED:
        body["usage"] = usage(task)
    return body


def sync_body(task: Task, url_for: UrlFor) -> dict[str, Any]:
    """The answer of a synchronous call whose task succeeded."""
    if task.model.protocol is Protocol.MESSAGES:
        output = {"choices": choices(task, url_for), "finished": True}
    else:
        output = task_output(task, SUCCEEDED, url_for)
    return {"output": output, "usage": usage(task)}


def list_item(task: Task, status: str, region: str) -> dict[str, Any]:
    item: dict[str, Any] = {
        "api_key_id": task.api_key_id,
        "caller_parent_id": "simulator",
        "caller_uid": "simulator",
        "gmt_create": epoch_ms(task.submitted_at),
        "model_name": task.model.name,
        "region": region,
        "request_id": task.request_id,
        "status": status,
        "task_id": task.task_id,
        "user_api_unique_key": (
            f"apikey:v1:aigc:{task.route.value}:{ROUTE_FUNCTION[task.route]}:{task.model.name}"
        ),
    }
    if task.started_at is not None and status != PENDING:
        item["start_time"] = epoch_ms(task.started_at)
    finished = task.finished_at()
    if finished is not None and status not in (PENDING, RUNNING):
        item["end_time"] = epoch_ms(finished)
    return item
