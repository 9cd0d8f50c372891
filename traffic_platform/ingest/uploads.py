"""``POST /v1/uploads``: a presigned S3 PUT into ``landing/`` for images too large to post.

API Gateway takes at most 10 MB and a synchronous Lambda invocation 6 MB, so a base64 body
over ~4.5 MB never reaches the ingest function. Such an image goes to S3 directly: the
client asks here for an upload URL (the file name is checked first, with the same codes as
``POST /v1/images``), PUTs the bytes to it, and the landing job ingests it like any image
dropped under ``landing/`` (quality gate, detector, counts; a rejection is kept under
``rejected/`` with its reason).
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from ..domain.errors import BadRequest
from ..domain.metadata import parse_file_name
from ..storage import keys
from .api import Request, Response

UPLOADS_PATH = "/v1/uploads"
CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png"}


class UploadsApi:
    """Hands out presigned PUT URLs; ``store`` must be an S3 store (``presign_put``)."""

    paths = (UPLOADS_PATH,)

    def __init__(self, store: Any, *, expires_s: int = 900):
        self.store = store
        self.expires_s = expires_s

    @classmethod
    def for_store(cls, store: Any) -> UploadsApi | None:
        """The route where ``store`` can presign uploads (S3), else ``None`` (no route)."""
        return cls(store) if getattr(store, "can_presign", False) else None

    def handle(self, req: Request, path: str) -> Response:
        if req.method != "POST":
            body = {"error": {"code": "method_not_allowed", "message": "Use POST on this path."}}
            return Response(405, json.dumps(body).encode(), headers={"Allow": "POST"})
        name = req.query.get("filename") or req.headers.get("x-filename") or _json_name(req.body)
        if not name:
            raise BadRequest("Say the file name: ?filename=<address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.jpg "
                             'or a JSON body {"filename": "..."}.', code="missing_file_name")
        meta = parse_file_name(name)  # the same checks and codes as POST /v1/images
        content_type = CONTENT_TYPES[meta.extension]
        key = keys.upload_key(name, secrets.token_hex(16))
        url = self.store.presign_put(key, content_type, self.expires_s)
        expires = datetime.now(UTC) + timedelta(seconds=self.expires_s)
        return Response.json(201, {
            "upload": {"method": "PUT", "url": url, "headers": {"Content-Type": content_type},
                       "key": key, "expires_at": expires.isoformat(timespec="seconds")},
            "file_name": name,
            "next": "PUT the image bytes to the URL with that Content-Type; the landing job ingests it "
                    "within minutes (rejections are kept under rejected/ with their reason).",
        })


def _json_name(body: bytes) -> str | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        raise BadRequest('The body must be JSON such as {"filename": "..."}.', code="bad_json") from None
    name = value.get("filename") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None
