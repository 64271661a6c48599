"""ResultFetcher: result URLs are fetched only from allowed hosts, redirects are re-checked before
any connection, bodies are capped while streaming, and messages never carry the signed query.

Real HTTP servers on loopback (port 0) stand in for OSS; a second one on 127.0.0.2 is the
"other host" a redirect must not reach.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.dashscope.errors import DownloadError
from bot.media.downloads import DEFAULT_MAX_BYTES, MAX_REDIRECTS, ResultFetcher
from bot.presenter import describe, utc_time

IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
SIGNED = "?Expires=1700000000&OSSAccessKeyId=LTAIkey&Signature=s3cr3tSIG"
HUGE_TOTAL = 64 * 1024 * 1024
CHUNK = 64 * 1024


@dataclass
class Server:
    root: str
    hits: Counter[str] = field(default_factory=Counter)
    sent: dict[str, int] = field(default_factory=dict)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


async def _start(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def other() -> AsyncIterator[Server]:
    """A server on a different loopback address: no request may ever reach it."""
    server = Server(root="")

    async def anything(request: web.Request) -> web.Response:
        server.hits[request.path] += 1
        return web.Response(body=IMAGE, content_type="image/png")

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    try:
        runner, server.root = await _start(app, "127.0.0.2")
    except OSError:
        pytest.skip("no 127.0.0.2 loopback alias here")
    yield server
    await runner.cleanup()


@pytest.fixture
async def origin(other: Server) -> AsyncIterator[Server]:
    server = Server(root="")

    def counted(handler):
        async def wrapper(request: web.Request) -> web.StreamResponse:
            server.hits[request.path] += 1
            return await handler(request)

        return wrapper

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=IMAGE, content_type="image/png")

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * int(request.match_info["n"]), content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"y" * int(request.match_info["n"]))
        await response.write_eof()
        return response

    def redirect(location: str):
        async def handler(request: web.Request) -> web.Response:
            return web.Response(status=302, headers={"Location": location})

        return handler

    async def to_other(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": f"{other.root}/image.png{SIGNED}"})

    async def no_location(request: web.Request) -> web.Response:
        return web.Response(status=302)

    async def expired(request: web.Request) -> web.Response:
        return web.Response(status=403, text="AccessDenied: Request has expired")

    async def huge(request: web.Request) -> web.StreamResponse:
        """Endless-looking body with no Content-Length; counts what it managed to send."""
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = 0
        chunk = b"z" * CHUNK
        try:
            while sent < HUGE_TOTAL:
                await response.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            server.sent["huge"] = sent
            server.finished.set()
        return response

    async def liar(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = 1_000_000_000
        await response.prepare(request)
        sent = 0
        try:
            for _ in range(4):
                await response.write(b"w" * CHUNK)
                sent += CHUNK
        except (ConnectionError, RuntimeError):
            pass
        finally:
            server.sent["liar"] = sent
            server.finished.set()
        return response

    routes = {
        "/image.png": image,
        "/sized/{n}": sized,
        "/chunked/{n}": chunked,
        "/same": redirect("/image.png" + SIGNED),
        "/hop1": redirect("/hop2"),
        "/hop2": redirect("/hop3"),
        "/hop3": redirect("/image.png"),
        "/loop": redirect("/loop" + SIGNED),
        "/to-other": to_other,
        "/to-evil": redirect("https://evil.example/x.png" + SIGNED),
        "/to-http-oss": redirect("http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png"),
        "/to-file": redirect("file:///etc/passwd"),
        "/no-location": no_location,
        "/expired": expired,
        "/huge": huge,
        "/liar": liar,
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, counted(handler))
    runner, server.root = await _start(app, "127.0.0.1")
    yield server
    await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def fetcher_for(http: httpx.AsyncClient, server: Server, **options) -> ResultFetcher:
    """A fetcher whose configured gateway is the test server (like the simulator)."""
    return ResultFetcher(http, f"{server.root}/api/v1", **options)


async def refused(fetcher: ResultFetcher, url: str) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(url)
    error = caught.value
    for text in [
        str(error),
        error.message,
        describe(error, "en", moment=utc_time),
        describe(error, "zh", moment=utc_time),
    ]:
        assert "s3cr3tSIG" not in text and "Signature" not in text and "Expires" not in text
    return error


# --- fetching from the server -------------------------------------------------------------------


async def test_fetches_an_image(http, origin):
    download = await fetcher_for(http, origin).fetch(f"{origin.root}/image.png{SIGNED}")
    assert download.content == IMAGE
    assert download.content_type == "image/png"
    assert download.url == f"{origin.root}/image.png{SIGNED}"


async def test_follows_a_redirect_on_the_same_origin(http, origin):
    download = await fetcher_for(http, origin).fetch(f"{origin.root}/same")
    assert download.content == IMAGE
    assert download.url == f"{origin.root}/image.png{SIGNED}"
    assert origin.hits == Counter({"/same": 1, "/image.png": 1})


async def test_follows_up_to_the_redirect_limit(http, origin):
    assert MAX_REDIRECTS == 3
    download = await fetcher_for(http, origin).fetch(f"{origin.root}/hop1")
    assert download.content == IMAGE
    assert origin.hits == Counter({"/hop1": 1, "/hop2": 1, "/hop3": 1, "/image.png": 1})


async def test_redirect_loop_stops(http, origin):
    error = await refused(fetcher_for(http, origin), f"{origin.root}/loop{SIGNED}")
    assert error.message == "too many redirects"
    assert origin.hits["/loop"] == MAX_REDIRECTS + 1


async def test_redirect_to_another_host_is_refused_before_connecting(http, origin, other):
    error = await refused(fetcher_for(http, origin), f"{origin.root}/to-other")
    assert error.message == f"refused to fetch {other.root}/image.png: host not allowed"
    assert other.hits == Counter()  # never contacted
    assert origin.hits == Counter({"/to-other": 1})
    # The same server is reachable when asked directly, so "no hits" above means something.
    direct = await ResultFetcher(http, f"{other.root}/api/v1").fetch(f"{other.root}/image.png")
    assert direct.content == IMAGE and other.hits == Counter({"/image.png": 1})


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/to-evil", "https://evil.example/x.png"),
        ("/to-http-oss", "http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png"),
        ("/to-file", "file:///etc/passwd"),
    ],
)
async def test_redirects_off_the_allow_list_are_refused(http, origin, path, target):
    error = await refused(fetcher_for(http, origin), f"{origin.root}{path}")
    assert error.message == f"refused to fetch {target}: host not allowed"
    # Public words do not name the refused host; the message (the log and Info) does.
    assert target not in describe(error, "en", moment=utc_time)
    assert describe(error, "zh", moment=utc_time).startswith("无法下载结果图片")


async def test_redirect_without_location(http, origin):
    error = await refused(fetcher_for(http, origin), f"{origin.root}/no-location{SIGNED}")
    assert error.message == "redirect without a location"


async def test_403_says_the_link_expired(http, origin):
    error = await refused(fetcher_for(http, origin), f"{origin.root}/expired{SIGNED}")
    assert error.status == 403
    detail = f"HTTP 403 for {origin.root}/expired (the link has expired)"
    assert error.message == detail
    # The detail is for the log and Info: the public words do not carry it.
    assert describe(error, "en", moment=utc_time) == (
        "A result image could not be downloaded. Please try again later."
    )
    assert describe(error, "zh", moment=utc_time) == "无法下载结果图片，请稍后再试。"


async def test_huge_body_without_length_is_cut_off(http, origin):
    cap = 256 * 1024
    error = await refused(fetcher_for(http, origin, max_bytes=cap), f"{origin.root}/huge{SIGNED}")
    assert error.message == f"result exceeds {cap} bytes"
    await asyncio.wait_for(origin.finished.wait(), timeout=10)
    # Socket buffers absorb a few MB at most; the whole 64 MiB was never sent.
    assert origin.sent["huge"] < HUGE_TOTAL // 4


async def test_declared_length_over_the_cap_is_refused_before_reading(http, origin):
    error = await refused(fetcher_for(http, origin), f"{origin.root}/liar{SIGNED}")
    assert error.message == "result is 1000000000 bytes, over the cap"
    assert DEFAULT_MAX_BYTES < 1_000_000_000


@pytest.mark.parametrize("kind", ["sized", "chunked"])
async def test_cap_boundary(http, origin, kind):
    fetcher = fetcher_for(http, origin, max_bytes=1000)
    assert len((await fetcher.fetch(f"{origin.root}/{kind}/1000")).content) == 1000
    error = await refused(fetcher, f"{origin.root}/{kind}/1001")
    # With a Content-Length the refusal comes before reading; without one, while streaming.
    expected = {
        "sized": "result is 1001 bytes, over the cap",
        "chunked": "result exceeds 1000 bytes",
    }
    assert error.message == expected[kind]


@pytest.mark.parametrize("kind", ["sized", "chunked"])
async def test_a_video_has_a_larger_cap_of_its_own(http, origin, kind):
    """An MP4 may be far larger than any image: `video=True` fetches use `video_max_bytes`,
    on the same allow-list."""
    fetcher = fetcher_for(http, origin, max_bytes=1000, video_max_bytes=5000)
    assert len((await fetcher.fetch(f"{origin.root}/{kind}/5000", video=True)).content) == 5000
    await refused(fetcher, f"{origin.root}/{kind}/1001")  # an image: its own cap still
    with pytest.raises(DownloadError) as caught:
        await fetcher.fetch(f"{origin.root}/{kind}/5001", video=True)
    assert "5001 bytes" in caught.value.message or "5000 bytes" in caught.value.message
    with pytest.raises(DownloadError):
        await fetcher.fetch("https://evil.example/x.mp4", video=True)


async def test_connection_failure_is_a_download_error(http):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        root = f"http://127.0.0.1:{probe.getsockname()[1]}"
    error = await refused(ResultFetcher(http, f"{root}/api/v1"), f"{root}/image.png{SIGNED}")
    assert error.message == f"ConnectError fetching {root}/image.png"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://x.aliyuncs.com\t/a.png" + SIGNED, "InvalidURL fetching https://x.aliyuncs.com"),
        ("https://[::1/a.png" + SIGNED, "refused to fetch an invalid URL: host not allowed"),
        (
            "https://user:hunter2@x.aliyuncs.com/a.png" + SIGNED,
            "refused to fetch https://x.aliyuncs.com/a.png: host not allowed",
        ),
    ],
)
async def test_odd_urls_give_a_download_error_without_secrets(http, url, shown):
    error = await refused(ResultFetcher(http, "https://dashscope.aliyuncs.com/api/v1"), url)
    assert error.message.startswith(shown)
    assert "hunter2" not in str(error)


# --- the allow-list ------------------------------------------------------------------------------

# `allowed` never touches the client; one shared client keeps these cases fast.
_IDLE_CLIENT = httpx.AsyncClient(trust_env=False)
SIMULATOR = "http://127.0.0.1:8080/api/v1"
BEIJING = "https://dashscope.aliyuncs.com/api/v1"

ALLOW_TABLE = [
    # (base URL, URL, allowed)
    (BEIJING, "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png", True),
    (BEIJING, "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png" + SIGNED, True),
    (BEIJING, "https://dashscope-463f.oss-accelerate.aliyuncs.com/a/b.png", True),
    (BEIJING, "HTTPS://DASHSCOPE-RESULT-SH.OSS-CN-SHANGHAI.ALIYUNCS.COM/x.png", True),
    (BEIJING, "https://x.aliyuncs.com:443/x.png", True),
    (BEIJING, "http://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png", False),
    (BEIJING, "https://aliyuncs.com/x.png", False),
    (BEIJING, "https://aliyuncs.com.evil.com/", False),
    (BEIJING, "https://x.aliyuncs.com.evil.com/", False),
    (BEIJING, "https://evilaliyuncs.com/", False),
    (BEIJING, "https://user@x.aliyuncs.com/", False),
    (BEIJING, "https://user:pass@x.aliyuncs.com/", False),
    (BEIJING, "https://x.aliyuncs.com@evil.com/", False),
    (BEIJING, "https://evil.com\\@x.aliyuncs.com/", False),
    (BEIJING, "https://evil.com#.aliyuncs.com", False),
    (BEIJING, "https://evil.com?.aliyuncs.com", False),
    (BEIJING, "https://evil.com/.aliyuncs.com", False),
    (BEIJING, "https://x.aliyuncs.com:99999/", False),
    (BEIJING, "https://[::1/x.png", False),
    (BEIJING, "ftp://x.aliyuncs.com/x.png", False),
    (BEIJING, "file:///etc/passwd", False),
    (BEIJING, "//x.aliyuncs.com/x.png", False),
    (BEIJING, "/x.png", False),
    (BEIJING, "", False),
    (BEIJING, "http://127.0.0.1:8080/x.png", False),
    # The configured gateway's exact origin, and nothing next to it.
    (SIMULATOR, "http://127.0.0.1:8080/files/x.png", True),
    (SIMULATOR, "http://127.0.0.1:8080/files/x.png" + SIGNED, True),
    (SIMULATOR, "http://127.0.0.1:8081/files/x.png", False),
    (SIMULATOR, "http://127.0.0.1/files/x.png", False),
    (SIMULATOR, "https://127.0.0.1:8080/files/x.png", False),
    (SIMULATOR, "http://localhost:8080/files/x.png", False),
    (SIMULATOR, "http://127.0.0.2:8080/files/x.png", False),
    (SIMULATOR, "http://user@127.0.0.1:8080/files/x.png", False),
    (SIMULATOR, "https://dashscope-result-bj.oss-cn-beijing.aliyuncs.com/x.png", True),
]


@pytest.mark.parametrize(("base", "url", "allowed"), ALLOW_TABLE)
def test_allow_list(base, url, allowed):
    assert ResultFetcher(_IDLE_CLIENT, base).allowed(url) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://cdn.example.com/x.png", True),
        ("https://CDN.example.com/x.png", True),
        ("http://cdn.example.com/x.png", False),
        ("https://sub.cdn.example.com/x.png", False),
        ("https://cdn.example.com.evil.com/x.png", False),
    ],
)
def test_extra_hosts(url, allowed):
    fetcher = ResultFetcher(_IDLE_CLIENT, BEIJING, extra_hosts=("CDN.example.com",))
    assert fetcher.allowed(url) is allowed


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://example.com/x.png", True),
        ("https://example.com/x.png", True),
        ("http://10.0.0.1:9000/x.png", True),
        ("file:///etc/passwd", False),
        ("ftp://example.com/x.png", False),
        ("data:image/png;base64,aGk=", False),
        ("gopher://example.com/", False),
        ("https://user:pw@example.com/x.png", False),
        ("example.com/x.png", False),
    ],
)
def test_any_host_allows_http_and_https_only(url, allowed):
    fetcher = ResultFetcher(_IDLE_CLIENT, BEIJING, any_host=True)
    assert fetcher.allowed(url) is allowed


async def test_refused_url_is_never_requested():
    """A refusal happens before the HTTP client is asked for anything."""
    requested: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(request)
        return httpx.Response(200, content=IMAGE)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        fetcher = ResultFetcher(client, BEIJING)
        for _, url, allowed in ALLOW_TABLE:
            if not allowed and url:
                await refused(fetcher, url)
        assert requested == []
        await fetcher.fetch("https://x.aliyuncs.com/x.png" + SIGNED)
        assert [str(r.url.host) for r in requested] == ["x.aliyuncs.com"]


# A URL the allow-list accepts must also be one httpx sends to an aliyuncs.com host: the two
# parsers must not disagree in a way that sends the request somewhere else.
_PIECES = st.sampled_from(
    [
        *["x", "evil.com", ".aliyuncs.com", "aliyuncs.com", ".", "@", ":", "443", "/", "?", "#"],
        *["\\", "%2e", "%40", "%2f", "[", "]", "::1", "user", " ", "\t", "\u3002", "\uff0e", "-"],
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=8))
def test_allow_list_agrees_with_what_httpx_would_contact(pieces):
    url = "https://" + "".join(pieces)
    if not ResultFetcher(_IDLE_CLIENT, BEIJING).allowed(url):
        return
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return  # httpx will not send it at all (fetch turns this into a DownloadError)
    assert parsed.scheme == "https"
    assert parsed.host.lower().endswith(".aliyuncs.com")
    assert not parsed.userinfo
