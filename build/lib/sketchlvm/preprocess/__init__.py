"""Turning what people give into what the encoder takes: strokes -> a sketch image, and sketch or photo
images -> normalised tensors (the one stroke renderer, framing, safe image loading).

May import only ``sketchlvm.config`` (and numpy, Pillow, torch); everything else imports it.
"""
