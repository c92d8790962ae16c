"""Text normalisation for Chinese addresses and names: the forms departments type differently.

Full-width characters (１２３, （）) become half-width, Chinese numerals (一十二, 〇, 两) become
digits where they count something (号, 单元, 室, 层), traditional characters common in names and
addresses become simplified, and spaces go. Everything here is a pure function of one string so
that callers can cache it over the distinct values of a column (addresses repeat a lot).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Traditional -> simplified for the characters that occur in addresses, administrative names and
# personal names. Not a full converter (no dependency on OpenCC): names are also compared by
# pinyin, which reads both scripts the same.
_TRAD = (
    "區縣鄉鎮街號樓單門層廈園貿場館東陽豐臺華順懷義濱鄭劉張陳楊趙黃孫馬羅謝韓馮鄧蕭葉蘇盧蔣龍錢湯"
    "陸賀顧孟萬戴傅魯閻韋鍾譚廖鄒龐鄔嚴雲偉強軍紅麗靜慶興國榮輝愛龔貴寶鳳鵬鴻飛達鐵鋼銀鑫隆豔"
    "蘭麥齊傑濤寧勝書學師語財貨職運體辦處廳局會員廣長開發區經濟際務設計網絡電訊話機車輛業營銷"
    "貫態產權濟團組織醫療衛環環術藝劇視聽傳媒廠礦倉儲運輸聯維實驗農裏漢滬淵灣潤澤陝遼黑龍紀"
    "鳥鷹燈點麵鹽觀動嶺島峽滿億歐亞遠見現歸燕薊寶廬橋檔舊雙雜離難韓藍"
)
_SIMP = (
    "区县乡镇街号楼单门层厦园贸场馆东阳丰台华顺怀义滨郑刘张陈杨赵黄孙马罗谢韩冯邓萧叶苏卢蒋龙钱汤"
    "陆贺顾孟万戴傅鲁阎韦钟谭廖邹庞邬严云伟强军红丽静庆兴国荣辉爱龚贵宝凤鹏鸿飞达铁钢银鑫隆艳"
    "兰麦齐杰涛宁胜书学师语财货职运体办处厅局会员广长开发区经济际务设计网络电讯话机车辆业营销"
    "贯态产权济团组织医疗卫环环术艺剧视听传媒厂矿仓储运输联维实验农里汉沪渊湾润泽陕辽黑龙纪"
    "鸟鹰灯点面盐观动岭岛峡满亿欧亚远见现归燕蓟宝庐桥档旧双杂离难韩蓝"
)
assert len(_TRAD) == len(_SIMP)
_T2S = str.maketrans(_TRAD, _SIMP)

_DIGIT = {
    "〇": 0,
    "零": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_UNIT = {"十": 10, "百": 100, "千": 1000}
_CN_NUM = "〇零一二两三四五六七八九十百千"
# A Chinese numeral that counts something: before a unit word of an address, or after 第.
_NUM_BEFORE = re.compile(rf"([{_CN_NUM}]+)(?=号|栋|幢|座|单元|室|层|楼|巷|弄|期)")
_NUM_AFTER = re.compile(rf"(?<=第)([{_CN_NUM}]+)")
_SPACE = re.compile(r"\s+")


def cn_numeral(text: str) -> int | None:
    """The value of a Chinese numeral: 一十二 -> 12, 二〇三 -> 203 (digit by digit), 十 -> 10.

    >>> cn_numeral("一十二"), cn_numeral("二〇三"), cn_numeral("十五"), cn_numeral("三百零二")
    (12, 203, 15, 302)
    """
    if not text or any(c not in _DIGIT and c not in _UNIT for c in text):
        return None
    if not any(c in _UNIT for c in text):  # digit by digit, as house numbers are read: 二〇三
        return int("".join(str(_DIGIT[c]) for c in text))
    total, digit = 0, 0
    for c in text:
        if c in _DIGIT:
            digit = _DIGIT[c]
        else:
            total += (digit or 1) * _UNIT[c]
            digit = 0
    return total + digit


def _numerals(m: re.Match[str]) -> str:
    v = cn_numeral(m.group(1))
    return m.group(1) if v is None else str(v)


@lru_cache(maxsize=1 << 16)
def simplify(text: str) -> str:
    """Half-width, simplified, without spaces: the form names are compared in.

    >>> simplify("張 偉（北京）")
    '张伟(北京)'
    """
    return _SPACE.sub("", unicodedata.normalize("NFKC", text).translate(_T2S))


def normalise_address(text: str) -> str:
    """An address in the one written form that the parser reads.

    >>> normalise_address("北京市朝陽區建国路８８号三单元一〇二室")
    '北京市朝阳区建国路88号3单元102室'
    """
    s = simplify(text)
    s = _NUM_BEFORE.sub(_numerals, s)
    s = _NUM_AFTER.sub(_numerals, s)
    return s.replace("-", "-").replace("—", "-")
