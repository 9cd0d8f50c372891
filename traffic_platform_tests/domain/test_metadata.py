from datetime import datetime

import pytest

from traffic_platform.domain import metadata as md
from traffic_platform.domain.errors import InvalidFileName
from traffic_platform.domain.metadata import format_file_name, parse_file_name


def test_parses_the_reference_name():
    m = parse_file_name("tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg")
    assert (m.address, m.address_display, m.city, m.country) == ("tiensevest", "tiensevest", "Leuven", "Belgium")
    assert m.captured_at == datetime(2022, 10, 12, 10, 51, 38)
    assert (m.extension, m.content_type) == ("jpg", "image/jpeg")


def test_address_with_underscores_is_parsed_from_the_right():
    m = parse_file_name("rue_de_la_loi_Brussels_Belgium_01-01-2023_00-00-00.png")
    assert m.address == "rue_de_la_loi"
    assert m.address_display == "rue de la loi"
    assert (m.city, m.country, m.content_type) == ("Brussels", "Belgium", "image/png")


@pytest.mark.parametrize("city", ["Liège", "Zürich", "Kraków", "São Paulo", "東京"])
def test_unicode_is_kept_exactly(city):
    name = f"plac_Wolności_{city}_Somewhere_28-02-2024_23-59-59.jpeg"
    m = parse_file_name(name)
    assert m.city == city
    assert m.address == "plac_Wolności"
    assert m.file_name == name


@pytest.mark.parametrize("ext", ["JPG", "Jpeg", "PNG", "jpg"])
def test_extension_is_case_insensitive(ext):
    assert parse_file_name(f"a_B_C_12-10-2022_10-51-38.{ext}").extension == ext.lower()


def test_leap_day_is_valid():
    assert parse_file_name("a_B_C_29-02-2024_10-51-38.jpg").captured_at.day == 29


@pytest.mark.parametrize(
    "name, code",
    [
        ("", md.NAME_EMPTY),
        ("   ", md.NAME_EMPTY),
        ("a" * 252 + ".jpg", md.NAME_TOO_LONG),
        ("é" * 130 + "_B_C_12-10-2022_10-51-38.jpg", md.NAME_TOO_LONG),  # 260 bytes in UTF-8
        ("a_B_C_12-10-2022_10-51-38\x00.jpg", md.NAME_CONTROL),
        ("a\n_B_C_12-10-2022_10-51-38.jpg", md.NAME_CONTROL),
        ("a\u200b_B_C_12-10-2022_10-51-38.jpg", md.NAME_CONTROL),
        ("../a_B_C_12-10-2022_10-51-38.jpg", md.NAME_PATH),
        ("dir/a_B_C_12-10-2022_10-51-38.jpg", md.NAME_PATH),
        ("dir\\a_B_C_12-10-2022_10-51-38.jpg", md.NAME_PATH),
        (".hidden_B_C_12-10-2022_10-51-38.jpg", md.NAME_PATH),
        ("a_B_C_12-10-2022_10-51-38.gif", md.NAME_EXTENSION),
        ("a_B_C_12-10-2022_10-51-38", md.NAME_EXTENSION),
        ("a_B_C_12-10-2022_10-51-38.jpg.exe", md.NAME_EXTENSION),
        ("B_C_12-10-2022_10-51-38.jpg", md.NAME_PARTS),
        ("_B_C_12-10-2022_10-51-38.jpg", md.NAME_PARTS),
        ("a__C_12-10-2022_10-51-38.jpg", md.NAME_PARTS),
        ("a_B_C_2022-10-12_10-51-38.jpg", md.NAME_DATE_FORMAT),
        ("a_B_C_12-10-22_10-51-38.jpg", md.NAME_DATE_FORMAT),
        ("a_B_C_12-10-2022_10:51:38.jpg", md.NAME_TIME_FORMAT),
        ("a_B_C_12-10-2022_1051.jpg", md.NAME_TIME_FORMAT),
        ("a_B_C_31-02-2022_10-51-38.jpg", md.NAME_DATE_INVALID),
        ("a_B_C_29-02-2023_10-51-38.jpg", md.NAME_DATE_INVALID),
        ("a_B_C_12-13-2022_10-51-38.jpg", md.NAME_DATE_INVALID),
        ("a_B_C_00-10-2022_10-51-38.jpg", md.NAME_DATE_INVALID),
        ("a_B_C_12-10-1899_10-51-38.jpg", md.NAME_DATE_INVALID),
        ("a_B_C_12-10-2022_25-61-00.jpg", md.NAME_TIME_INVALID),
        ("a_B_C_12-10-2022_24-00-00.jpg", md.NAME_TIME_INVALID),
        ("a_B_C_12-10-2022_10-51-60.jpg", md.NAME_TIME_INVALID),
        ("a" * 201 + "_B_C_12-10-2022_10-51-38.jpg", md.NAME_PART_TOO_LONG),
        ("a_" + "B" * 101 + "_C_12-10-2022_10-51-38.jpg", md.NAME_PART_TOO_LONG),
        ("a_B_" + "C" * 101 + "_12-10-2022_10-51-38.jpg", md.NAME_PART_TOO_LONG),
    ],
)
def test_each_mistake_has_its_own_code(name, code):
    with pytest.raises(InvalidFileName) as info:
        parse_file_name(name)
    err = info.value
    assert err.code == code
    assert err.http_status == 400
    assert err.message and len(err.message) < 400
    assert err.to_dict()["error"]["code"] == code


def test_format_is_the_inverse_of_parse():
    when = datetime(2023, 3, 26, 2, 30, 0)
    name = format_file_name("grote_markt", "Leuven", "Belgium", when, "png")
    m = parse_file_name(name)
    assert (m.address, m.city, m.country, m.captured_at, m.extension) == ("grote_markt", "Leuven", "Belgium", when, "png")


def test_to_dict_is_json_ready():
    d = parse_file_name("tiensevest_Leuven_Belgium_12-10-2022_10-51-38.jpg").to_dict()
    assert d["captured_at"] == "2022-10-12T10:51:38"
    assert d["address_display"] == "tiensevest"
