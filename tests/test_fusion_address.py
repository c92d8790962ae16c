"""Address normalisation, parsing against the real national divisions, western parsing, geocoding."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from citybase.fusion.address.normalise import cn_numeral, normalise_address
from citybase.fusion.address.parse import parse_address, parse_addresses
from citybase.fusion.address.western import normalise_street, parse_western
from citybase.fusion.divisions import Division, Divisions, short_name


@pytest.fixture(scope="module")
def divisions(shared: Path) -> Divisions:
    return Divisions.load(shared / "geometries" / "china_admin")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("一十二", 12),
        ("十", 10),
        ("十五", 15),
        ("二十三", 23),
        ("二〇三", 203),
        ("三百零二", 302),
        ("零", 0),
        ("两", 2),
    ],
)
def test_chinese_numerals(text: str, value: int) -> None:
    assert cn_numeral(text) == value


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("北京市朝阳区建国路８８号", "北京市朝阳区建国路88号"),  # full-width digits
        ("建国路一十五号三单元一〇二室", "建国路15号3单元102室"),  # 一十 and 〇 numerals
        ("朝陽區建國路８８號", "朝阳区建国路88号"),  # traditional characters
        ("宏远（北京）科技 有限公司", "宏远(北京)科技有限公司"),  # full-width brackets, spaces
        ("东四十条", "东四十条"),  # a place name, not a number
        ("三门峡市", "三门峡市"),
    ],
)
def test_normalise(raw: str, normal: str) -> None:
    assert normalise_address(raw) == normal


@pytest.mark.shared
@pytest.mark.parametrize(
    ("text", "district", "code", "renamed"),
    [
        ("北京市崇文区广渠门内大街15号", "东城区", "110101", "崇文区"),  # merged 2010
        ("北京市宣武区广安门内大街3号", "西城区", "110102", "宣武区"),  # merged 2010
        ("北京市密云县鼓楼大街1号", "密云区", "110118", "密云县"),  # county -> district 2015
        ("北京延庆县妫水北街2号", "延庆区", "110119", "延庆县"),
        ("天津市塘沽区解放路5号", "滨海新区", "120116", "塘沽区"),  # merged 2009
        ("天津市蓟县人民路8号", "蓟州区", "120119", "蓟县"),  # county -> district 2016
        ("上海市闸北区天目中路1号", "静安区", "310106", "闸北区"),  # merged 2015
        ("上海市卢湾区淮海中路2号", "黄浦区", "310101", "卢湾区"),
        ("北京朝阳建国路８８号", "朝阳区", "110105", None),  # short names of province and district
    ],
)
def test_parse_renamed_and_short_divisions(
    divisions: Divisions, text: str, district: str, code: str, renamed: str | None
) -> None:
    a = parse_address(text, divisions)
    assert a.ok, a.reason
    assert a.district == district
    assert (a.division_code or "")[:6] == code
    assert a.renamed_from == ([renamed] if renamed else [])
    assert a.road is not None and a.number is not None


@pytest.mark.shared
def test_parse_full_hierarchy(divisions: Divisions) -> None:
    a = parse_address("北京市东城区东华门街道南池子大街一十二号院３号楼二单元５０１室", divisions)
    assert (a.province, a.city, a.district, a.street) == ("北京市", "北京市", "东城区", "东华门街道")
    assert a.division_code == "110101001"
    assert (a.road, a.number, a.building, a.unit, a.room) == ("南池子大街", "12", "3", "2", "501")


@pytest.mark.shared
def test_parse_ambiguous_short_name_needs_city(divisions: Divisions) -> None:
    # 朝阳区 is in Beijing and in Changchun: without context no guess, with the city's default it is Beijing's
    assert parse_address("朝阳区建国路88号", divisions).district is None
    assert parse_address("朝阳区建国路88号", divisions, default="11").division_code == "110105"
    # a road named after the district is not the district
    assert parse_address("朝阳路88号", divisions, default="11").road == "朝阳路"


@pytest.mark.shared
@pytest.mark.parametrize(
    ("text", "reason"),
    [("", "empty address"), ("北京市朝阳区", "no road and number"), ("张三", "no road and number")],
)
def test_unparseable_is_reported(divisions: Divisions, text: str, reason: str) -> None:
    a = parse_address(text, divisions, default="11")
    assert not a.ok
    assert a.reason is not None and a.reason.startswith(reason)


@pytest.mark.shared
def test_parse_column_parses_each_distinct_once(divisions: Divisions) -> None:
    col = pa.array(["北京市东城区南池子大街12号", None, "北京市东城区南池子大街12号", "乱码"])
    t = parse_addresses(col, divisions)
    assert t.num_rows == 4
    assert t["ok"].to_pylist() == [True, False, True, False]
    assert t["number"].to_pylist()[:3] == ["12", None, "12"]
    assert t["reason"].to_pylist()[1] == "empty address"


def test_short_names() -> None:
    assert short_name("朝阳区", "district") == "朝阳"
    assert short_name("内蒙古自治区", "province") == "内蒙古"
    assert short_name("东区", "district") is None  # one character left is no name
    d = Divisions([Division("11", "北京市", "province"), Division("110105", "朝阳区", "district")])
    assert parse_address("北京朝阳区建国路1号", d).district == "朝阳区"


@pytest.mark.parametrize(
    ("text", "city", "parts"),
    [
        ("27 Washington Oak Park IL 60302", "oak park", ("27", "washington", "oak park", "il", "60302")),
        ("435 S. La Cienega Blv.", None, ("435", "south la cienega boulevard", None, None, None)),
        ("12 pinkerton circuit", None, ("12", "pinkerton circuit", None, None, None)),
    ],
)
def test_western(text: str, city: str | None, parts: tuple[str | None, ...]) -> None:
    a = parse_western(text, city=city)
    assert (a.number, a.street, a.city, a.state, a.postcode) == parts
    assert a.ok


def test_western_unparseable_and_abbreviations() -> None:
    assert parse_western("").reason == "empty address"
    assert normalise_street("1001 W. Roosevelt Rd.") == normalise_street("1001 west roosevelt road")
