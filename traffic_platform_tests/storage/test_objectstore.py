"""Object stores: the same behaviour from a local directory and from S3 over HTTP (moto)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from traffic_platform.config import Settings
from traffic_platform.domain.errors import ConfigurationError, ServiceUnavailable
from traffic_platform.storage.objectstore import (
    LocalObjectStore,
    ObjectNotFound,
    S3ObjectStore,
    open_object_store,
)

JPEG = b"\xff\xd8\xff\xe0fake-jpeg-bytes\xff\xd9"


def test_put_get_exists_overwrite(object_store):
    key = "images/2022/10/12/0123456789abcdef0123456789abcdef.jpg"
    assert not object_store.exists(key)
    object_store.put(key, JPEG, "image/jpeg")
    assert object_store.exists(key)
    assert object_store.get(key) == JPEG
    object_store.put(key, b"second", "image/jpeg")
    assert object_store.get(key) == b"second"
    object_store.put("empty.bin", b"")
    assert object_store.get("empty.bin") == b""


def test_list_is_sorted_and_filters_by_prefix(object_store):
    keys = [
        "images/2022/10/12/b.jpg",
        "images/2022/10/12/a.jpg",
        "images/2022/1/x.jpg",
        "images/2023/01/01/c.png",
        "annotated/2022/10/12/a.jpg",
        "images-old/z.jpg",
    ]
    for key in keys:
        object_store.put(key, key.encode())
    assert list(object_store.list()) == sorted(keys)
    assert list(object_store.list("images/")) == sorted(k for k in keys if k.startswith("images/"))
    assert list(object_store.list("images/2022/1")) == [
        "images/2022/1/x.jpg",
        "images/2022/10/12/a.jpg",
        "images/2022/10/12/b.jpg",
    ]
    assert list(object_store.list("images/2022/10/12/a")) == ["images/2022/10/12/a.jpg"]
    assert list(object_store.list("nothing/")) == []


def test_scan_gives_change_tokens_and_stat_agrees(object_store):
    object_store.put("landing/b.jpg", JPEG, "image/jpeg")
    object_store.put("landing/cams/a.jpg", b"first", "image/jpeg")
    object_store.put("images/x.jpg", b"elsewhere")
    listing = object_store.scan("landing/")
    assert [o.key for o in listing.objects] == ["landing/b.jpg", "landing/cams/a.jpg"]
    assert listing.unaddressable == 0
    first = {o.key: o for o in listing.objects}
    assert first["landing/b.jpg"].size == len(JPEG) and first["landing/b.jpg"].modified > 0
    assert object_store.stat("landing/cams/a.jpg") == first["landing/cams/a.jpg"]
    assert object_store.stat("landing/none.jpg") is None

    object_store.put("landing/cams/a.jpg", b"second!", "image/jpeg")  # replaced: new token
    again = object_store.stat("landing/cams/a.jpg")
    assert again.token != first["landing/cams/a.jpg"].token and again.size == 7
    assert object_store.stat("landing/b.jpg").token == first["landing/b.jpg"].token
    object_store.delete("landing/b.jpg")
    assert [o.key for o in object_store.scan("landing/").objects] == ["landing/cams/a.jpg"]


def test_scan_counts_keys_the_store_cannot_address(tmp_path, s3_client, s3_bucket):
    local = LocalObjectStore(tmp_path / "objects")
    (local.root / "landing").mkdir(parents=True)
    (local.root / "landing" / "bad name.jpg").write_bytes(JPEG)
    (local.root / "landing" / "~tmp-halfwritten").write_bytes(b"x")  # our own temp file: not counted
    local.put("landing/ok.jpg", JPEG)
    listing = local.scan("landing/")
    assert [o.key for o in listing.objects] == ["landing/ok.jpg"] and listing.unaddressable == 1

    s3 = S3ObjectStore(s3_bucket, "", s3_client)
    s3_client.put_object(Bucket=s3_bucket, Key="landing/bad name.jpg", Body=JPEG)
    s3_client.put_object(Bucket=s3_bucket, Key="landing/folder/", Body=b"")  # a console folder marker
    s3.put("landing/ok.jpg", JPEG)
    listing = s3.scan("landing/")
    assert [o.key for o in listing.objects] == ["landing/ok.jpg"] and listing.unaddressable == 1


def test_move_and_delete(object_store):
    object_store.put("landing/in.jpg", JPEG, "image/jpeg")
    object_store.move("landing/in.jpg", "images/2022/10/12/out.jpg")
    assert not object_store.exists("landing/in.jpg")
    assert object_store.get("images/2022/10/12/out.jpg") == JPEG
    object_store.delete("images/2022/10/12/out.jpg")
    assert not object_store.exists("images/2022/10/12/out.jpg")
    object_store.delete("images/2022/10/12/out.jpg")  # deleting a missing key is a no-op
    assert list(object_store.list()) == []


def test_missing_objects(object_store):
    with pytest.raises(ObjectNotFound):
        object_store.get("nope.jpg")
    with pytest.raises(ObjectNotFound):
        object_store.move("nope.jpg", "other.jpg")
    assert not object_store.exists("other.jpg")


@pytest.mark.parametrize("key", ["../x", "/abs", "a\\b", "a/../../b", "", "a//b", "x~y"])
def test_every_operation_rejects_unsafe_keys(object_store, key):
    for call in (
        lambda: object_store.put(key, b"x"),
        lambda: object_store.get(key),
        lambda: object_store.exists(key),
        lambda: object_store.delete(key),
        lambda: object_store.move(key, "ok"),
        lambda: object_store.move("ok", key),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        list(object_store.list("../"))


def test_ping(object_store):
    object_store.ping()


def test_local_writes_are_atomic_and_leave_no_temp_files(tmp_path):
    store = LocalObjectStore(tmp_path / "objects")
    store.put("a/b/c.jpg", JPEG)
    assert sorted(p.name for p in (tmp_path / "objects" / "a" / "b").iterdir()) == ["c.jpg"]
    (tmp_path / "objects" / "a" / "b" / "~tmp-leftover").write_bytes(
        b"partial"
    )  # a crashed writer's temp file
    assert list(store.list()) == ["a/b/c.jpg"]


def test_local_store_refuses_symlinks_out_of_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalObjectStore(tmp_path / "objects")
    os.symlink(outside, tmp_path / "objects" / "link")
    with pytest.raises(ValueError, match="outside"):
        store.put("link/x.jpg", b"x")
    assert list(outside.iterdir()) == []


def test_s3_content_type_and_prefix(s3_settings, s3_client, s3_bucket):
    store = open_object_store(s3_settings)
    assert isinstance(store, S3ObjectStore)
    store.put("images/a.png", b"png", "image/png")
    head = s3_client.head_object(Bucket=s3_bucket, Key="objects/images/a.png")
    assert head["ContentType"] == "image/png"
    assert "ServerSideEncryption" not in head
    store.move("images/a.png", "images/b.png")
    assert (
        s3_client.head_object(Bucket=s3_bucket, Key="objects/images/b.png")["ContentType"]
        == "image/png"
    )
    assert list(store.list()) == ["images/b.png"]


def test_s3_sends_server_side_encryption_when_configured(s3_settings, s3_client, s3_bucket):
    store = open_object_store(replace(s3_settings, s3_sse="AES256"))
    store.put("a.jpg", JPEG, "image/jpeg")
    assert (
        s3_client.head_object(Bucket=s3_bucket, Key="objects/a.jpg")["ServerSideEncryption"]
        == "AES256"
    )
    store.move("a.jpg", "b.jpg")
    assert (
        s3_client.head_object(Bucket=s3_bucket, Key="objects/b.jpg")["ServerSideEncryption"]
        == "AES256"
    )

    kms = open_object_store(replace(s3_settings, s3_sse="aws:kms", s3_kms_key_id="alias/traffic"))
    kms.put("k.jpg", JPEG, "image/jpeg")
    head = s3_client.head_object(Bucket=s3_bucket, Key="objects/k.jpg")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert "alias/traffic" in head["SSEKMSKeyId"]


def test_s3_ping_fails_for_a_missing_bucket(s3_settings):
    store = open_object_store(replace(s3_settings, object_store_uri="s3://no-such-bucket-here/x"))
    with pytest.raises(ServiceUnavailable):
        store.ping()


def test_open_object_store_parses_uris(tmp_path, s3_settings, s3_bucket):
    local = open_object_store(
        Settings(home=tmp_path, object_store_uri=(tmp_path / "Ob jects").as_uri())
    )
    assert isinstance(local, LocalObjectStore) and local.root == (tmp_path / "Ob jects").resolve()
    s3 = open_object_store(replace(s3_settings, object_store_uri=f"s3://{s3_bucket}"))
    assert isinstance(s3, S3ObjectStore) and (s3.bucket, s3.prefix) == (s3_bucket, "")
    s3 = open_object_store(replace(s3_settings, object_store_uri=f"s3://{s3_bucket}/a/b/"))
    assert s3.prefix == "a/b/"
    assert s3.client.meta.endpoint_url == s3_settings.s3_endpoint_url


@pytest.mark.parametrize("uri", ["s3://", "s3://bucket/../x", "file://remote-host/x", "ftp://x/y"])
def test_open_object_store_rejects_bad_uris(tmp_path, uri):
    with pytest.raises(ConfigurationError, match="TRAFFIC_OBJECT_STORE_URI"):
        open_object_store(Settings(home=tmp_path, object_store_uri=uri))
