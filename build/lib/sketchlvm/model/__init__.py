"""The prompted CLIP model: the frozen encoder with its visual prompts, CLIP weights and where they come
from, checkpoints of the learned parts, the text tower, and ``create_sketchlvm`` that puts them together.

May import ``sketchlvm.config``, ``device``, ``hub``, ``preprocess`` and ``runtime``; never the gallery, search,
datasets, training, evaluation or the web app.
"""
