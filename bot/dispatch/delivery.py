"""The delivery port: how the engine hands status changes and finished images to a front end.

The Discord layer implements it with messages in a thread; the worker and the crash tests with
files. `deliver` must be idempotent per `job.idempotency_key`: after a crash the engine may call
it again for a job whose images already went out (Discord's message nonce, a file manifest).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.jobs.model import Job


@dataclass(frozen=True)
class DeliveredImage:
    """One result (an image, or a job's one video) downloaded for delivery. `url` and
    `expires_at` are where DashScope keeps it and until when: a video too large to upload even
    re-encoded is posted as that link."""

    position: int
    content: bytes
    content_type: str | None
    url: str | None = None
    expires_at: float | None = None


class DeliveryError(Exception):
    """Delivery failed. `retryable` says whether trying again later may work."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class DeliveryPort(Protocol):
    async def status_changed(self, job: Job, position: int | None = None) -> bool | None:
        """Best effort: the job moved (or its queue position changed). Errors are logged.
        False: a final status could not be shown for a passing reason (shown again at the next
        start). Not called when a job fails: `failed` shows that final status."""

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        """Post the images; return a message id per image (None where there is none)."""

    async def failed(self, job: Job, message: str) -> bool | None:
        """Tell the user in words why the job ended without images (its final status).
        False: not told for a passing reason (told again at the next start)."""

    async def place_again(self, job: Job) -> tuple[int | None, int | None] | None:
        """A queued job a crash left unplaced (accepted, but its status message never
        recorded): show it again and return (status message id, thread id) to record, or None
        if it can never be shown (the engine then fails it, refunded, and tells the user).
        Raises for a passing failure: the job then runs without its status message."""


class FileDelivery:
    """Writes each job's images (a video job's one MP4) and a manifest to a folder; idempotent
    per job."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def manifest_path(self, job: Job) -> Path:
        return self.folder / f"{job.idempotency_key}.json"

    async def status_changed(self, job: Job, position: int | None = None) -> None:
        return None

    async def place_again(self, job: Job) -> tuple[int | None, int | None] | None:
        return (None, None)  # files need no status message

    async def deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        return await asyncio.to_thread(self._deliver, job, images)

    def _deliver(self, job: Job, images: list[DeliveredImage]) -> list[int | None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "attempts.log").open("a", encoding="utf-8") as log:
            log.write(f"{job.idempotency_key}\n")
        manifest = self.manifest_path(job)
        if manifest.exists():  # delivered before a crash: answer as Discord does for a nonce
            return json.loads(manifest.read_text(encoding="utf-8"))["message_ids"]
        files = []
        suffix = ".mp4" if job.kind.makes_video else ".png"
        for image in images:
            path = self.folder / f"job-{job.id}-{image.position + 1}{suffix}"
            _write_atomically(path, image.content)
            files.append(path.name)
        ids: list[int | None] = [job.id * 10 + image.position for image in images]
        record = {"job_id": job.id, "files": files, "message_ids": ids}
        _write_atomically(manifest, json.dumps(record).encode())
        return ids

    async def failed(self, job: Job, message: str) -> None:
        await asyncio.to_thread(self._failed, job, message)

    def _failed(self, job: Job, message: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / "failures.log").open("a", encoding="utf-8") as log:
            log.write(json.dumps({"job_id": job.id, "message": message}, ensure_ascii=False) + "\n")


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
