"""The gallery's images: the newest annotated copies of the newest days, on a directory and on S3."""

from __future__ import annotations

import io
from datetime import date

from PIL import Image

from traffic_platform.dashboard.data import THUMBNAIL_SIDE, newest_annotated
from traffic_platform_tests.images import jpeg_bytes, street_scene, text_bytes


def test_newest_days_first_thumbnails_only_of_pictures(object_store):
    picture = jpeg_bytes(street_scene(1280, 720))
    for key in ("annotated/2022/10/12/" + "a" * 32 + ".jpg", "annotated/2022/10/12/" + "b" * 32 + ".jpg",
                "annotated/2022/10/11/" + "c" * 32 + ".jpg", "annotated/2022/10/10/" + "d" * 32 + ".jpg",
                "images/2022/10/12/" + "e" * 32 + ".jpg"):
        object_store.put(key, picture, "image/jpeg")
    object_store.put("annotated/2022/10/12/" + "f" * 32 + ".jpg", text_bytes(), "image/jpeg")  # not a picture: left out

    shown = newest_annotated(object_store, [date(2022, 10, 12), date(2022, 10, 11), date(2022, 10, 10)], 3)

    assert {g.key[:21] for g in shown[:2]} == {"annotated/2022/10/12/"} and shown[2].key.startswith("annotated/2022/10/11/c")
    assert [g.day for g in shown] == [date(2022, 10, 12), date(2022, 10, 12), date(2022, 10, 11)]
    assert all(Image.open(io.BytesIO(g.jpeg)).size == (THUMBNAIL_SIDE, 270) for g in shown)
    assert newest_annotated(object_store, [date(2022, 10, 9)], 3) == []
