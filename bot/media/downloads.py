"""Fetching result images safely: allow-listed hosts only, redirects checked, size capped, streamed.

Result URLs come from DashScope's answers. A compromised or spoofed answer must not make the bot
fetch internal addresses (SSRF) or fill its memory, so a URL is fetched only when it is
https on a host under `aliyuncs.com` (DashScope's OSS buckets), or on exactly the configured
gateway's own scheme, host and port (the simulator, a proxy). Every redirect is checked again.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from bot.dashscope import constants
from bot.dashscope.errors import DownloadError, DownloadRefused

ALLOWED_SUFFIX = ".aliyuncs.com"
MAX_REDIRECTS = 3
DEFAULT_MAX_BYTES = 30 * 1024 * 1024
DEFAULT_VIDEO_MAX_BYTES = 200 * 1024 * 1024  # an MP4 of up to 15 s at 1080P, with room


Origin = tuple[str, str, int | None]  # scheme, lower-case host, port


def url_origin(url: str) -> Origin | None:
    """A URL's scheme, host and port, or None when it has no host, carries credentials, or does
    not parse: such a URL is never fetched."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None:
        return None
    return parts.scheme, host, port


@dataclass(frozen=True)
class Download:
    url: str
    content: bytes
    content_type: str | None


class ResultFetcher:
    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        video_max_bytes: int = DEFAULT_VIDEO_MAX_BYTES,
        extra_hosts: tuple[str, ...] = (),
        any_host: bool = False,
    ) -> None:
        self._http = http
        base = urlsplit(base_url)
        self._own_origin = (base.scheme, base.hostname, base.port)
        self._extra_hosts = tuple(h.lower() for h in extra_hosts)
        self.max_bytes = max_bytes
        self.video_max_bytes = max(video_max_bytes, max_bytes)
        # For an operator's own command line only: fetch the http(s) URL they typed.
        self._any_host = any_host

    def allowed(self, url: str) -> bool:
        origin = url_origin(url)
        if origin is None:
            return False
        if origin == self._own_origin:
            return True
        scheme, host, _ = origin
        if self._any_host:
            return scheme in ("http", "https")
        if scheme != "https":
            return False
        return host.endswith(ALLOWED_SUFFIX) or host in self._extra_hosts

    async def fetch(self, url: str, *, video: bool = False) -> Download:
        """The result at `url`; a video (an MP4) may be as large as `video_max_bytes`."""
        cap = self.video_max_bytes if video else self.max_bytes
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allowed(current):
                raise DownloadRefused(f"refused to fetch {_describe(current)}: host not allowed")
            try:
                async with self._http.stream(
                    "GET", current, timeout=constants.DOWNLOAD_TIMEOUT, follow_redirects=False
                ) as response:
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise DownloadRefused("redirect without a location")
                        current = urljoin(current, location)
                        continue
                    if response.status_code != 200:
                        raise DownloadError(
                            f"HTTP {response.status_code} for {_describe(current)}"
                            + (" (the link has expired)" if response.status_code == 403 else ""),
                            status=response.status_code,
                        )
                    declared = response.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > cap:
                        raise DownloadRefused(f"result is {int(declared)} bytes, over the cap")
                    chunks: list[bytes] = []
                    received = 0
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                        if received > cap:
                            raise DownloadRefused(f"result exceeds {cap} bytes")
                        chunks.append(chunk)
                    return Download(current, b"".join(chunks), response.headers.get("content-type"))
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                raise DownloadError(f"{type(exc).__name__} fetching {_describe(current)}") from None
        raise DownloadRefused("too many redirects")


def _describe(url: str) -> str:
    """A URL without its query string or user info: secrets stay out of logs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "an invalid URL"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
