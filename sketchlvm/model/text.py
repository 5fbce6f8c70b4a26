"""Words -> unit vectors in the photo embedding space, with CLIP's own text tower.

People can draw a shape but not a colour, a material or a setting; CLIP embeds text in the space its
photos live in, so a few words can steer a sketch query ("red", "on a beach", "leather") or be the
whole query. The tower comes from the same weights as the image tower (``create_sketchlvm(text=True)``).

Text is cleaned (whitespace collapsed, control characters dropped), limited to ``MAX_TEXT_CHARS``
characters, and put into ``TEXT_TEMPLATE`` ("a photo of {}.", the prompt CLIP was evaluated with)
before tokenising. CLIP reads at most ``context_length`` tokens (77 for ViT-B/32, start and end
included); a longer prompt is truncated by the tokenizer and :class:`TextQuery` says so and what was
kept. The text tower is slow on CPU (tens of ms per prompt): features are cached per prompt, and the
model's runtime runs the tower on ONNX Runtime (fp32) when it runs the images there and the exported
text graph reproduces torch on real prompts (``sketchlvm.runtime.engine``).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TEXT_TEMPLATE = "a photo of {}."
MAX_TEXT_CHARS = 300  # about 60-75 CLIP tokens of English; a longer text is refused, not silently cut


NO_TEXT_TOWER = ("this model was loaded without CLIP's text tower, so it cannot search by words; "
                 "load it with create_sketchlvm(..., text=True)")


class TextQueryError(ValueError):
    """The words cannot be searched (empty, too long, or no text tower); the message says what to do."""


@dataclass(frozen=True)
class TextQuery:
    """What the text tower reads for one query text."""

    text: str  # the user's words, cleaned
    prompt: str  # ``template.format(text)``: what is tokenised
    tokens: int  # tokens of the prompt, start and end tokens included (before truncation)
    max_tokens: int  # the tower's context length
    used: str  # the part of the prompt the tower reads (all of it unless truncated)

    @property
    def truncated(self) -> bool:
        return self.tokens > self.max_tokens

    def note(self) -> str | None:
        """A sentence for the page when the tokenizer cut the text; None when it read all of it."""
        if not self.truncated:
            return None
        return (f"Only the start of the text was used (CLIP reads {self.max_tokens} tokens, the text has "
                f"{self.tokens}): \u201c{self.used.strip()}\u201d.")


def clean_text(text: str) -> str:
    """Collapse whitespace and drop control characters (what a pasted text brings along)."""
    kept = "".join(" " if unicodedata.category(c)[0] in "CZ" else c for c in str(text))
    return re.sub(r"\s+", " ", kept).strip()


class TextTower:
    """CLIP's text tower and tokenizer: ``encode(text) -> (D,)`` float32 unit vector, cached per prompt.

    ``clip_model`` is an open_clip model whose ``encode_text`` is used (its visual tower may be gone);
    ``tokenizer`` is open_clip's for the same model. The serving install has no torch: there
    ``clip_model`` is None, the tokenizer is ``sketchlvm.preprocess.tokenizer.ClipTokenizer`` and every
    prompt runs on the runtime's text graph. Thread-safe.
    """

    def __init__(self, clip_model: Any, tokenizer: Callable, device: Any,
                 template: str = TEXT_TEMPLATE, max_chars: int = MAX_TEXT_CHARS, cache_size: int = 256):
        if "{}" not in template:
            raise ValueError(f"text template {template!r} has no {{}} for the words")
        self.clip_model = clip_model.eval().requires_grad_(False) if clip_model is not None else None
        self.tokenizer = tokenizer
        self.device = device
        self.template = template
        self.max_chars = max_chars
        self.context_length = int(getattr(tokenizer, "context_length", 77))
        self.cache_size = max(1, int(cache_size))
        self._cache: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()  # (scope, prompt) -> (D,)
        # Which cache namespace the current call uses (None: do not cache); the app makes it the browser
        # session, so that timing says nothing of other people's words (sketchlvm.search's module doc).
        self.cache_scope: Callable[[], str | None] = lambda: ""
        self._lock = threading.Lock()
        self.encode_calls = 0  # how many prompts ran through the tower (for tests and benchmarks)
        self.runtime = None  # a sketchlvm.runtime.engine.Runtime that may run the tower on ONNX Runtime; None: torch

    def use_runtime(self, runtime) -> None:
        """Encode through ``runtime`` (see ``Runtime.encode_text``); cached vectors from another engine go."""
        with self._lock:
            self.runtime = runtime
            self._cache.clear()

    def query(self, text: str) -> TextQuery:
        """Check ``text`` and say what the tower will read. Raises :class:`TextQueryError`."""
        if not isinstance(text, str):
            raise TextQueryError(f"the words to search with must be text, got {type(text).__name__}")
        cleaned = clean_text(text)
        if not cleaned:
            raise TextQueryError("no words to search with: type a few words (e.g. \u201cred\u201d, \u201con a beach\u201d)")
        if len(cleaned) > self.max_chars:
            raise TextQueryError(f"the text is {len(cleaned)} characters long; the limit is {self.max_chars}: "
                                 "shorten it to a few words")
        prompt = self.template.format(cleaned)
        content = self._content_tokens(prompt)
        if content is None:  # a tokenizer we cannot count with: trust it to truncate, say nothing
            return TextQuery(cleaned, prompt, 0, self.context_length, prompt)
        tokens = len(content) + 2  # start and end tokens
        used = prompt if tokens <= self.context_length else self._words_read(prompt)
        return TextQuery(cleaned, prompt, tokens, self.context_length, used)

    def _words_read(self, prompt: str) -> str:
        """The longest run of whole words from the start of ``prompt`` that fits in the context."""
        words, room = prompt.split(" "), self.context_length - 2
        lo, hi = 0, len(words)  # words[:lo] fits, words[:hi + 1] does not (or is all of them)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if len(self._content_tokens(" ".join(words[:mid]))) <= room:
                lo = mid
            else:
                hi = mid - 1
        return " ".join(words[:lo])

    def _content_tokens(self, prompt: str) -> list[int] | None:
        encode = getattr(self.tokenizer, "encode", None)  # open_clip's SimpleTokenizer (CLIP's BPE)
        if callable(encode) and hasattr(self.tokenizer, "decode"):
            return list(encode(prompt))
        return None

    def encode(self, text: str) -> np.ndarray:
        """(D,) float32 unit vector for ``text`` (checked as :meth:`query` does), cached per prompt."""
        prompt = self.query(text).prompt
        scope = self.cache_scope()
        if scope is None:
            with self._lock:
                self.encode_calls += 1
            return self._encode([prompt])[0]
        key = (scope, prompt)
        with self._lock:
            vector = self._cache.get(key)
            if vector is not None:
                self._cache.move_to_end(key)
                return vector
        vector = self._encode([prompt])[0]  # outside the lock: other requests go on meanwhile
        with self._lock:
            self.encode_calls += 1
            self._cache[key] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def _encode(self, prompts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(prompts)  # (N, context_length) int64, truncated by the tokenizer
        vectors = self.runtime.encode_text(tokens) if self.runtime is not None else self.encode_tokens_torch(tokens)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        vectors.setflags(write=False)
        return vectors

    def encode_tokens_torch(self, tokens: Any) -> np.ndarray:
        """(N, context_length) token ids -> (N, D) float32 unit vectors, with torch (the full install)."""
        import torch

        from sketchlvm.device import autocast

        if self.clip_model is None:
            raise RuntimeError("this text tower has no torch model (an exported one): it runs on its text graph")
        with torch.no_grad(), autocast(self.device):
            features = self.clip_model.encode_text(torch.as_tensor(tokens).to(self.device), normalize=True)
        return features.float().cpu().numpy()
