"""The runtime encoder: the shipped ONNX model under ONNX Runtime, with the Rust `tokenizers` (no torch).

One ``Encoder`` per process. ``encode`` tokenizes a batch once (truncating at the token cap), sorts it by
length and runs it in sub-batches that fit the padded-token budget, so a batch of short tweets and one long
news lede does not pad every tweet to the lede's length (padding waste is most of the cost otherwise).

On CPU the sub-batches run ``inference_streams`` at a time, each ORT call on its own thread(s), rather than
one call at a time spread over every core: a call split over 2 threads meets at a barrier after every op,
and waits there whenever the worker's Python thread holds one of the 2 cores. Same outputs (each sub-batch
is computed alone either way); 1.2x the encoder's msg/s on the bench texts (docs/INTERNALS.md).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from worker.config import ConfigError, Settings
from worker.model_build.artifact import Artifact, verify_artifact
from worker.model_build.session import CUDA_PROVIDER, open_session

log = logging.getLogger(__name__)

# Auto streams stop here: on a large node (a pod sees every core) more runs at once would only cut
# batches into slivers; set ``inference_streams`` to go further.
MAX_AUTO_STREAMS = 4
MIN_SPLIT_ROWS = 4  # a sub-batch is halved for an idle stream only if each half keeps this many rows


@dataclass(frozen=True, slots=True)
class EncoderOutput:
    """Per-message model outputs, rows in the order of the input texts."""

    embedding: np.ndarray  # (B, d) float32, L2-normalised
    sentiment_logits: np.ndarray  # (B, 3)
    topic_logits: np.ndarray  # (B, T)
    n_tokens: np.ndarray  # (B,) int: tokens fed to the model (after truncation)
    truncated: np.ndarray  # (B,) bool: the text was cut at the token cap


@dataclass(frozen=True, slots=True)
class _Blocks:
    """One batch ready for the session: per-text token counts and truncation flags, and the padded
    sub-batches as (row indices into the batch, input_ids, attention_mask)."""

    lengths: np.ndarray
    truncated: np.ndarray
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]]


class Encoder:
    def __init__(
        self,
        model_dir: Path,
        provider: str = "cpu",
        intra_op_threads: int = 0,
        intra_op_spinning: bool = True,
        shape_buckets: bool | None = None,
        io_binding: bool | None = None,
        max_tokens: int = 128,
        max_batch_tokens: int = 8192,
        inference_streams: int = 1,
        without_memory: bool = False,
    ) -> None:
        """``without_memory``: run the file without its memory head, so the task logits are the head's
        own (offline fusion fitting leaves points out of the memory itself; needs the ``onnx`` package)."""
        import onnxruntime as ort

        target = _pick_target(provider, ort.get_available_providers())
        manifest_only = verify_artifact(model_dir, files=[])
        onnx_name = manifest_only.onnx_path(target).name
        self.artifact: Artifact = verify_artifact(model_dir, files=[onnx_name, "tokenizer.json"])
        self.target = target
        # The model's position table may be shorter than the configured cap (pruned models keep 64).
        self.max_tokens = min(max_tokens, self.artifact.max_tokens)
        if max_tokens > self.artifact.max_tokens:
            log.info(
                "max_tokens %d > the model's %d: texts are truncated at %d tokens",
                max_tokens,
                self.artifact.max_tokens,
                self.max_tokens,
            )
        self.max_batch_tokens = max(max_batch_tokens, self.max_tokens)
        # On CUDA every new input shape costs kernel selection and arena growth: round each call's rows
        # and width up to a power of two (at most ~12 shapes for 64 tokens). On CPU padding is pure cost.
        self.shape_buckets = target == "cuda" if shape_buckets is None else shape_buckets
        # IOBinding (CUDA's default): outputs land in ORT device memory and come back in one copy, so the
        # session allocates no host buffers per call. Bound per call: ``embed`` runs on the KB reload
        # thread while the classify thread runs ``encode``, and one binding is not thread-safe.
        self.io_binding = target == "cuda" if io_binding is None else io_binding
        self.tokenizer = Tokenizer.from_file(str(self.artifact.tokenizer_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)
        # Same ids without character offsets, which nothing here reads: 7-30% faster (tokenizers >= 0.20)
        self._encode_batch = getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.pad_id = 0 if pad_id is None else pad_id

        if target == "cuda" and hasattr(ort, "preload_dlls"):
            ort.preload_dlls()  # CUDA/cuDNN from the pip wheels, before the session needs them
        self.streams, run_threads = _streams_and_threads(target, intra_op_threads, inference_streams)
        # Sub-batches of one batch run on this pool, ``streams`` at a time (ORT's Run is thread-safe and
        # releases the GIL); None: one after another on the calling thread.
        self._pool = (
            ThreadPoolExecutor(self.streams, thread_name_prefix="encoder-run") if self.streams > 1 else None
        )
        # At most ``streams`` ORT runs at once in the process, whoever calls: the worker tokenizes one
        # batch while another runs (two callers), and the KB reload embeds beside them; without this bound
        # a process given one inference thread would run two.
        self._runs = threading.BoundedSemaphore(self.streams)
        graph: Path | bytes = self.artifact.onnx_path(target)
        self.without_memory = without_memory
        if without_memory:
            from worker.model_build.memory import strip_memory_head

            graph = strip_memory_head(graph)
        self.session = open_session(graph, target, run_threads, spinning=intra_op_spinning)
        used = self.session.get_providers()
        if target == "cuda" and CUDA_PROVIDER not in used:
            raise ConfigError(
                "provider cuda: ONNX Runtime could not start the CUDA provider "
                f"(session providers: {used}); install the gpu extra and a matching CUDA runtime, "
                "or set --provider cpu / FINSIGNAL_PROVIDER=cpu"
            )
        log.info(
            "encoder %s %s (%s%s) on %s, max_tokens=%d, %d stream(s) x %s thread(s)",
            self.name,
            self.version,
            self.artifact.onnx_path(target).name,
            f", {self.artifact.activation_scales} INT8 activation scales" if target == "cpu" else "",
            used[0],
            self.max_tokens,
            self.streams,
            run_threads or "all",
        )
        self.labels = self.artifact.labels
        self.sentiments: list[str] = list(self.labels["sentiment"])
        self.topics: list[str] = list(self.labels["topic"])
        self.dim = int(self.artifact.manifest.get("architecture", {}).get("hidden_size", 384))
        self.sha256 = self.artifact.sha256
        self._output_names = [o.name for o in self.session.get_outputs()]

    @classmethod
    def from_settings(cls, settings: Settings) -> Encoder:
        return cls(
            settings.model_dir,
            provider=settings.provider,
            intra_op_threads=settings.intra_op_threads,
            intra_op_spinning=settings.intra_op_spinning,
            max_tokens=settings.max_tokens,
            max_batch_tokens=settings.max_batch_tokens,
            inference_streams=settings.inference_streams,
        )

    @property
    def name(self) -> str:
        return str(self.artifact.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.artifact.manifest["version"])

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    def encode(self, texts: list[str]) -> EncoderOutput:
        """Tokenize and run ``texts``; rows of the result follow the input order."""
        if not texts:
            return self._empty()
        blocks = self._blocks(self._encode_batch(texts))
        if self._pool is not None and len(blocks.parts) > 1:
            runs = list(self._pool.map(lambda part: self._run(part[1], part[2]), blocks.parts))
        else:
            runs = [self._run(ids, mask) for _, ids, mask in blocks.parts]
        outputs = [
            [o[: len(index)] for o in out] for (index, _, _), out in zip(blocks.parts, runs, strict=True)
        ]
        inverse = np.empty(len(texts), dtype=np.int64)
        inverse[np.concatenate([index for index, _, _ in blocks.parts])] = np.arange(len(texts))
        embedding, sentiment, topic = (np.concatenate([o[k] for o in outputs])[inverse] for k in range(3))
        return EncoderOutput(
            embedding=np.ascontiguousarray(embedding, dtype=np.float32),
            sentiment_logits=sentiment.astype(np.float32, copy=False),
            topic_logits=topic.astype(np.float32, copy=False),
            n_tokens=blocks.lengths,
            truncated=blocks.truncated,
        )

    def _blocks(self, encodings: list[Any]) -> _Blocks:
        """The padded ``input_ids`` / ``attention_mask`` blocks of one batch's encodings: rows sorted by
        length, cut to the padded-token budget, bucketed on CUDA."""
        # Each Encoding builds a new Python list per .ids access: take them once. All token ids go in one
        # flat array; each sub-batch gathers its padded block from it in numpy (a per-row Python copy
        # costs ~2 us/message, a ceiling on a GPU, where tokenization is the bound).
        token_ids = [e.ids for e in encodings]
        lengths = np.fromiter(map(len, token_ids), dtype=np.int64, count=len(token_ids))
        truncated = np.fromiter((bool(e.overflowing) for e in encodings), dtype=bool, count=len(encodings))
        flat_ids = np.fromiter(
            itertools.chain.from_iterable(token_ids), dtype=np.int64, count=int(lengths.sum())
        )
        starts = np.cumsum(lengths) - lengths
        order = np.argsort(lengths, kind="stable")
        parts = []
        sorted_lengths = lengths[order]
        chunks = _token_budget_chunks(sorted_lengths, self.max_batch_tokens)
        for chunk in _split_for_streams(chunks, sorted_lengths, self.streams):
            index = order[chunk]
            width = int(lengths[index].max())
            shape = (len(index), width)
            if self.shape_buckets:
                bucket_width = min(_power_of_two_at_least(width), self.max_tokens)
                shape = (_power_of_two_at_least(len(index)), bucket_width)
            ids, mask = _padded_block(flat_ids, starts[index], lengths[index], shape, self.pad_id)
            parts.append((index, ids, mask))
        return _Blocks(lengths, truncated, parts)

    def _run(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        with self._runs:
            return self._run_session(ids, mask)

    def _run_session(self, ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        feed = {"input_ids": ids, "attention_mask": mask}
        if not self.io_binding:
            return list(self.session.run(None, feed))
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name in self._output_names:
            binding.bind_output(name, self.target)  # "cpu" or "cuda": ORT's device names
        self.session.run_with_iobinding(binding)
        return list(binding.copy_outputs_to_cpu())

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """L2-normalised embeddings of ``texts`` (KB points), (len(texts), d) float32."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self.encode(texts[i : i + batch_size]).embedding for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts)

    def warm_up(self) -> None:
        """One real forward pass (the deep health check: the model loads and runs)."""
        out = self.encode(["warm-up: shares rose after earnings beat estimates"])
        if not np.isfinite(out.embedding).all():
            raise RuntimeError(f"encoder {self.artifact.onnx_path(self.target)} produced non-finite output")

    def _empty(self) -> EncoderOutput:
        return EncoderOutput(
            embedding=np.zeros((0, self.dim), dtype=np.float32),
            sentiment_logits=np.zeros((0, len(self.sentiments)), dtype=np.float32),
            topic_logits=np.zeros((0, len(self.topics)), dtype=np.float32),
            n_tokens=np.zeros(0, dtype=np.int64),
            truncated=np.zeros(0, dtype=bool),
        )


