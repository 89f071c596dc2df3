"""The single source of configuration: one typed, frozen settings object.

Every field is a CLI flag (``--kafka-bootstrap``) and an environment variable
(``FINSIGNAL_KAFKA_BOOTSTRAP``); the CLI builds its flags from this class, so
``--help`` and the env names can never drift from what the code reads.
Precedence: CLI flag > environment > secret file (``*_file`` fields) > default.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "FINSIGNAL_"
REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_model_dir() -> Path:
    """The checkout's models/ first; an installed wheel carries the model under <prefix>/share."""
    checkout = REPO_ROOT / "models" / "finsignal-encoder"
    installed = Path(sys.prefix) / "share" / "finsignal" / "models" / "finsignal-encoder"
    return installed if not checkout.is_dir() and installed.is_dir() else checkout


DEFAULT_MODEL_DIR = _default_model_dir()


class ConfigError(ValueError):
    """A setting is wrong; the message names the setting and the fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # --- Kafka -------------------------------------------------------------------------------
    kafka_bootstrap: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    input_topic: str = Field("news.raw", description="topic of incoming news/chat events")
    signals_topic: str = Field("news.signals", description="topic for per-message signals")
    alerts_topic: str = Field("news.alerts", description="topic for surge alerts")
    dlq_topic: str = Field("news.dlq", description="dead-letter topic for messages that cannot be classified")
    group_id: str = Field("finsignal-classify", description="consumer group of the classify stage")
    alert_group_id: str = Field("finsignal-alert", description="consumer group of the alert stage")
    group_instance_id: str | None = Field(
        None, description="static group membership id (e.g. the pod name); empty for dynamic membership"
    )
    role: Literal["all", "classify", "alert"] = Field("all", description="which stages this process runs")
    session_timeout_ms: int = Field(10_000, ge=1000, description="consumer group session timeout")
    max_poll_interval_ms: int = Field(30_000, ge=1000, description="max time between polls before eviction")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where a new consumer group starts reading"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism when security_protocol is SASL_*"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (prefer sasl_password_file)")
    sasl_password_file: Path | None = Field(None, description="file holding the SASL password")
    ssl_cafile: Path | None = Field(None, description="CA bundle for the broker's certificate")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client private key (mutual TLS)")
    producer_linger_ms: int = Field(
        100,
        ge=0,
        description="producer linger: the stages flush at the end of every batch anyway, so a long linger "
        "only groups a batch's outputs into fewer requests (5 ms woke the sender ~20x per batch)",
    )
    producer_compression: Literal["none", "gzip"] = Field("none", description="output compression")
    producer_batch_bytes: int = Field(
        900_000,
        ge=16_384,
        description="producer record-batch size: a batch's signals (~2.5 kB each) should fit in one, since "
        "an idempotent producer wakes its sender on every send once a second batch waits; keep it under "
        "the brokers' message.max.bytes (1 MiB by default)",
    )

    # --- Input handling and batching -----------------------------------------------------------
    max_message_bytes: int = Field(65_536, ge=256, description="messages larger than this go to the DLQ")
    max_batch_size: int = Field(
        256,
        ge=1,
        description="max messages per inference batch: only a backlog fills it (the window closes on "
        "max_batch_delay_ms or when the previous batch is done); under one, 256 gave 1.21x the end-to-end "
        "msg/s of 64 (fewer, fuller length-sorted sub-batches) with the same p99 at 50 percent load",
    )
    max_batch_tokens: int = Field(
        512,
        ge=64,
        description="max padded tokens per encoder call: a batch runs as length-sorted sub-batches within "
        "this budget, so short texts are not padded to the longest (512: 1.9x the throughput of 8192 on the "
        "bench texts, 2 cores)",
    )
    max_batch_delay_ms: int = Field(20, ge=0, description="max wait to fill a batch once one message is in")
    max_tokens: int = Field(128, ge=8, le=512, description="token cap per message (longer text is truncated)")
    fetch_max_wait_ms: int = Field(
        50,
        ge=0,
        le=5000,
        description="longest a fetch waits on the broker for new records (bounds idle latency; Kafka's 500 "
        "adds up to half a second on brokers that do not wake waiting fetches)",
    )

    # --- Model -------------------------------------------------------------------------------
    model_dir: Path = Field(DEFAULT_MODEL_DIR, description="folder of the shipped encoder (manifest.json)")
    provider: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: auto picks CUDA when available"
    )
    intra_op_threads: int = Field(
        0, ge=0, description="ONNX Runtime threads for inference, all streams together (0: all cores)"
    )
    inference_streams: int = Field(
        0,
        ge=0,
        description="CPU: a batch's length-sorted sub-batches run this many at a time, the threads shared "
        "out among them (0: one per thread, at most 4: 1.2x the encoder msg/s of one 2-thread run "
        "at a time on 2 cores, same outputs); CUDA always runs one",
    )
    intra_op_spinning: bool = Field(
        False,
        description="ONNX Runtime threads busy-wait between ops: 5 percent faster on a machine of their own, "
        "but they take the cores the Kafka I/O needs (end to end 1,138 -> 1,239 msg/s without, bench row 5)",
    )
    gil_switch_interval_ms: float = Field(
        1.0,
        gt=0,
        le=100,
        description="the classify process's Python thread switch interval (Python's default is 5): an "
        "inference stream waits for the GIL after every sub-batch while the run loop builds signals; 1 ms "
        "gave a median +2 percent backlog drain at +5 points of CPU (5 pairs, bench row 5w, 2 cores)",
    )

    # --- Knowledge base (Redis) --------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding the versioned KB")
    redis_password: SecretStr | None = Field(None, description="Redis password (prefer redis_password_file)")
    redis_password_file: Path | None = Field(None, description="file holding the Redis password")
    kb_namespace: str = Field("finsignal:kb", description="Redis key prefix of the KB")
    kb_poll_interval_s: float = Field(5.0, gt=0, description="KB pointer poll (pub/sub notices can be lost)")
    kb_top_m: int = Field(8, ge=1, description="knowledge points attended to per message")
    kb_top_groups: int = Field(3, ge=1, description="expert groups routed to per message (sparse routing)")
    kb_max_entries: int = Field(500_000, ge=1, description="refuse KB versions larger than this")
    kb_keep_versions: int = Field(
        100, ge=1, description="KB versions kept in Redis for rollback (older contents are pruned)"
    )

    # --- Alerts ------------------------------------------------------------------------------
    alert_window_s: int = Field(300, ge=10, description="short surge window (event time)")
    alert_baseline_halflife_s: int = Field(6 * 3600, ge=60, description="baseline EWMA half-life")
    alert_allowed_lateness_s: int = Field(120, ge=0, description="events later than this are counted late")
    alert_min_count: float = Field(
        1.5, gt=0, description="min confidence-weighted negative count (sum of P(negative)) to alert"
    )
    alert_min_messages: int = Field(
        4,
        ge=1,
        description="min messages (any sentiment) in the surge span (copies of one story count once)",
    )
    alert_cooldown_s: int = Field(
        900, ge=0, description="no new alert for a key within this time after it resolved"
    )
    alert_bucket_s: int = Field(
        30, ge=1, description="event-time bucket: the surge test scans 1..window/bucket buckets"
    )
    alert_fire_score: float = Field(
        5.0, gt=0, description="scan test: surge score (about sigmas) at which an alert fires"
    )
    alert_warning_score: float = Field(
        6.0, gt=0, description="surge score at which a firing alert is 'warning'"
    )
    alert_critical_score: float = Field(
        8.0, gt=0, description="surge score at which a firing alert is 'critical'"
    )
    alert_resolve_score: float = Field(
        2.0, description="a firing key resolves when its score falls below this"
    )
    alert_min_share_ratio: float = Field(
        1.1, ge=1.0, description="the window's negative share must be at least this x the baseline share"
    )
    alert_volume_tolerance: float = Field(
        2.0,
        ge=1.0,
        description="volume may rise this many x above baseline (busy hours) without counting as evidence",
    )
    alert_surge_llr: float = Field(
        5.0,
        gt=0,
        description="sequential test: log-likelihood ratio (nats) of the specified surge that fires a key",
    )
    alert_surge_llr_ref_rate_per_hour: float = Field(
        30.0,
        gt=0,
        description="sequential test: keys busier than this get log(rate/this) added to alert_surge_llr",
    )
    alert_surge_rate_per_min: float = Field(
        5.0, gt=0, description="sequential test: message rate of the surge to catch fast (per minute)"
    )
    alert_surge_share_factor: float = Field(
        3.0, gt=1, description="sequential test: negative share of the surge, as a multiple of the baseline"
    )
    alert_surge_min_span_s: float = Field(
        0.0,
        ge=0,
        description=(
            "sequential test: fire only on spans at least this long from their first message (event "
            "time); a short cluster must persist (0: fire on any span)"
        ),
    )
    alert_classifier_prior: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="negative share that the classifier's P(negative) is calibrated for (evidence weights)",
    )
    alert_prior_share: float = Field(0.3, gt=0, lt=1, description="prior negative share of a new key")
    alert_prior_messages: float = Field(20.0, gt=0, description="weight of the prior share, in messages")
    alert_prior_rate_per_hour: float = Field(30.0, gt=0, description="prior message rate of a new key")
    alert_prior_exposure_s: int = Field(
        1800, ge=1, description="weight of the prior rate, in seconds observed"
    )
    alert_top_messages: int = Field(
        3, ge=0, le=20, description="top contributing messages carried by an alert"
    )
    alert_dedupe_window_s: int = Field(
        1800,
        ge=0,
        description=(
            "copies of one story (the signal's finsignal.story header) within this much event time "
            "count once per key (0: every signal counts)"
        ),
    )
    alert_dedupe_max_stories: int = Field(
        20_000, ge=1, description="stories remembered per key for alert_dedupe_window_s (oldest forgotten)"
    )
    alert_rebuild_horizon_s: int = Field(
        6 * 3600,
        ge=0,
        description="on start, re-read signals this far back (event time) to rebuild alert state",
    )
    alert_partition_idle_s: float = Field(
        5.0,
        ge=0,
        description=(
            "a (signals partition, input partition) stream with no record for this long (processing "
            "time), its signals partition read to its end, stops holding back the alert stage's "
            "watermark (min over active streams)"
        ),
    )
    alert_reorder_max_records: int = Field(
        50_000,
        ge=1,
        description="signals held for event-time order across partitions; over it the oldest go early",
    )
    alert_reorder_max_wait_s: float = Field(
        120.0,
        gt=0,
        description="longest a signal waits (processing time) for the other partitions' watermarks",
    )

    # --- Operations --------------------------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="address of the /metrics, /healthz, /readyz server")
    metrics_port: int = Field(9100, ge=0, le=65535, description="port of the metrics server (0: any free)")
    shutdown_timeout_s: float = Field(10.0, gt=0, description="SIGTERM: finish, flush, commit within this")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(
                    f"{server!r} is not host:port; set FINSIGNAL_KAFKA_BOOTSTRAP or --kafka-bootstrap "
                    "to e.g. 127.0.0.1:9092"
                )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)")
        return value

    @model_validator(mode="after")
    def _sasl_complete(self) -> Settings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_mechanism and self.sasl_username):
            raise ValueError(
                "security_protocol SASL_* needs sasl_mechanism and sasl_username "
                "(FINSIGNAL_SASL_MECHANISM, FINSIGNAL_SASL_USERNAME) and a password "
                "(FINSIGNAL_SASL_PASSWORD or FINSIGNAL_SASL_PASSWORD_FILE)"
            )
        return self

    # Secrets: read from the value or its file, never logged (SecretStr masks repr/str).
    def sasl_password_value(self) -> str | None:
        return _secret(self.sasl_password, self.sasl_password_file)

    def redis_password_value(self) -> str | None:
        return _secret(self.redis_password, self.redis_password_file)

    def kafka_client_kwargs(self) -> dict[str, object]:
        """Connection settings shared by every kafka-python client of this process."""
        kwargs: dict[str, object] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap.split(",")],
            "security_protocol": self.security_protocol,
            # kafka-python backs reconnects off up to 30 s: after a 30 s broker outage a worker sat idle
            # 21 s after the broker was back. Every client of the process resumes within 5 s instead.
            "reconnect_backoff_max_ms": 5_000,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password_value()
        for key, path in (
            ("ssl_cafile", self.ssl_cafile),
            ("ssl_certfile", self.ssl_certfile),
            ("ssl_keyfile", self.ssl_keyfile),
        ):
            if path is not None:
                kwargs[key] = str(path)
        return kwargs


def _secret(value: SecretStr | None, path: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from exc
    return None


def load_settings(**overrides: object) -> Settings:
    """Build Settings from env + overrides, turning validation errors into one readable ConfigError."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = str(err["loc"][0]) if err["loc"] else "settings"
            flag = "--" + name.replace("_", "-")
            env = ENV_PREFIX + name.upper()
            lines.append(f"setting {name} ({flag} / {env}): {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
