"""The runtime encoder on the shipped model: shapes, order, truncation, token-budget chunks."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from worker.config import DEFAULT_MODEL_DIR, ConfigError, load_settings
from worker.encoder import (
    Encoder,
    _padded_block,
    _pick_target,
    _split_for_streams,
    _streams_and_threads,
    _token_budget_chunks,
)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder(DEFAULT_MODEL_DIR, provider="cpu", max_tokens=128, max_batch_tokens=256)


def test_outputs_follow_input_order_across_length_sorted_sub_batches(encoder: Encoder) -> None:
    texts = ["word " * 60, "Fed hikes", "Acme cuts guidance; shares fall 12% in early trade", "ok"]
    batch = encoder.encode(texts)
    assert batch.embedding.shape == (4, encoder.dim)
    assert batch.topic_logits.shape == (4, len(encoder.topics))
    np.testing.assert_allclose(np.linalg.norm(batch.embedding, axis=1), 1.0, atol=1e-3)
    for i, text in enumerate(texts):
        alone = encoder.encode([text])
        # Fixed INT8 activation scales: a row's result does not depend on what shares its batch.
        np.testing.assert_allclose(alone.embedding[0], batch.embedding[i], atol=1e-6)
        np.testing.assert_allclose(alone.topic_logits[0], batch.topic_logits[i], atol=1e-5)
        assert alone.n_tokens[0] == batch.n_tokens[i]


def test_a_messages_result_does_not_depend_on_its_batch_mates() -> None:
    """One call holding a long text, and the same message alone: the same labels and values.

    With dynamic INT8 scales (the export before calibration) the long text changed every other row's
    rounding: logits moved ~0.1 and 10-26 dev labels in 1,000s changed with the batching.
    """
    whole = Encoder(DEFAULT_MODEL_DIR, provider="cpu", max_batch_tokens=8192, inference_streams=1)
    assert whole.artifact.activation_scales == "fixed"
    message = "Acme cuts guidance; shares fall 12% in early trade"
    mates = ["Breaking: " + "oil prices surge as OPEC+ extends cuts " * 8, "ok", "Fed holds rates steady"]
    alone = whole.encode([message])
    together = whole.encode([*mates, message])
    np.testing.assert_allclose(together.embedding[-1], alone.embedding[0], atol=1e-6)
    np.testing.assert_allclose(together.sentiment_logits[-1], alone.sentiment_logits[0], atol=1e-5)
    np.testing.assert_allclose(together.topic_logits[-1], alone.topic_logits[0], atol=1e-5)


def test_long_text_is_truncated_at_the_models_cap_and_flagged(encoder: Encoder) -> None:
    batch = encoder.encode(["shares " * 500, "short one"])
    assert batch.truncated.tolist() == [True, False]
    assert batch.n_tokens[0] == encoder.max_tokens <= encoder.artifact.max_tokens
    assert batch.n_tokens[1] < encoder.max_tokens


def test_embed_empty_and_many(encoder: Encoder) -> None:
    assert encoder.embed([]).shape == (0, encoder.dim)
    vectors = encoder.embed([f"headline number {i}" for i in range(70)], batch_size=32)
    assert vectors.shape == (70, encoder.dim) and vectors.dtype == np.float32


def test_token_budget_chunks_keep_padded_size_within_budget() -> None:
    lengths = np.array([3, 4, 4, 10, 10, 30, 64])
    chunks = _token_budget_chunks(lengths, 40)
    assert [i for c in chunks for i in range(len(lengths))[c]] == list(range(len(lengths)))
    for chunk in chunks:
        part = lengths[chunk]
        assert len(part) == 1 or len(part) * part.max() <= 40


def test_cuda_requested_without_cuda_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="FINSIGNAL_PROVIDER"):
        _pick_target("cuda", ["CPUExecutionProvider"])
    assert _pick_target("auto", ["CPUExecutionProvider"]) == "cpu"
    assert _pick_target("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"


def test_worker_encoder_runs_without_spinning_threads_unless_asked() -> None:
    spin = "session.intra_op.allow_spinning"
    worker = Encoder.from_settings(load_settings(intra_op_threads=1))
    assert worker.session.get_session_options().get_session_config_entry(spin) == "0"
    asked = Encoder.from_settings(load_settings(intra_op_threads=1, intra_op_spinning=True))
    options = asked.session.get_session_options()
    with pytest.raises(Exception, match="does not have configuration"):
        options.get_session_config_entry(spin)  # unset: ORT's own default, spinning
    assert options.intra_op_num_threads == 1
    out = worker.encode(["Acme beats estimates", "Fed holds rates"])
    np.testing.assert_allclose(
        out.topic_logits, asked.encode(["Acme beats estimates", "Fed holds rates"]).topic_logits
    )


def test_shape_buckets_pad_to_few_shapes_and_keep_each_rows_result() -> None:
    """CUDA's default (checked here on CPU): rows and width rounded up to powers of two."""
    texts = ["Fed hikes", "Acme cuts guidance; shares fall 12% in early trade", "ok", "word " * 40, "oil"]
    plain = Encoder(DEFAULT_MODEL_DIR, provider="cpu", shape_buckets=False)
    bucketed = Encoder(DEFAULT_MODEL_DIR, provider="cpu", shape_buckets=True)
    assert not plain.shape_buckets and bucketed.shape_buckets
    shapes: list[tuple[int, ...]] = []
    run = bucketed.session.run
    bucketed.session = type("Spy", (), {})()

    def spy(names: object, feed: dict[str, np.ndarray]) -> object:
        shapes.append(feed["input_ids"].shape)
        return run(names, feed)

    bucketed.session.run = spy
    a, b = plain.encode(texts), bucketed.encode(texts)
    assert shapes and all(rows & (rows - 1) == 0 and rows >= 8 for rows, _ in shapes)
    assert all(width in (8, 16, 32, 64) for _, width in shapes)
    assert b.embedding.shape == a.embedding.shape and np.isfinite(b.embedding).all()
    # Extra padding rows and columns leave each row's result as it was (fixed INT8 activation scales).
    np.testing.assert_allclose(a.embedding, b.embedding, atol=1e-6)
    np.testing.assert_allclose(a.topic_logits, b.topic_logits, atol=1e-5)
    np.testing.assert_array_equal(a.n_tokens, b.n_tokens)


