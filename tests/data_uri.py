"""Reading back the base64 `data:` URIs that `prepare_image` makes of an input image."""

from __future__ import annotations

import base64


def data_uri_bytes(uri: str) -> bytes:
    """The bytes inside a base64 `data:` URI."""
    header, _, payload = uri.partition(",")
    if not header.startswith("data:") or ";base64" not in header:
        raise ValueError("not a base64 data URI")
    return base64.b64decode(payload, validate=True)
