"""Signed result URLs in the style of OSS: `?Expires=<epoch>&OSSAccessKeyId=sim&Signature=<hmac>`.

The host is whatever the client used to reach the simulator, so URLs work from any address.
Refusals are OSS-like XML (403 expired or bad signature, 404 unknown object).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote
from xml.sax.saxutils import escape

ACCESS_KEY_ID = "sim"


def signature(secret: bytes, task_id: str, index: int, expires: int, ext: str = "png") -> str:
    mac = hmac.new(secret, f"GET\n{task_id}/{index}.{ext}\n{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()[:18]).decode()


def result_url(
    root: str, secret: bytes, task_id: str, index: int, expires: int, ext: str = "png"
) -> str:
    """A result's signed URL: `ext` "png" for an image, "mp4" for a video."""
    sig = quote(signature(secret, task_id, index, expires, ext), safe="")
    return (
        f"{root}/results/{task_id}/{index}.{ext}"
        f"?Expires={expires}&OSSAccessKeyId={ACCESS_KEY_ID}&Signature={sig}"
    )


def signature_matches(
    secret: bytes, task_id: str, index: int, expires: int, given: str, ext: str = "png"
) -> bool:
    return hmac.compare_digest(signature(secret, task_id, index, expires, ext), given)


def oss_error(code: str, message: str, request_id: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{escape(code)}</Code>\n"
        f"  <Message>{escape(message)}</Message>\n"
        f"  <RequestId>{escape(request_id)}</RequestId>\n"
        "  <HostId>simulator</HostId>\n"
        "</Error>\n"
    )
