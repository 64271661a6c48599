"""The two axes of the fault matrix (`tests/test_fault_matrix.py`), as data.

A **DashScope fault** is armed on the simulator before the job starts: fault settings posted to
`/_sim/faults`, a prompt marker, or the bot's key turned into another region's key. It decides
how many images the bot gets (all, some, none) and, when none, what the user must read.

A **Discord fault** is armed on the fake Discord once the job has its status message and
thread (so it hits the result post, not the launch): a `fail_next` on the result channel, a
permission taken away, the thread or the whole channel deleted, or the interaction token run
out. It decides whether made images can still be posted and where a failure can be told.

Every task draws for `DRAW_SECONDS`, so the Discord fault is in place before the images are
ready. The matrix's rule, `expected()` in the test module, combines one of each.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.discord_env import SIM_KEY, BotEnv
from tests.fakediscord import Channel

N = 2  # images asked for in every cell
# How long every task draws: time to arm a Discord fault after placement (which takes ~15 ms;
# each cell checks that its fault did hit the result post).
DRAW_SECONDS = 0.15
OTHER_REGION = "ap-southeast-1"


# --- DashScope -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DashScopeFault:
    key: str
    what: str
    settings: dict[str, Any] = field(default_factory=dict)  # POST /_sim/faults
    marker: str = ""  # added to the prompt
    other_region: bool = False  # the bot's key belongs to another region
    images: int = N  # images the bot gets: made and downloadable
    told: str | None = None  # what the user reads when DashScope ends the job (images == 0)

    def prompt(self, label: str) -> str:
        words = ["fault matrix", label, self.marker, f"sim:slow={DRAW_SECONDS}"]
        return " ".join(word for word in words if word)

    async def arm(self, env: BotEnv) -> None:
        if self.settings:
            await sim_control(env, "/_sim/faults", self.settings)
        if self.other_region:
            env.sim.sim.keys[SIM_KEY] = OTHER_REGION

    async def disarm(self, env: BotEnv) -> None:
        """Back to the configured fault settings. Not `/_sim/reset`: that also reseeds the
        task ids, and the bot's database (like DashScope) never sees a task id twice."""
        env.sim.sim.keys[SIM_KEY] = env.sim.sim.config.region
        await sim_control(env, "/_sim/faults", env.sim.sim.config.fault_settings().as_dict())


def burst(action: str, count: int, route: str) -> dict[str, Any]:
    return {"script": [{"route": route, "action": action}] * count}


CONTENT_REFUSED = "blocked by content moderation"

DASHSCOPE_FAULTS: tuple[DashScopeFault, ...] = (
    DashScopeFault("ds-none", "no fault"),
    # A 429 burst at submit: the client's retries (three, with backoff) get past it.
    DashScopeFault("ds-429-burst", "429 burst at submit", burst("429", 3, "submit")),
    # 500, 503, 500 at submit: DashScope's error envelope says no task was made, so the client
    # may send it again.
    DashScopeFault(
        "ds-5xx",
        "500/503 at submit",
        {"script": [{"route": "submit", "action": a} for a in ("500", "503", "500")]},
    ),
    # The task list's connection dropped (the poller polls task by task), then the task's own
    # query too (it backs off and asks again).
    DashScopeFault("ds-drop-poll", "dropped connections while polling", burst("drop", 2, "query")),
    # The task is made but the answer to the submission is lost: never resent (it could be
    # paid twice), so the job fails and is refunded.
    DashScopeFault(
        "ds-drop-submit",
        "answer to the submission lost",
        {"drop_after_submit": 1.0},
        images=0,
        told="The connection to DashScope broke after the request was sent",
    ),
    DashScopeFault("ds-slow", "slow answers (200 ms each)", {"latency_ms": 200}),
    DashScopeFault(
        "ds-moderate-input",
        "moderation at submit",
        marker="sim:moderate-input",
        images=0,
        told=CONTENT_REFUSED,
    ),
    DashScopeFault(
        "ds-ip",
        "IP infringement at submit",
        marker="sim:ip",
        images=0,
        told="looks like it involves copyrighted characters or brands",
    ),
    DashScopeFault(
        "ds-moderate-output",
        "moderation in the task",
        marker="sim:moderate-output",
        images=0,
        told="The generated image was blocked by content moderation",
    ),
    DashScopeFault("ds-partial", "partial result (1 of 2)", marker="sim:partial=1", images=1),
    DashScopeFault(
        "ds-task-expired",
        "expired task",
        {"task_ttl": 0},
        images=0,
        told="The task is no longer known to DashScope",
    ),
    DashScopeFault(
        "ds-url-expired",
        "expired result URL",
        {"result_ttl": 0},
        images=0,
        told="The images were made but could not be delivered. Please try again.",
    ),
    DashScopeFault(
        "ds-wrong-region",
        "key of another region",
        other_region=True,
        images=0,
        told="The bot's DashScope API key was refused",
    ),
)


