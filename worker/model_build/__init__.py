"""Offline model building: fine-tune, prune, distil, export and evaluate the encoder.

Torch-free modules (usable by the runtime): ``artifact``, ``tokenizer_files``, ``evaluate``, ``metrics``.
"""
