"""Embedding very large galleries on a Ray cluster, and merging the shards into an ordinary gallery index.

May import ``sketchlvm.model``, ``sketchlvm.gallery`` and ``sketchlvm.preprocess``; nothing imports it but the
``sketchlvm`` command. Run as ``python -m sketchlvm cluster``.
"""
