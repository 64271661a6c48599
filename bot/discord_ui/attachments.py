"""Attachments as edit inputs: which are images, which URLs may be fetched, reading them."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import discord

from bot.errors import InputRejected
from bot.media.inputs import MAX_UPLOAD_BYTES, prepare_image

log = logging.getLogger(__name__)

IMAGE_TYPES = ("image/",)
# Where Discord serves attachments. Besides these, the origin of the configured REST API (a proxy,
# or a local stand-in in tests) is trusted like Discord itself.
DISCORD_CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


def is_image(attachment: discord.Attachment) -> bool:
    content_type = (attachment.content_type or "").lower()
    return content_type.startswith(IMAGE_TYPES) or attachment.filename.lower().endswith(
        IMAGE_SUFFIXES
    )


def discord_cdn_url(url: str) -> bool:
    """Whether an attachment URL is on Discord's CDN (https), or on the configured REST API's
    own scheme, host and port. Nothing else is fetched: an attachment URL is data from a payload,
    and the bot must not be made to request internal addresses with it (SSRF)."""
    try:
        parts = urlsplit(url)
        port = parts.port
        api = urlsplit(discord.http.Route.BASE)
        api_port = api.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        return False
    if (parts.scheme, host, port) == (api.scheme, (api.hostname or "").lower(), api_port):
        return True
    return parts.scheme == "https" and port in (None, 443) and host in DISCORD_CDN_HOSTS


async def images_from(attachments: list[discord.Attachment]) -> tuple[str, ...]:
    """Download and normalise attachments into data URIs; refuse what cannot be used."""
    uris = []
    for index, attachment in enumerate(attachments, start=1):
        if not is_image(attachment):
            raise InputRejected.one("reply.not_image_file", filename=attachment.filename)
        if not discord_cdn_url(attachment.url):
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
        uris.append(prepare_image(data, index).data_uri)
    return tuple(uris)
