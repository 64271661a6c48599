"""The actions on one image of a result (Upscale, Vary, Zoom out, Pan, Edit), as data.

A result message holds at most five rows: Upscale ×2 buttons (one per image), Vary (subtle)
buttons, a "Zoom out or pan…" menu, a "More…" menu (Upscale ×4, Vary (strong), Edit this
image, Animate), then Reroll, Edit, Info, Delete. Each custom_id names the job, and a button also the
image and the tool (`wan:img:<job>:<image>:<tool>`); a menu names its job and itself
(`wan:tools:<job>:<menu>`) and each option the tool and image (`<tool>:<image>`). Images are
numbered from 1, as members see them. Nothing is kept per message: a click is routed by its
custom_id and the job looked up again (bot/discord_ui/buttons.py).

Only tools whose model the key's region offers are shown (`shown`); the requests themselves
are built by bot/dashscope/tools.py, shared with the CLI.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.dashscope.models import DEFAULT_ANIMATE_MODEL, IMAGE_TOOLS_MODEL, MODELS, Kind, SideRange
from bot.dashscope.requests import ImageRequest
from bot.dashscope.tools import (
    Chosen,
    Pan,
    animate,
    expand,
    offered,
    pan_scales,
    upscale,
    vary,
    zoom_scales,
)
from bot.jobs.model import Job
from bot.media.inputs import INPUT_SIDES

# Job ids at most 18 digits (as in job buttons), images 1–4 (two digits allowed, matched and
# refused in words), tools a word: at most 52 characters of Discord's 100.
IMAGE_BUTTON_TEMPLATE = (
    r"wan:img:(?P<job_id>[0-9]{1,18}):(?P<position>[0-9]{1,2}):(?P<tool>[a-z0-9_]{1,20})"
)
TOOLS_MENU_TEMPLATE = r"wan:tools:(?P<job_id>[0-9]{1,18}):(?P<menu>[a-z]{1,20})"

Build = Callable[[Chosen, Job, str | None], ImageRequest]


@dataclass(frozen=True)
class ImageTool:
    """One action on one image. `build` makes its request from the chosen image, the job that
    made it and the key's region; None opens the Edit form on the image instead."""

    name: str
    kind: Kind
    build: Build | None
    # Shown only where wanx2.1-imageedit is offered: elsewhere Vary falls back to a model
    # without strength, where strong would be the same request as subtle.
    needs_tools_model: bool = False
    # The sides its model takes, when not those of the image models (a larger image is
    # scaled down to them as it is read).
    sides: SideRange = INPUT_SIDES

    @property
    def label_key(self) -> str:
        return f"tool.{self.name}"


def _pan(direction: Pan) -> Build:
    return lambda chosen, job, region: expand(chosen, pan_scales(direction))


TOOLS: dict[str, ImageTool] = {
    tool.name: tool
    for tool in (
        ImageTool("upscale2", Kind.UPSCALE, lambda chosen, job, region: upscale(chosen, 2)),
        ImageTool("upscale4", Kind.UPSCALE, lambda chosen, job, region: upscale(chosen, 4)),
        ImageTool(
            "vary_subtle",
            Kind.VARY,
            lambda chosen, job, region: vary(chosen, "subtle", job.n, region),
        ),
        ImageTool(
            "vary_strong",
            Kind.VARY,
            lambda chosen, job, region: vary(chosen, "strong", job.n, region),
            needs_tools_model=True,
        ),
        ImageTool(
            "zoom15", Kind.EXPAND, lambda chosen, job, region: expand(chosen, zoom_scales(1.5))
        ),
        ImageTool(
            "zoom2", Kind.EXPAND, lambda chosen, job, region: expand(chosen, zoom_scales(2.0))
        ),
        ImageTool("pan_left", Kind.EXPAND, _pan(Pan.LEFT)),
        ImageTool("pan_right", Kind.EXPAND, _pan(Pan.RIGHT)),
        ImageTool("pan_up", Kind.EXPAND, _pan(Pan.UP)),
        ImageTool("pan_down", Kind.EXPAND, _pan(Pan.DOWN)),
        ImageTool("edit", Kind.EDIT, None),
        ImageTool(
            "animate",
            Kind.ANIMATE,
            lambda chosen, job, region: animate(chosen, region),
            sides=MODELS[DEFAULT_ANIMATE_MODEL].input_sides,
        ),
    )
}

# The rows of buttons, one button per image each, and the menus, one option per tool and image.
BUTTON_ROWS = ("upscale2", "vary_subtle")
MENUS: dict[str, tuple[str, ...]] = {
    "move": ("zoom15", "zoom2", "pan_left", "pan_right", "pan_up", "pan_down"),
    "more": ("upscale4", "vary_strong", "edit", "animate"),
}
MAX_IMAGES = 4  # a job's n at most: 4 buttons a row, 6 × 4 = 24 options a menu (Discord: 25)


def shown(tool: ImageTool, region: str | None) -> bool:
    """Whether the tool is offered to a key of `region` (None: a gateway we do not know, such
    as the simulator, offers everything). Edit is shown wherever the Edit button is."""
    if tool.kind is Kind.EDIT:
        return True
    if tool.needs_tools_model and not MODELS[IMAGE_TOOLS_MODEL].offered_in(region):
        return False
    return offered(tool.kind, region)


def label_key(tool: ImageTool, region: str | None) -> str:
    """The catalogue key of the tool's name as a result shows it: Vary where wanx2.1-imageedit
    is not offered has no strength, so it is not called subtle."""
    if tool.kind is Kind.VARY and not MODELS[IMAGE_TOOLS_MODEL].offered_in(region):
        return "tool.did_vary"
    return tool.label_key


def image_custom_id(job_id: int, position: int, tool: str) -> str:
    return f"wan:img:{job_id}:{position}:{tool}"


def menu_custom_id(job_id: int, menu: str) -> str:
    return f"wan:tools:{job_id}:{menu}"


def option_value(tool: str, position: int) -> str:
    return f"{tool}:{position}"


def parse_option(value: str) -> tuple[str, int] | None:
    """(tool, image) of a menu option's value; None for anything this version did not make."""
    tool, _, position = value.partition(":")
    if tool not in TOOLS or not position.isascii() or not position.isdigit() or len(position) > 2:
        return None
    return tool, int(position)
