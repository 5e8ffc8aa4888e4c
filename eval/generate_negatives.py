"""Write eval/generated_negatives.jsonl: unanswerable questions made by rule, not by hand.

    python eval/generate_negatives.py [--corpus FILE] [--out FILE]

Three rules, each checked against the page so that no generated question has an answer there:

* a named author or expert × a common policy or everyday topic the page never mentions
  (the topic, and for English its Chinese equivalent, must not occur in the corpus at all);
* "how many" about a thing the page does mention but never with a number (no digit and no
  百/千/万 in the few characters before any occurrence);
* "when" about a thing the page names but never with a date (no year, month, day or
  今年/去年 within a clause of any occurrence).

The output is deterministic (same corpus, same file), split dev/test by eval/split.py's
rule, and is reported apart from the hand-written questions by run_eval.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eval.metrics import squash  # noqa: E402
from eval.split import assign_splits  # noqa: E402

CORPUS = ROOT / "corpus" / "cqrb-smart-city-interview.txt"
OUT = ROOT / "eval" / "generated_negatives.jsonl"

SPEAKERS = {  # name → how an English question writes it
    "蔡之兵": "Cai Zhibing",
    "卢阳春": "Lu Yangchun",
    "朱旭森": "Zhu Xusen",
    "王正攀": "Wang Zhengpan",
    "孙金华": "Sun Jinhua",
}

ZH_TOPICS = """
房地产税 延迟退休 养老金上调 个人所得税 彩票 足球 篮球 奥运会 股市 汇率 通货膨胀 房价 高考
考研 出国留学 彩礼 生育政策 户籍改革 新能源汽车 电动车 光伏 核电 芯片出口管制 元宇宙 比特币
外卖骑手 网约车 快递 直播带货 电子竞技 游戏防沉迷 宠物 火锅 景区门票 机场 高铁 地铁 三峡
大熊猫 疫苗 癌症 转基因 食品添加剂 天气预报 地震 洪水 碳交易 气候变化 粮食安全 猪肉价格
最低工资 加班 公务员考试 教师工资 学区房 课外辅导 近视 广场舞 春节 国庆假期 烟花爆竹 离婚
物业费 停车费 电价 燃气 暖气 短视频 网络诈骗 人口老龄化 三胎 长江禁渔
""".split()

EN_TOPICS = [  # (English topic, Chinese equivalent that must be absent from the page too)
    ("property tax", "房地产税"),
    ("raising the retirement age", "退休"),
    ("bitcoin", "比特币"),
    ("football", "足球"),
    ("the stock market", "股市"),
    ("inflation", "通货膨胀"),
    ("housing prices", "房价"),
    ("the college entrance exam", "高考"),
    ("electric cars", "电动车"),
    ("nuclear power", "核电"),
    ("climate change", "气候变化"),
    ("vaccines", "疫苗"),
    ("earthquakes", "地震"),
    ("the minimum wage", "最低工资"),
    ("food delivery riders", "外卖"),
    ("ride-hailing apps", "网约车"),
    ("high-speed rail", "高铁"),
    ("giant pandas", "大熊猫"),
    ("the Olympic Games", "奥运"),
    ("video games", "游戏"),
    ("pets", "宠物"),
    ("hot pot", "火锅"),
    ("the weather forecast", "天气"),
    ("online fraud", "诈骗"),
    ("short video platforms", "短视频"),
]

ZH_TEMPLATES = ("{name}对{topic}怎么看？", "{name}对{topic}有什么建议？", "{name}如何评价{topic}？")
EN_TEMPLATES = ("What does {name} think about {topic}?", "What is {name}'s view on {topic}?")

COUNTED = [  # (thing as the page writes it, 量词, English) — mentioned, never with a number
    ("数据中心", "个", "data centres"),
    ("工业互联网平台", "个", "industrial internet platforms"),
    ("数字化促进中心", "个", "digitalisation promotion centres"),
    ("产学研协同创新平台", "个", "industry-university-research innovation platforms"),
    ("智慧社区", "个", "smart communities"),
    ("区域总部", "个", "regional headquarters"),
    ("研发中心", "个", "research and development centres"),
    ("门户网站", "个", "government portal websites"),
    ("5G基站", "个", "5G base stations"),
    ("行业领军企业", "家", "leading companies"),
    ("参展的企业", "家", "exhibiting companies"),
    ("数字经济示范园区", "个", "digital economy demonstration parks"),
    ("专项创新基金", "只", "special innovation funds"),
    ("中小微企业", "家", "small and micro businesses"),
    ("个体工商户", "户", "self-employed businesses"),
    ("社区公益类社会组织", "个", "community charity organisations"),
    ("生态居住区", "个", "eco-friendly residential areas"),
    ("文明社区", "个", "model civilised communities"),
    ("智能化设备", "台", "smart devices"),
    ("政务微博", "个", "government microblogs"),
]
ZH_COUNT_TEMPLATES = ("重庆有多少{unit}{thing}？", "{thing}一共有多少{unit}？")
EN_COUNT_TEMPLATE = "How many {thing} are there in Chongqing?"

_NUMBER_BEFORE = re.compile(r"[0-9０-９百千万]")

DATED = [  # (thing as the page writes it, English) — named, never with a date
    ("国家级互联网骨干直联点", "the national internet backbone direct connection point"),
    ("重庆数据中心", "the Chongqing data centre"),
    ("国际互联网数据专用通道", "the international internet data channel"),
    ("重庆智谷", "Chongqing Zhigu"),
    ("两江智慧体验园", "the Liangjiang Smart Experience Park"),
    ("科学城", "the Western (Chongqing) Science City"),
    ("绿色智能技术研究院", "the Chongqing Institute of Green and Intelligent Technology"),
    ("重庆两江人工智能学院", "the Liangjiang Institute of Artificial Intelligence"),
    ("国家数字经济创新发展试验区", "the national digital economy pilot zone"),
    ("国家新一代人工智能创新发展试验区", "the new-generation AI pilot zone"),
    ("云长制", "the cloud chief system"),
    ("渝快办", "Yukuaiban"),
    ("大城智管", "the Dacheng Zhiguan system"),
    ("中欧绿色智慧城市峰会", "the China-EU Green and Smart City Summit"),
    ("数字重庆云平台", "the Digital Chongqing cloud platform"),
    ("城市智能中枢", "the city intelligence hub"),
    ("扫黑除恶专项行动", "the campaign against organised crime"),
    ("信用重庆", "Credit Chongqing"),
]
ZH_WHEN_TEMPLATES = ("{thing}是什么时候建成的？", "{thing}是哪一年开始的？")
EN_WHEN_TEMPLATE = "When was {thing} set up?"
_DATE = re.compile(r"(?:19|20)[0-9]{2}年?|[0-9]{1,2}月|[0-9]{1,2}[日号]|[今去明前]年|年[底初]")


def absent(term: str, page: str) -> bool:
    """The topic does not occur in the page at all."""
    return squash(term) not in page


def mentioned_without_number(term: str, page: str, window: int = 6) -> bool:
    """The page uses the term, but no occurrence has a figure just before it."""
    term = squash(term)
    starts = [m.start() for m in re.finditer(re.escape(term), page)]
    return bool(starts) and not any(
        _NUMBER_BEFORE.search(page[max(0, s - window) : s]) for s in starts
    )


def named_without_date(term: str, page: str, window: int = 30) -> bool:
    """The page names the thing, but no occurrence has a date within ``window`` characters."""
    term = squash(term)
    spans = [(m.start(), m.end()) for m in re.finditer(re.escape(term), page)]
    return bool(spans) and not any(
        _DATE.search(page[max(0, a - window) : b + window]) for a, b in spans
    )


def generate(page_text: str) -> tuple[list[dict], list[str]]:
    """The generated items (split assigned) and the topics/things dropped by the checks."""
    page = squash(page_text)
    items: list[dict] = []
    dropped: list[str] = []
    names = list(SPEAKERS)
    for t, topic in enumerate(ZH_TOPICS):
        if not absent(topic, page):
            dropped.append(topic)
            continue
        for s, name in enumerate(names):
            q = ZH_TEMPLATES[(t + s) % len(ZH_TEMPLATES)].format(name=name, topic=topic)
            items.append(_item("gz", len(items), q, "gen_speaker_topic", "zh", [topic]))
    for t, (topic, zh) in enumerate(EN_TOPICS):
        if not absent(zh, page):
            dropped.append(f"{topic} ({zh})")
            continue
        for s, name in enumerate(names):
            q = EN_TEMPLATES[(t + s) % len(EN_TEMPLATES)].format(name=SPEAKERS[name], topic=topic)
            items.append(_item("ge", len(items), q, "gen_speaker_topic", "en", [zh]))
    for thing, unit, english in COUNTED:
        if not mentioned_without_number(thing, page):
            dropped.append(thing)
            continue
        for template in ZH_COUNT_TEMPLATES:
            q = template.format(thing=thing, unit=unit)
            items.append(_item("gc", len(items), q, "gen_count", "zh", []))
        q = EN_COUNT_TEMPLATE.format(thing=english)
        items.append(_item("gc", len(items), q, "gen_count", "en", []))
    for thing, english in DATED:
        if not named_without_date(thing, page):
            dropped.append(thing)
            continue
        for template in ZH_WHEN_TEMPLATES:
            q = template.format(thing=thing)
            items.append(_item("gw", len(items), q, "gen_when", "zh", []))
        q = EN_WHEN_TEMPLATE.format(thing=english)
        items.append(_item("gw", len(items), q, "gen_when", "en", []))
    return assign_splits(items), dropped


def _item(prefix: str, n: int, question: str, kind: str, lang: str, absent_terms: list[str]):
    item = {
        "id": f"{prefix}{n:04d}",
        "question": question,
        "kind": kind,
        "lang": lang,
        "unanswerable": True,
    }
    if absent_terms:
        item["absent"] = absent_terms
    return item


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS, help="the page (default: ours)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"output JSONL (default {OUT})")
    args = ap.parse_args(argv)
    if not args.corpus.is_file():
        print(f"error: corpus file {args.corpus} not found; pass --corpus FILE", file=sys.stderr)
        return 2
    items, dropped = generate(args.corpus.read_text(encoding="utf-8"))
    text = "".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items)
    tmp = args.out.with_suffix(args.out.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(args.out)
    if dropped:
        print(f"left out (found in the page): {', '.join(dropped)}", file=sys.stderr)
    print(f"{args.out}: {len(items)} generated unanswerable questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