def test_padded_block_matches_a_row_by_row_fill() -> None:
    rows = [[101, 7, 8, 102], [101, 102], [101, 5, 6, 9, 11, 102]]
    flat = np.array([t for r in rows for t in r], dtype=np.int64)
    lengths = np.array([len(r) for r in rows])
    starts = np.cumsum(lengths) - lengths
    pick = np.array([1, 0, 2])  # a length-sorted sub-batch
    ids, mask = _padded_block(flat, starts[pick], lengths[pick], (4, 8), pad_id=0)  # a bucket: 4 x 8
    expected = np.zeros((4, 8), dtype=np.int64)
    for out_row, i in enumerate(pick):
        expected[out_row, : lengths[i]] = rows[i]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(mask, (expected != 0).astype(np.int64))
    assert ids.dtype == mask.dtype == np.int64


def test_io_binding_gives_the_same_outputs_as_plain_runs() -> None:
    """CUDA's default path (IOBinding), run here on the CPU provider: identical results."""
    texts = ["Fed hikes", "Acme cuts guidance; shares fall 12% in early trade", "word " * 40]
    plain = Encoder(DEFAULT_MODEL_DIR, provider="cpu", io_binding=False)
    bound = Encoder(DEFAULT_MODEL_DIR, provider="cpu", io_binding=True)
    assert bound.io_binding and not plain.io_binding
    a, b = plain.encode(texts), bound.encode(texts)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.topic_logits, b.topic_logits)
    np.testing.assert_array_equal(a.sentiment_logits, b.sentiment_logits)


def test_fast_tokenizer_path_feeds_the_same_tokens(encoder: Encoder) -> None:
    """encode_batch_fast (no offsets) where the tokenizers package has it: same ids, truncation, outputs."""
    texts = ["Acme cuts guidance; shares fall 12%", "shares " * 300, "Café ÀÉ 株式 📈", ""]
    fast = encoder.encode(texts)
    saved = encoder._encode_batch
    try:
        encoder._encode_batch = encoder.tokenizer.encode_batch
        plain = encoder.encode(texts)
    finally:
        encoder._encode_batch = saved
    np.testing.assert_array_equal(fast.n_tokens, plain.n_tokens)
    np.testing.assert_array_equal(fast.truncated, plain.truncated)
    np.testing.assert_array_equal(fast.embedding, plain.embedding)


