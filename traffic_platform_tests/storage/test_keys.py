"""Object key builders, validation and escaping."""

from __future__ import annotations

from datetime import date, datetime
from urllib.parse import unquote

import pytest

from traffic_platform.storage.keys import (
    annotated_key,
    distorted_key,
    escape_component,
    image_key,
    validate_key,
    validate_prefix,
)

CID = "0123456789abcdef0123456789abcdef"
WHEN = datetime(2022, 3, 7, 23, 59, 59)


def test_builders_use_the_capture_id_and_date_only():
    assert image_key(CID, WHEN, "jpg") == f"images/2022/03/07/{CID}.jpg"
    assert image_key(CID, date(2022, 3, 7), ".PNG") == f"images/2022/03/07/{CID}.png"
    assert annotated_key(CID, WHEN) == f"annotated/2022/03/07/{CID}.jpg"
    assert distorted_key(CID, WHEN, "jpeg") == f"distorted/2022/03/07/{CID}.jpeg"


@pytest.mark.parametrize("capture_id", ["", "../etc", CID.upper(), CID[:-1], CID + "0", "g" * 32])
def test_builders_reject_anything_but_a_capture_id(capture_id):
    with pytest.raises(ValueError, match="capture id"):
        image_key(capture_id, WHEN, "jpg")


@pytest.mark.parametrize("ext", ["", "j/g", "..", "jp g", "toolongextension"])
def test_builders_reject_bad_extensions(ext):
    with pytest.raises(ValueError):
        image_key(CID, WHEN, ext)


@pytest.mark.parametrize(
    "key",
    [
        "images/2022/01/01/a.jpg",
        "a",
        "landing/rue_de_la_loi_Li%C3%A8ge_x.jpg",
        "a.b/c-d/e_f",
        "x/.hidden",
    ],
)
def test_valid_keys(key):
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../x",
        "a/../b",
        "a/..",
        "..",
        "/abs",
        "a\\b",
        "a//b",
        "a/",
        "./a",
        "a/./b",
        "a b",
        "a\x00b",
        "a\nb",
        "é",
        "a%zz",
        "a%2",
        "a~b",
        "a?b",
        "a#b",
        "C:\\x",
        "x" * 513,
    ],
)
def test_invalid_keys_are_rejected(key):
    with pytest.raises(ValueError):
        validate_key(key)


@pytest.mark.parametrize("prefix", ["", "images/", "images/2022/0", "a"])
def test_valid_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "../", "a//", "a\\", "a b"])
def test_invalid_prefixes(prefix):
    with pytest.raises(ValueError):
        validate_prefix(prefix)


@pytest.mark.parametrize(
    "text",
    [
        "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg",
        "Rynek_Główny_Kraków_Poland_01-02-2023_08-00-00.jpg",
        "../../etc/passwd",
        "a/b\\c d%e~f?g#h",
        "..",
        ".hidden",
        "x...y",
        "日本語.png",
    ],
)
def test_escaped_components_are_valid_keys_and_reversible(text):
    escaped = escape_component(text)
    assert "/" not in escaped and ".." not in escaped and not escaped.startswith(".")
    assert validate_key(f"landing/rejected/{escaped}")
    assert unquote(escaped) == text


def test_escaping_keeps_safe_names_readable():
    name = "tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg"
    assert escape_component(name) == name
    assert escape_component("Liège") == "Li%C3%A8ge"
    with pytest.raises(ValueError):
        escape_component("")
