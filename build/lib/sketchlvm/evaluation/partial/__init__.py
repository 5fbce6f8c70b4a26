"""Partial-sketch (on-the-fly) evaluation: strokes revealed step by step, framed, ranked, m@A / m@B.

May import ``sketchlvm.evaluation``, ``datasets``, ``model`` and ``preprocess``.
"""
