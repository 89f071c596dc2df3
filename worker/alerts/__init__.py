"""Surge alerts: a pure event-time engine (``engine``) and the Kafka stage around it (``stage``).

``engine.AlertEngine`` turns signals into firing/resolved alerts with no I/O and no wall clock, so a
replay of the same input gives the same alerts; ``stage.AlertStage`` consumes the signals topic,
rebuilds state on start, publishes alerts and commits offsets once the alerts are acknowledged.
"""
