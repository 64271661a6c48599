"""Prompt markers: deterministic outcomes chosen by the prompt text itself.

They work from any client and across processes, because they travel inside the request:

    sim:moderate-input    400 DataInspectionFailed at submit ("Input data may contain ...")
    sim:ip                400 IPInfringementSuspect at submit
    sim:moderate-image    the task FAILS with DataInspectionFailed
                          ("Green net check failed for image (input): ...")
    sim:moderate-output   the task FAILS with DataInspectionFailed ("Output data may ...")
    sim:partial=K         K of the n images fail (all n: the task FAILS)
    sim:fail=CODE         the task FAILS with CODE and a fitting message
    sim:slow=SECONDS      the task runs SECONDS real seconds (not divided by the speed)
    sim:video-mb=MB       a video's MP4 is at least MB megabytes (noisy, at a high bitrate)

On the synchronous endpoints a task failure comes back as the matching HTTP error envelope.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_MARKER = re.compile(
    r"sim:(?:(?P<flag>moderate-input|moderate-image|moderate-output|ip)(?![\w-])"
    r"|partial=(?P<partial>\d+)"
    r"|fail=(?P<fail>[A-Za-z][\w.]*)"
    r"|slow=(?P<slow>\d+(?:\.\d+)?)"
    r"|video-mb=(?P<video_mb>\d+(?:\.\d+)?))"
)


@dataclass(frozen=True)
class Markers:
    moderate_input: bool = False
    moderate_image: bool = False
    moderate_output: bool = False
    ip: bool = False
    partial: int | None = None
    fail: str | None = None
    slow: float | None = None
    video_mb: float | None = None


def find_markers(prompt: str) -> Markers:
    flags: set[str] = set()
    partial: int | None = None
    fail: str | None = None
    slow: float | None = None
    video_mb: float | None = None
    for match in _MARKER.finditer(prompt):
        if match["flag"]:
            flags.add(match["flag"])
        elif match["partial"] is not None:
            partial = int(match["partial"])
        elif match["fail"]:
            # A marker ending a sentence ("sim:fail=InternalError.") keeps its code clean.
            fail = match["fail"].rstrip(".")
        elif match["slow"] is not None:
            slow = float(match["slow"])
        elif match["video_mb"] is not None:
            video_mb = float(match["video_mb"])
    return Markers(
        moderate_input="moderate-input" in flags,
        moderate_image="moderate-image" in flags,
        moderate_output="moderate-output" in flags,
        ip="ip" in flags,
        partial=partial,
        fail=fail,
        slow=slow,
        video_mb=video_mb,
    )
