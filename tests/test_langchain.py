"""``qa.InterviewRetriever`` passes LangChain's standard retriever tests."""

from __future__ import annotations

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from qa import InterviewRetriever


class TestInterviewRetriever(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _engine(self, engine):
        self._shared_engine = engine

    @property
    def retriever_constructor(self) -> type[InterviewRetriever]:
        return InterviewRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"engine": self._shared_engine}

    @property
    def retriever_query_example(self) -> str:
        return "卢阳春认为社会治理智能化该如何推进？"


def test_documents_carry_who_and_where(engine):
    docs = InterviewRetriever(engine=engine, k=3).invoke("朱旭森怎么看绿色发展？")
    assert docs and docs[0].metadata["speaker"] == "朱旭森"
    assert {"speaker_title", "article", "section", "asked", "source", "start", "end"} <= set(
        docs[0].metadata
    )


def test_nothing_for_a_question_the_corpus_cannot_answer(engine):
    assert InterviewRetriever(engine=engine).invoke("怎么做红烧肉？") == []
