"""The OpenAPI 3.1 document of every route of :class:`~.api.Api`, served at ``GET /openapi.json``.

A static document, written by hand beside the routes; tests validate it with
``openapi-spec-validator`` and keep the README's route list equal to its paths.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from ..domain.classes import TRAFFIC_CLASSES

_ERROR = {"$ref": "#/components/responses/Error"}
_CAPTURE_ID = {
    "name": "capture_id", "in": "path", "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "32 lower-case hex characters, as returned by POST /v1/images.",
}
_QUALITY = {
    "type": "object",
    "description": "The distortion gate's verdict: clear, or degraded (accepted and counted) with flags; "
    "unusable for a distorted capture (README, distortion gate).",
    "properties": {
        "verdict": {"type": "string", "enum": ["clear", "degraded", "unusable"]},
        "flags": {"type": "array", "items": {"type": "string"}, "description": "fog, low_light, low_sharpness, glare, ..."},
    },
    "required": ["verdict", "flags"],
}
_COUNT_ROW = {
    "type": "object",
    "description": "One row of v_traffic_counts_<window> (see sql/README.md for units and meaning).",
    "properties": {
        "address": {"type": "string"}, "city": {"type": "string"}, "country": {"type": "string"},
        "window_start": {"type": "string", "format": "date-time", "description": "local wall-clock time, no zone"},
        "traffic_class": {"type": "string", "enum": list(TRAFFIC_CLASSES)},
        "model_name": {"type": "string"}, "model_version": {"type": "string"},
        "images_received": {"type": "integer"}, "images_accepted": {"type": "integer"},
        "images_distorted": {"type": "integer"},
        "images_degraded": {"type": ["integer", "null"],
                            "description": "of images_accepted, those taken in degraded conditions (fog, low light, ...)"},
        "degraded_share": {"type": ["number", "null"], "description": "images_degraded / images_accepted"},
        "images_excluded_health": {"type": "integer",
                                   "description": "accepted images left out of images_accepted and the counts: frozen or slate frames"},
        "total_count": {"type": "integer"},
        "mean_per_image": {"type": ["number", "null"], "description": "busyness of a still image, not a flow"},
        "max_per_image": {"type": ["integer", "null"]}, "share_with_any": {"type": ["number", "null"]},
        "expected_images": {"type": ["number", "null"]}, "coverage": {"type": ["number", "null"]},
    },
    "required": ["address", "city", "country", "window_start", "traffic_class", "model_name", "model_version",
                 "images_received", "images_accepted", "images_distorted", "images_degraded", "degraded_share",
                 "images_excluded_health", "total_count", "mean_per_image", "max_per_image", "share_with_any",
                 "expected_images", "coverage"],
}


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _tabular(json_schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {"schema": json_schema},
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": {"schema": {"type": "string", "contentMediaType": "application/vnd.apache.parquet"}},
        },
    }


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "traffic-platform API",
        "version": "1.0.0",
        "description": "Street-camera images in, traffic counts out. The same routes on the local server and the "
        "ingest Lambda. Errors are {\"error\": {\"code\", \"message\", \"details\"?}} with stable codes (README).",
    },
    "servers": [{"url": "http://127.0.0.1:8080", "description": "traffic-platform serve"}],
    "security": [{}, {"apiKey": []}],
    "paths": {
        "/v1/images": {
            "post": {
                "summary": "Ingest one image",
                "description": "Parse the file name, check distortion, detect and count road users, hand off durably.",
                "parameters": [_query("filename", "<address>_<city>_<country>_<DD-MM-YYYY>_<HH-MM-SS>.<jpg|jpeg|png> "
                                                  "(or the x-filename header, or the multipart part's file name)", {"type": "string"})],
                "requestBody": {"required": True, "content": {
                    "image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}},
                    "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}},
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"image": {"type": "string", "contentMediaType": "application/octet-stream"}},
                                                       "required": ["image"]}},
                }},
                "responses": {"201": {"description": "Accepted: capture id, metadata, quality verdict and flags, counts, detections, "
                                                     "model, timings",
                                      "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Capture"}}}},
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "413": _ERROR, "415": _ERROR, "422": _ERROR,
                              "503": _ERROR},
            }
        },
        "/v1/captures/{capture_id}": {
            "get": {
                "summary": "A capture's state",
                "parameters": [_CAPTURE_ID],
                "responses": {"200": {"description": "status pending | stored | distorted | failed, metadata, quality, counts",
                                      "content": {"application/json": {"schema": {"type": "object", "properties": {
                                          "quality": {"$ref": "#/components/schemas/Quality"}}}}}},
                              "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/v1/captures/{capture_id}/image": {
            "get": {
                "summary": "The stored image",
                "parameters": [_CAPTURE_ID],
                "responses": {"200": {"description": "the image as uploaded",
                                      "content": {"image/jpeg": {}, "image/png": {}}},
                              "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/v1/captures/{capture_id}/annotated": {
            "get": {
                "summary": "The annotated copy (boxes, labels, legend)",
                "parameters": [_CAPTURE_ID],
                "responses": {"200": {"description": "JPEG", "content": {"image/jpeg": {}}},
                              "401": _ERROR, "403": _ERROR, "404": _ERROR},
            }
        },
        "/v1/counts": {
            "get": {
                "summary": "Traffic counts per location, window, class and model version",
                "description": "Rows of v_traffic_counts_15min|hourly|daily, ordered by window_start, location, model "
                "and class, with keyset pagination: follow `next` (JSON) or the Link header (CSV, Parquet).",
                "parameters": [
                    _query("window", "15min, hour or day", {"type": "string", "enum": ["15min", "hour", "day"]}, True),
                    _query("from", "first local day, inclusive", {"type": "string", "format": "date"}, True),
                    _query("to", "last local day, inclusive (at most 366 days in all)", {"type": "string", "format": "date"}, True),
                    _query("country", "exact match", {"type": "string"}),
                    _query("city", "exact match", {"type": "string"}),
                    _query("address", "exact match on the displayed address", {"type": "string"}),
                    _query("class", "comma-separated traffic classes: " + ", ".join(TRAFFIC_CLASSES), {"type": "string"}),
                    _query("model_version", "exact match", {"type": "string"}),
                    _query("format", "else the Accept header, else json", {"type": "string", "enum": ["json", "csv", "parquet"]}),
                    _query("limit", "rows per page", {"type": "integer", "minimum": 1, "maximum": 100000, "default": 10000}),
                    _query("cursor", "opaque, from `next`", {"type": "string"}),
                ],
                "responses": {
                    "200": _tabular({"type": "object", "properties": {
                        "window": {"type": "string", "enum": ["15min", "hour", "day"]},
                        "rows": {"type": "array", "items": {"$ref": "#/components/schemas/CountRow"}},
                        "next": {"type": ["string", "null"], "description": "path of the next page, null on the last"},
                    }, "required": ["window", "rows", "next"]}, "One page of rows"),
                    "400": _ERROR, "401": _ERROR, "403": _ERROR, "503": _ERROR,
                },
            }
        },
        "/v1/locations": {
            "get": {
                "summary": "The location dimension (v_locations)",
                "parameters": [_query("format", "else the Accept header, else json", {"type": "string", "enum": ["json", "csv", "parquet"]})],
                "responses": {"200": _tabular({"type": "object", "properties": {"rows": {"type": "array", "items": {"type": "object"}}},
                                               "required": ["rows"]}, "Every location"),
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "503": _ERROR},
            }
        },
        "/v1/uploads": {
            "post": {
                "summary": "An upload URL for an image too large to post (S3 object stores only)",
                "description": "Checks the file name like POST /v1/images, then answers a presigned S3 PUT URL below "
                "landing/; PUT the bytes there with the Content-Type given, and the landing job ingests the image. "
                "For images over the ingest function's limit (API Gateway 10 MB, Lambda 6 MB: ~4.5 MB of image).",
                "parameters": [_query("filename", "the capture's file name (or a JSON body {\"filename\": ...})",
                                      {"type": "string"})],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"filename": {"type": "string"}}}}}},
                "responses": {"201": {"description": "Where to PUT the image", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["upload", "file_name", "next"], "properties": {
                        "upload": {"type": "object", "required": ["method", "url", "headers", "key", "expires_at"],
                                   "properties": {"method": {"const": "PUT"}, "url": {"type": "string"},
                                                  "headers": {"type": "object"}, "key": {"type": "string"},
                                                  "expires_at": {"type": "string", "format": "date-time"}}},
                        "file_name": {"type": "string"}, "next": {"type": "string"}}}}}},
                              "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR, "405": _ERROR},
            }
        },
        "/dashboard": {
            "get": {
                "summary": "The built-in dashboard",
                "description": "One self-contained HTML page (charts, data and thumbnails inlined; it makes no request), "
                "rendered from the reporting views and the newest annotated images on each request. Local server only.",
                "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                              "401": _ERROR, "403": _ERROR, "404": _ERROR, "405": _ERROR},
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "security": [{}],
                             "responses": {"200": {"description": "alive", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/readyz": {"get": {"summary": "Readiness: database, object store, model, spool", "security": [{}],
                            "responses": {"200": {"description": "ready", "content": {"application/json": {"schema": {"type": "object"}}}},
                                          "503": {"description": "not ready (which check failed)",
                                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{}],
                             "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "security": [{}],
                                  "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    },
    "components": {
        "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                                       "description": "required on /v1/* when TRAFFIC_API_KEY is set"}},
        "schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
                "required": ["code", "message"]}}, "required": ["error"]},
            "Capture": {"type": "object", "properties": {
                "capture_id": {"type": "string"}, "status": {"type": "string"}, "metadata": {"type": "object"},
                "width": {"type": "integer"}, "height": {"type": "integer"},
                "quality": {"$ref": "#/components/schemas/Quality"},
                "counts": {"type": "object", "properties": {c: {"type": "integer"} for c in TRAFFIC_CLASSES}},
                "detections": {"type": "array", "items": {"type": "object", "properties": {
                    "class": {"type": "string", "enum": list(TRAFFIC_CLASSES)}, "label": {"type": "string"},
                    "score": {"type": "number"}, "box": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}}}},
                "model": {"type": "object"}, "timings_ms": {"type": "object"}}},
            "Quality": _QUALITY,
            "CountRow": _COUNT_ROW,
        },
        "responses": {"Error": {"description": "an error with a stable code",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
    },
}


@cache
def _body() -> bytes:
    return json.dumps(DOCUMENT, ensure_ascii=False).encode()


def openapi_response():
    from .api import Response

    return Response(200, _body(), "application/json")
