"""智慧名城 QA: ask what the experts said; get their own words back, cited to who and where."""

from .types import Answer, Citation, Passage, Turn

__all__ = ["Answer", "Citation", "Passage", "Turn", "InterviewRetriever"]


def __getattr__(name: str):
    # the LangChain retriever pulls in langchain-core; load it only when asked for
    if name == "InterviewRetriever":
        from .langchain import InterviewRetriever

        return InterviewRetriever
    raise AttributeError(name)
