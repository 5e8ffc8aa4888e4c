"""Follow-up resolution is a pure function of the chat: table-tested, no model, no index."""

from __future__ import annotations

import pytest

from qa.followup import (
    MORE,
    NEW,
    NO_ANTECEDENT,
    OTHERS,
    PRONOUN,
    SPEAKER_SWITCH,
    TOPIC_SWITCH,
    Context,
    FollowUp,
    english_name,
    find_speakers,
    resolve_followup,
)

SPEAKERS = ["蔡之兵", "卢阳春", "朱旭森", "王正攀", "孙金华"]

Q_ELDERLY = "卢阳春认为老年人使用政务平台有什么困难？"


def ctx(
    question: str, *speakers: str | None, ids: tuple[str, ...] = (), speaker: str | None = None
) -> Context:
    """An earlier turn that asked ``question`` (filtered to ``speaker``) and cited
    ``speakers`` in order, showing passages ``ids``."""
    ids = ids or tuple(f"t#{i}" for i in range(len(speakers)))
    return Context(question, speaker, next((s for s in speakers if s), None), ids)


H_LU = [ctx(Q_ELDERLY, "卢阳春", "朱旭森", ids=("a#7", "a#9"))]
H_TOPIC = [ctx("智慧城市有哪些瓶颈？", "朱旭森", "蔡之兵")]
H_NAMED = [Context("卢阳春怎么看老年人？", "卢阳春", "卢阳春", ("a#7",))]
H_NONE: list[Context] = []
H_UNANSWERED = [Context("今天天气怎么样？")]

CASES = [
    # (id, history, question, expected question, speaker, reason)
    ("pronoun-more", H_LU, "他还提到了什么？", Q_ELDERLY, "卢阳春", MORE),
    ("pronoun-more-said", H_LU, "他还说了什么？", Q_ELDERLY, "卢阳春", MORE),
    ("she-more", H_LU, "她还说了些什么", Q_ELDERLY, "卢阳春", MORE),
    ("expert-more", H_LU, "这位专家还有什么观点？", Q_ELDERLY, "卢阳春", MORE),
    ("first-cited-speaker", H_TOPIC, "他还说了什么？", "智慧城市有哪些瓶颈？", "朱旭森", MORE),
    ("expert-topic", H_LU, "这位专家怎么看老年人？", "卢阳春怎么看老年人？", "卢阳春", PRONOUN),
    (
        "he-topic",
        H_TOPIC,
        "他认为该如何建设绿色智慧城市？",
        "朱旭森认为该如何建设绿色智慧城市？",
        "朱旭森",
        PRONOUN,
    ),
    (
        "switch",
        H_LU,
        "那朱旭森呢？",
        "朱旭森认为老年人使用政务平台有什么困难？",
        "朱旭森",
        SPEAKER_SWITCH,
    ),
    (
        "switch-bare",
        H_LU,
        "蔡之兵呢",
        "蔡之兵认为老年人使用政务平台有什么困难？",
        "蔡之兵",
        SPEAKER_SWITCH,
    ),
    (
        "switch-honorific",
        H_LU,
        "朱老师怎么看？",
        "朱旭森认为老年人使用政务平台有什么困难？",
        "朱旭森",
        SPEAKER_SWITCH,
    ),
    (
        "switch-unnamed-question",
        H_TOPIC,
        "那卢阳春呢？",
        "智慧城市有哪些瓶颈？",
        "卢阳春",
        SPEAKER_SWITCH,
    ),
    (
        "switch-en",
        H_TOPIC,
        "What about Lu Yangchun?",
        "智慧城市有哪些瓶颈？",
        "卢阳春",
        SPEAKER_SWITCH,
    ),
    ("en-more", H_LU, "What else did he say?", Q_ELDERLY, "卢阳春", MORE),
    (
        "en-topic",
        H_LU,
        "What does he think about green cities?",
        "What does Lu Yangchun think about green cities?",
        "卢阳春",
        PRONOUN,
    ),
    ("more-no-pronoun", H_TOPIC, "还有呢？", "智慧城市有哪些瓶颈？", None, MORE),
    ("others", H_LU, "其他专家怎么看？", "认为老年人使用政务平台有什么困难？", None, OTHERS),
    # fully formed questions are left alone
    ("new-named", H_LU, "朱旭森怎么看绿色智慧城市？", "朱旭森怎么看绿色智慧城市？", None, NEW),
    ("new-topic", H_LU, "智慧城市的瓶颈是什么？", "智慧城市的瓶颈是什么？", None, NEW),
    ("new-qita", H_LU, "其他城市是怎么做的？", "其他城市是怎么做的？", None, NEW),
    ("new-tamen", H_LU, "他们怎么看智博会？", "他们怎么看智博会？", None, NEW),
    ("new-two-speakers", H_LU, "蔡之兵和朱旭森怎么看？", "蔡之兵和朱旭森怎么看？", None, NEW),
    (
        "new-en",
        H_LU,
        "What are Chongqing's advantages?",
        "What are Chongqing's advantages?",
        None,
        NEW,
    ),
    ("new-first-turn", H_NONE, Q_ELDERLY, Q_ELDERLY, None, NEW),
    # 那X呢 with a topic X: the new topic, asked of the speaker the thread was about
    ("topic-named", H_NAMED, "那数字经济呢？", "卢阳春怎么看数字经济？", "卢阳春", TOPIC_SWITCH),
    ("topic-bare-ne", H_NAMED, "人才呢", "卢阳春怎么看人才？", "卢阳春", TOPIC_SWITCH),
    ("topic-zhiyu", H_NAMED, "至于数据安全呢？", "卢阳春怎么看数据安全？", "卢阳春", TOPIC_SWITCH),
    (
        "topic-en",
        H_NAMED,
        "What about talent?",
        "What does Lu Yangchun say about talent?",
        "卢阳春",
        TOPIC_SWITCH,
    ),
    # a thread about no one speaker (only cited one): the new topic for everyone
    ("topic-unnamed", H_TOPIC, "那人才呢？", "怎么看人才？", None, TOPIC_SWITCH),
    (
        "topic-unnamed-en",
        H_TOPIC,
        "And what about talent?",
        "What do the experts say about talent?",
        None,
        TOPIC_SWITCH,
    ),
    # …but a 那…呢 that asks something of its own is a question, and a bare word is too
    ("topic-why", H_NAMED, "那为什么呢？", "那为什么呢？", None, NEW),
    ("topic-how", H_NAMED, "那具体怎么做呢？", "那具体怎么做呢？", None, NEW),
    ("topic-it", H_NAMED, "How about it?", "How about it?", None, NEW),
    ("one-word", H_NAMED, "数字经济", "数字经济", None, NEW),
    ("question-ne", H_NAMED, "智慧城市有哪些短板呢？", "智慧城市有哪些短板呢？", None, NEW),
    ("topic-no-history", H_NONE, "那人才呢？", "那人才呢？", None, NEW),
    # follow-ups with nothing to refer back to
    ("no-history-pronoun", H_NONE, "他还说了什么？", "他还说了什么？", None, NO_ANTECEDENT),
    ("no-history-switch", H_NONE, "那朱旭森呢？", "那朱旭森呢？", "朱旭森", NO_ANTECEDENT),
    ("unanswered-pronoun", H_UNANSWERED, "他还说了什么？", "他还说了什么？", None, NO_ANTECEDENT),
]


