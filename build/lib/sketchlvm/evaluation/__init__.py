"""Evaluation: embedding a dataset, ranking (CPU and GPU), the retrieval metrics, reports, the
``evaluate`` command, and partial-sketch evaluation (``partial/``).

May import ``sketchlvm.datasets``, ``sketchlvm.model`` and ``sketchlvm.preprocess``; never ``training``.
"""
