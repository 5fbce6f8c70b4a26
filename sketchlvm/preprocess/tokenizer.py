"""CLIP's BPE tokenizer without torch: the same ids as open_clip's ``SimpleTokenizer``, as numpy.

The serving install has no open_clip (its tokenizer module imports torch), yet words must reach the
exported text graph as exactly the ids open_clip would give them, or the text vectors drift from the
ones the graph was checked with. So this is CLIP's tokenizer rewritten as plain Python over the same
vocabulary file (``bpe_simple_vocab_16e6.txt.gz``, shipped in every export folder) with the same
cleaning (ftfy, HTML entities twice, whitespace collapsed, lower case) and the same truncation (keep
the first ``context_length`` ids, the last one forced to the end token). tests/preprocess/test_tokenizer.py
compares it with open_clip's on a few hundred strings.

It also reads the vocabulary from a Hugging Face ``tokenizer.json`` (the form immich publishes its CLIP
exports with): CLIP's ``vocab`` + ``merges`` there are the same BPE under other special-token names.
"""

from __future__ import annotations

import gzip
import html
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
DEFAULT_CONTEXT_LENGTH = 77
_N_MERGES = 49152 - 256 - 2  # CLIP uses the vocabulary file's first merges only
_SPECIALS = ("<start_of_text>", "<end_of_text>")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """Byte -> a printable character standing for it, so BPE works on text without whitespace or controls."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))  # noqa: B905


def clean(text: str) -> str:
    """open_clip's "lower" cleaning: ftfy, HTML entities (twice), whitespace collapsed, lower case."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


class ClipTokenizer:
    """``tokenizer(texts) -> (N, context_length) int64`` ids; ``encode``/``decode`` as open_clip's."""

    def __init__(self, merges: list[tuple[str, str]], context_length: int = DEFAULT_CONTEXT_LENGTH):
        import regex

        byte_chars = list(bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges] + list(_SPECIALS)
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.bpe_ranks = {merge: i for i, merge in enumerate(merges)}
        self.cache = {t: t for t in _SPECIALS}
        self.pattern = regex.compile("|".join(_SPECIALS) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                                     regex.IGNORECASE)
        self.sot_token_id, self.eot_token_id = self.encoder[_SPECIALS[0]], self.encoder[_SPECIALS[1]]
        self.context_length = int(context_length)
        self.vocab_size = len(self.encoder)

    @classmethod
    def from_file(cls, path: str | Path, context_length: int = DEFAULT_CONTEXT_LENGTH) -> ClipTokenizer:
        """CLIP's ``bpe_simple_vocab_16e6.txt.gz``, or a Hugging Face ``tokenizer.json`` of CLIP's BPE."""
        path = Path(path)
        if path.name.endswith(".json"):
            model = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
            merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
        else:
            with gzip.open(path) as handle:
                lines = handle.read().decode("utf-8").split("\n")[1 : _N_MERGES + 1]
            merges = [tuple(line.split()) for line in lines]
        if len(merges) < _N_MERGES or any(len(m) != 2 for m in merges[:_N_MERGES]):
            raise ValueError(f"{path} does not hold CLIP's BPE merges ({len(merges)} found, {_N_MERGES} needed)")
        return cls(merges[:_N_MERGES], context_length)

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        result = " ".join(word)
        self.cache[token] = result
        return result

    def encode(self, text: str) -> list[int]:
        """Content ids of ``text`` (no start/end tokens, not truncated)."""
        ids = []
        for token in self.pattern.findall(clean(text)):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token).split(" "))
        return ids

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.decoder[i] for i in ids)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> np.ndarray:
        """(N, context_length) int64: start, content, end, zero padding; too long: cut, last id the end token."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        length = int(context_length or self.context_length)
        out = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            out[row, : len(ids)] = ids
        return out
