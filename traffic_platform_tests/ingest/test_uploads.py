"""``POST /v1/uploads``: presigned S3 PUTs into landing/ for images too large to post."""

from __future__ import annotations

import json
import urllib.request

import pytest

from traffic_platform.config import Settings
from traffic_platform.ingest.api import Api, Request
from traffic_platform.ingest.service import IngestService
from traffic_platform.ingest.uploads import UploadsApi
from traffic_platform.orchestration.landing import file_name_for
from traffic_platform.storage.objectstore import open_object_store

from .. import images

NAME = "rue_de_la_loi_Liège_Belgium_12-10-2022_10-51-38.jpg"


class NoHandoff:
    def submit(self, job):  # pragma: no cover - the tests never get this far
        raise AssertionError("a refused upload must not be handed off")


def api_for(settings: Settings, detector=None) -> Api:
    store = open_object_store(settings)
    return Api(IngestService(settings, detector, NoHandoff()), uploads=UploadsApi.for_store(store))


def post(api: Api, path: str, body: bytes = b"", query: dict | None = None, method: str = "POST"):
    return api.handle(Request(method=method, path=path, query=query or {}, headers={}, body=body))


def test_an_upload_url_puts_the_image_where_the_landing_job_reads_its_name(s3_settings, s3_client):
    api = api_for(s3_settings)
    answer = post(api, "/v1/uploads", query={"filename": NAME})
    assert answer.status == 201, answer.body
    upload = json.loads(answer.body)["upload"]
    assert upload["method"] == "PUT" and upload["headers"] == {"Content-Type": "image/jpeg"}
    data = images.jpeg_bytes(images.street_scene(640, 480, seed=4), quality=90)
    request = urllib.request.Request(upload["url"], data=data, method="PUT", headers=upload["headers"])
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    store = open_object_store(s3_settings)
    assert store.get(upload["key"]) == data
    assert upload["key"].startswith("landing/uploads/") and file_name_for(upload["key"]) == NAME
    again = json.loads(post(api, "/v1/uploads", body=json.dumps({"filename": NAME}).encode()).body)["upload"]
    assert again["key"] != upload["key"]  # two uploads of one name never overwrite each other


@pytest.mark.parametrize("query, body, status, code", [
    ({"filename": "a_B_C_31-02-2022_10-00-00.jpg"}, b"", 400, "file_name_impossible_date"),
    ({}, b"", 400, "missing_file_name"),
    ({}, b"{not json", 400, "bad_json"),
])
def test_a_bad_request_gets_its_code_and_no_url(s3_settings, query, body, status, code):
    answer = post(api_for(s3_settings), "/v1/uploads", body=body, query=query)
    assert (answer.status, json.loads(answer.body)["error"]["code"]) == (status, code)


def test_only_post_and_only_where_the_store_can_presign(s3_settings, tmp_path):
    assert post(api_for(s3_settings), "/v1/uploads", query={"filename": NAME}, method="GET").status == 405
    local = post(api_for(Settings(home=tmp_path)), "/v1/uploads", query={"filename": NAME})
    assert local.status == 404  # a directory store has no upload URLs; post the image itself


def test_a_too_large_direct_upload_names_the_upload_route_where_there_is_one(s3_settings, tmp_path):
    data = images.jpeg_bytes(images.street_scene(640, 480, seed=5), quality=90)
    for settings, names_route in ((s3_settings, True), (Settings(home=tmp_path), False)):
        small = Settings(**{**settings.__dict__, "max_upload_bytes": len(data) // 2})
        answer = post(api_for(small), "/v1/images", body=data, query={"filename": NAME})
        error = json.loads(answer.body)["error"]
        assert (answer.status, error["code"]) == (413, "upload_too_large")
        assert ("POST /v1/uploads" in error["message"]) is names_route