async def sim_control(env: BotEnv, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=env.sim.root_url, timeout=5) as http:
        response = await http.post(path, json=body)
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


# --- Discord ---------------------------------------------------------------------------------


class Kind(enum.Enum):
    NONE = "none"
    FAIL_NEXT = "fail_next"  # the next result post answers an error
    NO_SEND = "no_send"  # the bot loses Send Messages in the channel
    DELETE_THREAD = "delete_thread"
    DELETE_CHANNEL = "delete_channel"  # the channel, its status message and thread with it
    EXPIRE_TOKEN = "expire_token"  # the 15-minute interaction token runs out


@dataclass(frozen=True)
class DiscordFault:
    key: str
    what: str
    kind: Kind = Kind.NONE
    status: int = 0  # for FAIL_NEXT
    code: int | None = None
    retry_after: float | None = None
    message: str | None = None
    blocks: str | None = None  # what the user reads when made images cannot be posted
    channel_gone: bool = False  # the status message is gone too: a failure is told by DM

    async def arm(self, env: BotEnv, channel: Channel, target: int) -> None:
        """Arm on the job placed in `channel` whose results go to `target` (thread or channel)."""
        fake = env.fake
        if self.kind is Kind.FAIL_NEXT:
            fake.fail_next(
                "POST",
                f"/channels/{target}/messages",
                self.status,
                code=self.code,
                retry_after=self.retry_after,
                message=self.message,
            )
        elif self.kind is Kind.NO_SEND:
            await fake.set_channel_permissions(channel, can_send=False)
        elif self.kind is Kind.DELETE_THREAD:
            await fake.delete_channel(fake.thread(target))
        elif self.kind is Kind.DELETE_CHANNEL:
            await fake.delete_channel(channel)
        elif self.kind is Kind.EXPIRE_TOKEN:
            fake.clock.advance(fake.interaction_token_ttl + 60)

    def disarm(self, env: BotEnv) -> None:
        env.fake.clear_faults()


UNDELIVERABLE = "The images were made but could not be delivered"

DISCORD_FAULTS: tuple[DiscordFault, ...] = (
    DiscordFault("dc-none", "no fault"),
    DiscordFault(
        "dc-429", "429 with retry_after on the result post", Kind.FAIL_NEXT, 429, retry_after=0.2
    ),
    DiscordFault("dc-503", "503 on the result post", Kind.FAIL_NEXT, 503),
    DiscordFault(
        "dc-413",
        "413 on the upload",
        Kind.FAIL_NEXT,
        413,
        code=40005,
        message="Request entity too large",
    ),
    DiscordFault(
        "dc-403",
        "Send Messages taken away",
        Kind.NO_SEND,
        blocks=UNDELIVERABLE,
    ),
    DiscordFault(
        "dc-thread-deleted",
        "thread deleted",
        Kind.DELETE_THREAD,
        blocks=UNDELIVERABLE,
    ),
    DiscordFault(
        "dc-channel-deleted",
        "channel deleted",
        Kind.DELETE_CHANNEL,
        blocks=UNDELIVERABLE,
        channel_gone=True,
    ),
    DiscordFault("dc-token-expired", "interaction token expired", Kind.EXPIRE_TOKEN),
)
