"""Evaluation on judged data: BEIR-format retrieval sets, QA sets, and the metrics both use."""
