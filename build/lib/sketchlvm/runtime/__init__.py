"""What runs the encoder: engine choice (torch or ONNX Runtime), the ONNX export and its traceable tower,
and int8 quantisation with its agreement check.

May import ``sketchlvm.config``, ``sketchlvm.device`` and ``sketchlvm.preprocess``; the model package picks an
engine from here, so nothing here imports ``sketchlvm.model`` at module level.
"""
