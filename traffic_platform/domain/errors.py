"""One error hierarchy for everything a caller or operator can get wrong.

Every error has a stable ``code`` (machine-readable, never reworded), an HTTP
status and a message a person can act on. Adapters (HTTP, Lambda, CLI) render
them as ``{"error": {"code": ..., "message": ...}}``.
"""

from __future__ import annotations

from typing import Any


class TrafficPlatformError(Exception):
    """Base class: an expected failure with a stable code and an HTTP status."""

    code: str = "internal_error"
    http_status: int = 500

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON body every adapter returns for this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return {"error": body}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ConfigurationError(TrafficPlatformError):
    """A setting is missing or invalid; raised at start-up and names the variable."""

    code = "invalid_setting"
    http_status = 500


class InvalidFileName(TrafficPlatformError):
    """The file name does not follow ``<address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.<ext>``."""

    code = "invalid_file_name"
    http_status = 400


class BadRequest(TrafficPlatformError):
    """The request itself is malformed (missing body, missing file name, ...)."""

    code = "bad_request"
    http_status = 400


class PayloadTooLarge(TrafficPlatformError):
    """The upload exceeds the byte or pixel limit."""

    code = "payload_too_large"
    http_status = 413


class UnsupportedImage(TrafficPlatformError):
    """The bytes are not a JPEG or PNG image that can be decoded."""

    code = "unsupported_media_type"
    http_status = 415


class DistortedImage(TrafficPlatformError):
    """The image decoded but failed the quality gate; ``details['reasons']`` says why."""

    code = "image_distorted"
    http_status = 422


class Unauthorized(TrafficPlatformError):
    code = "unauthorized"
    http_status = 401


class Forbidden(TrafficPlatformError):
    code = "forbidden"
    http_status = 403


class NotFound(TrafficPlatformError):
    code = "not_found"
    http_status = 404


class NotAcceptable(TrafficPlatformError):
    """The answer cannot be given in the asked-for format here."""

    code = "format_unavailable"
    http_status = 406


class ServiceUnavailable(TrafficPlatformError):
    """A dependency (model, database, object store) is not ready; retry later."""

    code = "service_unavailable"
    http_status = 503


class DetectorError(TrafficPlatformError):
    """The detector (local model or remote endpoint) failed on a valid image."""

    code = "detector_failed"
    http_status = 502