def test_streams_share_out_the_inference_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("worker.encoder._usable_cores", lambda: 2)
    assert _streams_and_threads("cpu", 0, 0) == (2, 1)  # auto on 2 cores: 2 single-thread runs at once
    assert _streams_and_threads("cpu", 1, 0) == (1, 1)  # one thread given: one run at a time
    assert _streams_and_threads("cpu", 0, 1) == (1, 0)  # one stream: ORT spreads each run (old way)
    assert _streams_and_threads("cpu", 4, 2) == (2, 2)
    assert _streams_and_threads("cpu", 2, 8) == (2, 1)  # never more streams than threads
    assert _streams_and_threads("cuda", 0, 0) == (1, 0)
    monkeypatch.setattr("worker.encoder._usable_cores", lambda: 64)
    assert _streams_and_threads("cpu", 0, 0) == (4, 16)  # auto stops at 4 on a large node


def test_split_for_streams_halves_the_largest_sub_batch_until_every_stream_has_one() -> None:
    lengths = np.array([3, 3, 4, 4, 5, 5, 5, 5, 9, 9, 9, 10, 10, 10, 11, 12])
    assert _split_for_streams([slice(0, 16)], lengths, 2) == [slice(0, 8), slice(8, 16)]
    assert _split_for_streams([slice(0, 8), slice(8, 16)], lengths, 2) == [slice(0, 8), slice(8, 16)]
    # the larger in padded tokens (8 rows x 12) is halved first
    assert _split_for_streams([slice(0, 8), slice(8, 16)], lengths, 3) == [
        slice(0, 8),
        slice(8, 12),
        slice(12, 16),
    ]
    assert _split_for_streams([slice(0, 7)], lengths, 2) == [slice(0, 7)]  # halves would be too small


def test_parallel_streams_give_the_same_rows_as_one_run_at_a_time() -> None:
    # Enough texts of spread lengths for several 64-token sub-batches: each is computed alone either way.
    texts = [("shares of Acme fall " * (1 + i % 5)) + str(i) for i in range(24)]
    serial = Encoder(DEFAULT_MODEL_DIR, provider="cpu", max_batch_tokens=64, inference_streams=1)
    parallel = Encoder(
        DEFAULT_MODEL_DIR, provider="cpu", intra_op_threads=2, max_batch_tokens=64, inference_streams=2
    )
    assert (serial.streams, parallel.streams) == (1, 2)
    assert parallel.session.get_session_options().intra_op_num_threads == 1
    a, b = serial.encode(texts), parallel.encode(texts)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    np.testing.assert_array_equal(a.topic_logits, b.topic_logits)
    np.testing.assert_array_equal(a.n_tokens, b.n_tokens)
    assert parallel.encode(["one message"]).embedding.shape == (1, parallel.dim)


class _CountingSession:
    """The real session, timed so that overlapping runs would show: records the most at once."""

    def __init__(self, session: object) -> None:
        self._session = session
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def run(self, names: object, feed: object) -> object:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)
            return self._session.run(names, feed)  # type: ignore[attr-defined]
        finally:
            with self._lock:
                self.running -= 1


@pytest.mark.parametrize("streams", [1, 2])
def test_concurrent_callers_never_run_more_than_the_streams_at_once(streams: int) -> None:
    # The worker encodes two batches at once (one tokenizes while the other runs): a process given one
    # inference thread must still run one ORT call at a time.
    model = Encoder(DEFAULT_MODEL_DIR, provider="cpu", intra_op_threads=streams, inference_streams=streams)
    counting = _CountingSession(model.session)
    model.session = counting  # type: ignore[assignment]
    texts = [f"Acme {'shares ' * (i % 9)}rise {i}" for i in range(24)]
    with ThreadPoolExecutor(4) as callers:
        list(callers.map(lambda _: model.encode(texts), range(4)))
    assert counting.most == streams