def _streams_and_threads(target: str, intra_op_threads: int, inference_streams: int) -> tuple[int, int]:
    """(sub-batches run at once, ORT threads per run) from the settings.

    ``intra_op_threads`` is what the process gives inference (0: every core it may run on);
    ``inference_streams`` 0 means one stream per such thread on CPU. CUDA runs one stream: the GPU
    already overlaps a call's work, and each host thread would hold its own device buffers."""
    if target == "cuda":
        return 1, intra_op_threads
    cores = intra_op_threads or _usable_cores()
    streams = min(inference_streams or min(cores, MAX_AUTO_STREAMS), cores)
    if streams <= 1:
        return 1, intra_op_threads
    return streams, max(1, cores // streams)


def _usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS has one, e.g. not macOS)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _split_for_streams(chunks: list[slice], sorted_lengths: np.ndarray, streams: int) -> list[slice]:
    """``chunks`` with the largest (in padded tokens) halved until there are ``streams`` of them, so a
    batch that fits one sub-batch still keeps every stream busy (halves of at least MIN_SPLIT_ROWS)."""
    chunks = list(chunks)
    while len(chunks) < streams:
        sizes = [(c.stop - c.start) * int(sorted_lengths[c.stop - 1]) for c in chunks]
        largest = int(np.argmax(sizes))
        chunk = chunks[largest]
        if chunk.stop - chunk.start < 2 * MIN_SPLIT_ROWS:
            break
        middle = (chunk.start + chunk.stop) // 2
        chunks[largest : largest + 1] = [slice(chunk.start, middle), slice(middle, chunk.stop)]
    return chunks


