"""finsignal worker: Kafka in, pruned encoder + expert KB fusion, signals and alerts out."""

__version__ = "0.1.0"
