"""``InterviewRetriever``: our hybrid, speaker-aware search as a LangChain retriever.

Each ``Document`` is one cited expert answer; its metadata carries who said it and
where (the same fields as ``qa ask --json``), so a LangChain chain can cite properly.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from .engine import Engine


class InterviewRetriever(BaseRetriever):
    """Retrieve expert answers; returns nothing when the corpus has no real evidence."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: Engine
    k: int = 5
    speaker: str | None = None
    section: str | None = None

    @classmethod
    def from_paths(
        cls, corpus: str | None = None, index: str | None = None, model: str | None = None,
        **kwargs: Any,
    ) -> InterviewRetriever:
        return cls(engine=Engine.open(corpus, index, model), **kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        answer = self.engine.ask(
            query, k=k, speaker=kwargs.get("speaker", self.speaker),
            section=kwargs.get("section", self.section),
        )
        docs = []  # an unanswerable question has no citations: nothing is returned
        for c in answer.citations:
            meta = c.to_dict()
            text = meta.pop("text")
            meta.pop("full_text")
            docs.append(Document(page_content=text, metadata=meta))
        return docs