def _pick_target(provider: str, available: list[str]) -> str:
    if provider == "cpu":
        return "cpu"
    if provider == "cuda":
        if CUDA_PROVIDER not in available:
            raise ConfigError(
                f"provider cuda: this ONNX Runtime has no CUDA provider (available: {available}); "
                "install onnxruntime-gpu in place of onnxruntime (README: GPU) or set --provider cpu / "
                "FINSIGNAL_PROVIDER=cpu"
            )
        return "cuda"
    return "cuda" if CUDA_PROVIDER in available else "cpu"


def _padded_block(
    flat_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray, shape: tuple[int, int], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` of ``shape`` for the rows starting at ``starts`` in
    ``flat_ids``; rows beyond ``len(starts)`` (shape buckets) are all padding."""
    n = len(lengths)
    columns = np.arange(shape[1])
    valid = np.zeros(shape, dtype=bool)
    valid[:n] = columns < lengths[:, None]
    ids = np.full(shape, pad_id, dtype=np.int64)
    ids[valid] = flat_ids[(starts[:, None] + columns)[valid[:n]]]
    return ids, valid.astype(np.int64)


def _power_of_two_at_least(n: int, floor: int = 8) -> int:
    return max(floor, 1 << (n - 1).bit_length())


def _token_budget_chunks(sorted_lengths: np.ndarray, max_batch_tokens: int) -> list[slice]:
    """Slices of a length-sorted batch whose padded size (rows x longest) stays within the budget."""
    chunks: list[slice] = []
    start = 0
    for end in range(1, len(sorted_lengths) + 1):
        # sorted ascending: the chunk's width is its last element
        if (end - start) * int(sorted_lengths[end - 1]) > max_batch_tokens and end - 1 > start:
            chunks.append(slice(start, end - 1))
            start = end - 1
    chunks.append(slice(start, len(sorted_lengths)))
    return chunks
