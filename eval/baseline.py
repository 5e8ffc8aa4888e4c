"""The naive pipeline a user first builds from the LangChain docs, as the comparison floor.

RecursiveCharacterTextSplitter over each raw corpus file + an in-memory FAISS similarity
search, embedded with our own model so that only the pipeline differs. Kept in memory:
never saved or loaded (LangChain's load_local unpickles).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

CHUNK_SIZE = 500
CHUNK_OVERLAP = 50


class EmbedderAdapter(Embeddings):
    """LangChain ``Embeddings`` around ``qa.embed.Embedder`` (keeps its query/passage prefixes)."""

    def __init__(self, embedder: Any):
        self.embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors = np.asarray(self.embedder.embed_passages(list(texts)), dtype=np.float32)
        return vectors.tolist()

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self.embedder.embed_query(text), dtype=np.float32).tolist()


def corpus_files(corpus_dir: Path) -> list[Path]:
    """The raw text files a naive user would feed the splitter."""
    return sorted(
        p for p in Path(corpus_dir).rglob("*") if p.is_file() and p.suffix in (".txt", ".md")
    )


class NaivePipeline:
    """Split, embed, search: no speakers, no sections, no abstention."""

    def __init__(
        self,
        corpus_dir: Path,
        embedder: Any,
        chunk_size: int = CHUNK_SIZE,
        chunk_overlap: int = CHUNK_OVERLAP,
    ):
        # Imported here so the metric code and tests do not pay for langchain_community.
        from langchain_community.vectorstores import FAISS
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
        texts: list[str] = []
        metadatas: list[dict] = []
        for path in corpus_files(corpus_dir):
            raw = path.read_text(encoding="utf-8", errors="replace")
            for chunk in splitter.split_text(raw):
                texts.append(chunk)
                metadatas.append({"source": path.name})
        if not texts:
            raise ValueError(f"no text files in {corpus_dir}")
        self.chunks = len(texts)
        self.store = FAISS.from_texts(texts, EmbedderAdapter(embedder), metadatas=metadatas)

    def search(self, question: str, k: int) -> tuple[list[dict], float]:
        """Top-k chunks as citation-like dicts, and the wall time in ms."""
        t0 = time.perf_counter()
        docs = self.store.similarity_search(question, k=k)
        ms = (time.perf_counter() - t0) * 1000
        return [
            {
                "rank": i,
                "speaker": None,
                "section": None,
                "text": d.page_content,
                "highlight": d.page_content,
                "full_text": "",
            }
            for i, d in enumerate(docs, 1)
        ], ms
