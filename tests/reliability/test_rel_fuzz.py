"""Scenario 6, hostile input: hypothesis-generated malformed, oversized, deeply nested, wrong-typed,
invalid-UTF-8 and control-character messages, each followed by a valid one, through a real worker process.

Holds: the worker never crashes; each bad message lands in the DLQ with the reason its construction
implies (the expectation comes from how the message was built, not from the worker's decoder); every
valid one is classified, and a text over the token cap carries ``truncated: true``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relharness import Collector, Feeder, WorkerProcess, cleanup, publish_default_kb

from worker.embedded import create_topics

PARTITIONS = 3
MAX_BYTES = 4096
NOW = datetime.now(UTC).isoformat().replace("+00:00", "Z")
ANCHOR = "Acme shares fall after guidance cut"


@dataclass(frozen=True)
class Case:
    kind: str  # what was built
    expected: str  # "signal" or the DLQ reason it must get
    build: Callable[[str], bytes]  # key -> the record value
    truncated: bool = False


def _event(key: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"id": key, "text": ANCHOR, "source": "fuzz", "published_at": NOW}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _MISSING}


_MISSING = object()
# Any Unicode scalar except surrogates: control characters, RTL marks, zero-width and astral ones included.
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=120)
CONTROLS = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(32)] + ["\x7f", "\u200b", "\u202e", "\ufeff", "\u2066"]),
    max_size=16,
)
BLANK = st.text(
    alphabet=st.sampled_from(list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\u00a0\u2003\u3000\u2028")),
    min_size=1,
    max_size=12,
)
ASCII = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
BAD_UTF8 = st.sampled_from(
    [
        b"\xff",
        b"\xfe\xff",
        b"\xc3\x28",
        b"\xa0\xa1",
        b"\xe2\x28\xa1",
        b"\xf0\x28\x8c\xbc",
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"\xf8\xa1\xa1\xa1\xa1",
        b"\xe2\x82",
    ]
)
WRONG = st.one_of(
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 9), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(0, 9), max_size=2),
)
JSON_SCALARS = st.one_of(
    st.integers(-(2**53), 2**53),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.lists(st.integers(0, 9), max_size=5),
)


@st.composite
def valid_cases(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["unicode", "controls", "long", "nested_metadata", "extras"]))
    if kind == "unicode":
        noise = draw(ANY_TEXT)
        return Case(kind, "signal", lambda key: orjson.dumps(_event(key, text=f"{noise} {ANCHOR} {noise}")))
    if kind == "controls":
        controls = draw(CONTROLS)
        return Case(
            kind, "signal", lambda key: orjson.dumps(_event(key, text=f"{controls}{ANCHOR}{controls}\x00"))
        )
    if kind == "long":  # well over the 128-token cap, well under the byte cap
        return Case(kind, "signal", lambda key: orjson.dumps(_event(key, text=" ".join([ANCHOR] * 60))), True)
    if kind == "nested_metadata":  # deep, but under the parser's depth limit (orjson cannot dump it)
        depth = draw(st.integers(50, 400))
        nested = b'{"a":' * depth + orjson.dumps(draw(ANY_TEXT)) + b"}" * depth
        return Case(
            kind,
            "signal",
            lambda key: orjson.dumps(_event(key, metadata="@@", tickers=["ACME", "$X"])).replace(
                b'"@@"', nested
            ),
        )
    extra = draw(
        st.dictionaries(st.sampled_from(["lang", "score", "x", "tags", "ünïcode"]), WRONG, max_size=3)
    )
    extra = {k: v for k, v in extra.items() if k != "lang" or isinstance(v, str)}
    return Case(kind, "signal", lambda key: orjson.dumps({**_event(key), **extra}))


EXPECTED = {
    "oversized_event": "too_large",
    "oversized_garbage": "too_large",
    "invalid_utf8": "invalid_utf8",
    "truncated": "malformed_json",
    "not_json": "malformed_json",
    "too_deep": "malformed_json",
    "wrong_type": "schema",
    "missing_field": "schema",
    "not_an_object": "schema",
    "bad_date": "schema",
    "blank_text": "empty_text",
}
FIELD_TYPES: dict[str, type] = {
    "id": str,
    "text": str,
    "source": str,
    "published_at": str,
    "tickers": list,
    "metadata": dict,
}


@st.composite
def bad_cases(draw: st.DrawFn) -> Case:
    """Draws only what the chosen kind needs (generation cost matters at 10,000 examples)."""
    kind = draw(st.sampled_from(sorted(EXPECTED)))
    build: Callable[[str], bytes]
    if kind == "oversized_event":
        build = lambda key: orjson.dumps(_event(key, text=ANCHOR + " x" * MAX_BYTES))  # noqa: E731
    elif kind == "oversized_garbage":
        garbage = draw(st.binary(min_size=1, max_size=300))
        build = lambda key: garbage * (MAX_BYTES // len(garbage) + 1) + b"\xff"  # noqa: E731
    elif kind == "invalid_utf8":
        bad, text = draw(BAD_UTF8), draw(ASCII)
        build = lambda key: orjson.dumps(_event(key, text=f"{ANCHOR} @@ {text}")).replace(b"@@", bad)  # noqa: E731
    elif kind == "truncated":
        text, cut = draw(ASCII), draw(st.floats(0.0, 1.0))

        def build(key: str) -> bytes:
            whole = orjson.dumps(_event(key, text=f"{ANCHOR} {text}"))
            return whole[: 1 + int(cut * (len(whole) - 2))]
    elif kind == "not_json":
        raw = draw(
            st.sampled_from(
                [
                    b"",
                    b"   ",
                    b"\x00",
                    b"NaN",
                    b"[1e400]",
                    b"{'id': 'x'}",
                    b'{"id": "x",}',
                    b'"\\ud800"',
                    b"#",
                ]
            )
        )
        tail = draw(ASCII).encode() if raw == b"#" else b""
        build = lambda key: raw + tail  # noqa: E731
    elif kind == "too_deep":
        depth = draw(st.integers(1100, 1900))
        build = lambda key: b"[" * depth + b"]" * depth  # noqa: E731
    elif kind == "wrong_type":  # a value of a type the schema does not allow for that field
        field, wrong = draw(st.sampled_from(sorted(FIELD_TYPES))), draw(WRONG)
        if isinstance(wrong, FIELD_TYPES[field]) or (field == "tickers" and isinstance(wrong, list)):
            wrong = [1, 2] if field == "tickers" and wrong else 12345
        build = lambda key: orjson.dumps(_event(key, **{field: wrong}))  # noqa: E731
    elif kind == "missing_field":
        missing = draw(st.sampled_from(["id", "text", "source", "published_at"]))
        build = lambda key: orjson.dumps(_event(key, **{missing: _MISSING}))  # noqa: E731
    elif kind == "not_an_object":
        top = draw(JSON_SCALARS)
        build = lambda key: orjson.dumps(top)  # noqa: E731
    elif kind == "bad_date":
        date = draw(st.sampled_from(["yesterday", "2024-13-01T00:00:00Z", "", "1700000000"]))
        build = lambda key: orjson.dumps(_event(key, published_at=date))  # noqa: E731
    else:
        blank = draw(BLANK)
        build = lambda key: orjson.dumps(_event(key, text=blank))  # noqa: E731
    return Case(kind, EXPECTED[kind], build)


def generate(pairs: int) -> list[Case]:
    """``pairs`` (bad, valid) cases, deterministic (derandomized hypothesis)."""
    cases: list[Case] = []

    @settings(
        max_examples=pairs,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(bad=bad_cases(), good=valid_cases())
    def collect(bad: Case, good: Case) -> None:
        cases.extend((bad, good))

    collect()
    return cases


@pytest.mark.slow
def test_hostile_input_never_crashes_each_bad_one_in_dlq_with_reason_every_valid_one_classified(
    base_settings: Callable[..., dict[str, object]],
    spawn: Callable[..., WorkerProcess],
    long_mode: bool,
) -> None:
    pairs = 10_000 if long_mode else 1_000
    started = time.monotonic()
    cases = generate(pairs)
    generated_s = time.monotonic() - started
    items = [(f"fz-{i}", case.build(f"fz-{i}")) for i, case in enumerate(cases)]
    expected = {key: case for (key, _), case in zip(items, cases, strict=True)}
    bad_n = sum(case.expected != "signal" for case in cases)
    assert bad_n >= (10_000 if long_mode else 1_000) * 0.99

    s = base_settings(max_message_bytes=MAX_BYTES)
    bootstrap = str(s["kafka_bootstrap"])
    create_topics(bootstrap, [s["input_topic"], s["signals_topic"], s["dlq_topic"]], PARTITIONS)
    publish_default_kb(str(s["redis_url"]), str(s["kb_namespace"]))
    worker = spawn("fuzz", s)
    worker.wait_ready()
    feeder = Feeder(bootstrap, str(s["input_topic"]))
    collector = Collector(bootstrap, str(s["signals_topic"]), str(s["dlq_topic"]), PARTITIONS)
    with cleanup(feeder.close, collector.close):
        sent_at = time.monotonic()
        for start in range(0, len(items), 500):
            feeder.send_now(items[start : start + 500])
        missing = collector.wait_for(list(expected), timeout_s=600 if long_mode else 180)
        took = time.monotonic() - sent_at
        time.sleep(1.0)
        metrics = worker.metrics() if worker.running else {}
    assert worker.running and worker.starts == 1, f"the worker crashed:\n{worker.tail()}"

    wrong: list[str] = []
    for key, case in expected.items():
        if case.expected == "signal":
            payload = collector.signal_payloads.get(key)
            if payload is None or key in collector.dlq:
                dlq = collector.dlq.get(key)
                wrong.append(f"{key} ({case.kind}): valid but signal={payload is not None}, dlq={dlq}")
            elif case.truncated and payload["truncated"] is not True:
                wrong.append(f"{key} ({case.kind}): over the token cap but truncated={payload['truncated']}")
        else:
            reasons = collector.dlq.get(key, [])
            if set(reasons) != {case.expected} or key in collector.signals:
                wrong.append(f"{key} ({case.kind}): expected DLQ {case.expected}, got {reasons}")
            elif collector.dlq_values[key] != items[int(key[3:])][1]:
                wrong.append(f"{key} ({case.kind}): DLQ value is not the original bytes")
    kinds = Counter(case.kind for case in cases)
    reasons = Counter(case.expected for case in cases)
    print(
        f"FIGURES fuzz: {len(cases)} messages ({bad_n} hostile, {len(cases) - bad_n} valid) generated in "
        f"{generated_s:.1f} s, processed in {took:.1f} s; worker crashes 0; wrong outcomes {len(wrong)}; "
        f"missing {len(missing)}; by reason {dict(reasons)}; by kind {dict(kinds)}; "
        f"worker DLQ counters { {k: v for k, v in metrics.items() if k.startswith('finsignal_dlq_total')} }"
    )
    assert not missing, f"{len(missing)} messages without any output, e.g. {missing[:5]}"
    assert not wrong, f"{len(wrong)} wrong outcomes:\n" + "\n".join(wrong[:20])
