"""Training: the batch sampler, the losses, the trainer loop and its command line.

Flow: datasets -> sampler -> losses -> trainer -> checkpoint. May import ``sketchlvm.datasets``,
``sketchlvm.model``, ``sketchlvm.preprocess`` and ``sketchlvm.evaluation`` (model selection on validation);
nothing outside this package imports it.
"""