@pytest.mark.parametrize(
    ("history", "question", "want_q", "want_speaker", "want_reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_resolve(history, question, want_q, want_speaker, want_reason) -> None:
    got = resolve_followup(history, question, SPEAKERS)
    assert (got.question, got.speaker, got.reason) == (want_q, want_speaker, want_reason)


def test_more_excludes_what_was_shown() -> None:
    got = resolve_followup(H_LU, "他还说了什么？", SPEAKERS)
    assert got.exclude == ("a#7", "a#9")


def test_others_leave_out_previous_speaker() -> None:
    got = resolve_followup(H_LU, "其他专家怎么看？", SPEAKERS)
    assert got.exclude_speaker == "卢阳春"
    assert got.exclude == ("a#7", "a#9")


def test_chain_reuses_resolved_questions() -> None:
    """那朱旭森呢 → 那蔡之兵呢 keeps the original topic, via the turns' resolved questions."""
    q2 = "朱旭森认为老年人使用政务平台有什么困难？"
    history = H_LU + [ctx(q2, "朱旭森", speaker="朱旭森")]
    got = resolve_followup(history, "那蔡之兵呢？", SPEAKERS)
    assert got == FollowUp("蔡之兵认为老年人使用政务平台有什么困难？", "蔡之兵", SPEAKER_SWITCH)


def test_more_keeps_earlier_speaker_filter() -> None:
    """还有呢 after 那朱旭森呢 stays with 朱旭森, the filter that turn ran with."""
    q2 = "朱旭森认为老年人使用政务平台有什么困难？"
    history = H_LU + [ctx(q2, "朱旭森", ids=("a#9",), speaker="朱旭森")]
    got = resolve_followup(history, "还有呢？", SPEAKERS)
    assert (got.question, got.speaker, got.reason, got.exclude) == (q2, "朱旭森", MORE, ("a#9",))


def test_pronoun_skips_uncited_reply() -> None:
    """A reply that cited no one does not break the thread: look one further back."""
    history = H_LU + H_UNANSWERED
    got = resolve_followup(history, "这位专家怎么看老年人？", SPEAKERS)
    assert got.speaker == "卢阳春"


def test_pronoun_falls_back_to_the_filter_then_the_name() -> None:
    """Nothing cited: the speaker the turn was filtered to, else the one it named."""
    filtered = [Context("老年人有什么困难？", speaker="孙金华")]
    assert resolve_followup(filtered, "他还说了什么？", SPEAKERS).speaker == "孙金华"
    named = [Context("卢阳春怎么看绿色城市？")]
    got = resolve_followup(named, "那孙金华呢？", SPEAKERS)
    assert got.question == "孙金华怎么看绿色城市？"
    assert resolve_followup(named, "她还说了什么？", SPEAKERS).speaker == "卢阳春"


def test_speakers_found_in_both_scripts() -> None:
    text = "Zhu Xusen 和 卢阳春 以及 Prof. Cai"
    assert [m[2] for m in find_speakers(text, SPEAKERS)] == ["朱旭森", "卢阳春", "蔡之兵"]
    assert english_name("卢阳春") == "Lu Yangchun"


def test_shown_is_what_more_excludes() -> None:
    """A reply that quoted only some citations says so; "else" leaves out only those."""
    prev = Context(Q_ELDERLY, None, "卢阳春", ("a#7", "a#3"))
    got = resolve_followup([prev], "他还说了什么？", SPEAKERS)
    assert got.exclude == ("a#7", "a#3")
