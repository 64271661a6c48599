"""Attachments as edit inputs: which are images, which the member picked, which URLs may be
fetched, reading them."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import discord

from bot.config import Settings
from bot.dashscope.models import SideRange
from bot.errors import InputRejected
from bot.media.downloads import Origin, url_origin
from bot.media.inputs import INPUT_SIDES, MAX_UPLOAD_BYTES, PreparedImage, prepare_image

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/",)
# Where Discord serves attachments. Besides these, the origin of the configured REST API (a proxy,
# or a local stand-in in tests) is trusted like Discord itself.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
MAX_INPUTS = 3  # images one edit takes
_CHOICE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def is_image(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").lower()
    return content_type.startswith(IMAGE_TYPES) or attachment.filename.lower().endswith(
        IMAGE_SUFFIXES
    )


def choose(attachments: list[discord.Attachment], choice: str | None) -> list[discord.Attachment]:
    """Pick images by 1-based numbers ("1", "1,3", "1-3"); all of them when no choice is given."""
    images = [a for a in attachments if is_image(a)]
    if not images:
        raise InputRejected.one("reply.no_images")
    if not choice or not choice.strip() or choice.strip().lower() in ("all", "全部"):
        picked = images
    else:
        numbers: list[int] = []
        for part in re.split(r"[,，\s]+", choice.strip()):
            match = _CHOICE.match(part)
            if not part:
                continue
            if not match:
                raise InputRejected.one("reply.bad_image_choice", count=len(images))
            low = int(match.group(1))
            high = int(match.group(2) or low)
            if not 1 <= low <= high <= len(images):  # before the range: "1-99999999" is cheap
                raise InputRejected.one("reply.bad_image_choice", count=len(images))
            numbers.extend(range(low, high + 1))
        if not numbers or any(not 1 <= k <= len(images) for k in numbers):
            raise InputRejected.one("reply.bad_image_choice", count=len(images))
        picked = [images[k - 1] for k in dict.fromkeys(numbers)]
    if len(picked) > MAX_INPUTS:
        raise InputRejected.one("reply.too_many_images", count=len(picked))
    return picked


def default_choice(images: list[discord.Attachment], from_bot: bool) -> str:
    """A bot result's images are alternatives: edit the first. A member's are a set: use all."""
    if len(images) <= 1:
        return "1"
    if from_bot or len(images) > MAX_INPUTS:
        return "1"
    return f"1-{len(images)}"


@dataclass(frozen=True)
class AttachmentOrigins:
    """Where attachment URLs may be fetched from: Discord's CDN over https, and the configured
    REST API's own scheme, host and port. Nothing else is fetched: an attachment URL is data from
    a payload, and the bot must not be made to request internal addresses with it (SSRF)."""

    allowed: frozenset[Origin]

    @classmethod
    def for_api(cls, api_base_url: str) -> AttachmentOrigins:
        api = url_origin(api_base_url)
        if api is None:
            raise ValueError(f"not a URL of a host: {api_base_url!r}")
        cdn = {("https", host, port) for host in DISCORD_CDN_HOSTS for port in (None, 443)}
        return cls(frozenset({api, *cdn}))

    @classmethod
    def from_settings(cls, settings: Settings) -> AttachmentOrigins:
        return cls.for_api(settings.discord_api_base_url)

    def allows(self, url: str) -> bool:
        return url_origin(url) in self.allowed


async def images_from(
    attachments: list[discord.Attachment],
    origins: AttachmentOrigins,
    sides: SideRange = INPUT_SIDES,
) -> tuple[str, ...]:
    """Download and normalise attachments into data URIs; refuse what cannot be used."""
    return tuple(image.data_uri for image in await prepared_from(attachments, origins, sides))


async def prepared_from(
    attachments: list[discord.Attachment],
    origins: AttachmentOrigins,
    sides: SideRange = INPUT_SIDES,
    *,
    first: int = 1,
) -> list[PreparedImage]:
    """Download and normalise attachments (with their sizes as sent) for a model taking
    `sides`; refuse what cannot be used, naming each image by its number (`first` for the
    first: a result's image 3 is 3)."""
    prepared = []
    for index, attachment in enumerate(attachments, start=first):
        if not is_image(attachment):
            raise InputRejected.one("reply.not_image_file", filename=attachment.filename)
        if not origins.allows(attachment.url):
            log.warning("refused %s: its URL is not on Discord's CDN", attachment.filename)
            raise InputRejected.one("reply.attachment_fetch", filename=attachment.filename)
        if attachment.size > MAX_UPLOAD_BYTES:
            raise InputRejected.one(
                "reply.attachment_too_big",
                filename=attachment.filename,
                size_mb=attachment.size / 1e6,
                limit_mb=MAX_UPLOAD_BYTES / 1e6,
            )
        try:
            data = await attachment.read()
        except discord.HTTPException:
            raise InputRejected.one(
                "reply.attachment_fetch", filename=attachment.filename
            ) from None
        prepared.append(prepare_image(data, index, sides))
    return prepared
