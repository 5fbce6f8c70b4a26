"""The torch-free CLIP tokenizer gives open_clip's ids: on a few hundred strings, Unicode and over-long ones.

The serving install tokenises words with ``sketchlvm.preprocess.tokenizer`` and feeds the ids to a text
graph that was checked against torch with open_clip's ids; any difference here moves text vectors.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from sketchlvm.config import TEXT_CHECK_WORDS
from sketchlvm.preprocess.tokenizer import VOCAB_FILE, ClipTokenizer

open_clip = pytest.importorskip("open_clip")  # the reference: the full install only


def _strings(sketchy_root: Path | None) -> list[str]:
    rng = random.Random(0)
    words = list(TEXT_CHECK_WORDS) + [
        "", " ", "a photo of a cat.", "A PHOTO OF A CAT", "don't", "it's we'll they're I'm you'd",
        "café", "naïve façade", "Straße", "東京タワー", "北京烤鸭", "서울", "Москва", "ελληνικά", "עברית", "العربية",
        "हिन्दी", "🐱 cat", "👩‍👩‍👧 family", "🇫🇷", "caf\u0065\u0301", "ﬁsh", "Ⅻ", "x²", "½ cup", "①②③",
        "&amp; &lt;b&gt;", "&amp;amp;", "Ã©tÃ©", "â€œquotedâ€\x9d", "tab\there", "new\nline", "zero\u200bwidth",
        "\u00a0nbsp\u00a0", "3.14159 2,718", "12345678901234567890", "#hashtag @user http://example.com/a?b=c",
        "C++ & C#", "(nested [brackets] {here})", "----", "!!!???", "a" * 500, "ab " * 120,
        "the quick brown fox jumps over the lazy dog " * 12, "🙂" * 100, "東" * 200,
    ]
    if sketchy_root is not None and (sketchy_root / "photo").is_dir():
        words += [p.name.replace("_", " ") for p in sorted((sketchy_root / "photo").iterdir())]
    pools = ["abcdefghijklmnopqrstuvwxyz     ", "ÀÉÎÕÜàéîõüçñß", "αβγδεζηθ", "абвгдежз", "あいうえおカキクケコ漢字",
             "0123456789", ".,;:!?'\"()[]-_/&", "🐶🐱🌊🔥✏️🖼️", "\u0301\u0308\u200d\ufe0f"]
    while len(words) < 400:
        n = rng.choice([1, 3, 8, 20, 60, 200, 400])
        pool = "".join(rng.sample(pools, rng.randint(1, 3)))
        words.append("".join(rng.choice(pool) for _ in range(n)))
    return words


@pytest.fixture(scope="module")
def pair():
    reference = open_clip.get_tokenizer("ViT-B-32-quickgelu")
    ours = ClipTokenizer.from_file(Path(open_clip.__file__).parent / VOCAB_FILE, reference.context_length)
    return reference, ours


def test_ids_match_open_clip_on_400_strings(pair, request):
    try:
        sketchy = request.getfixturevalue("sketchy_root")
    except pytest.skip.Exception:
        sketchy = None
    reference, ours = pair
    strings = _strings(sketchy)
    assert len(strings) >= 400
    expected = reference(strings).numpy()
    got = ours(strings)
    assert got.dtype == np.int64 and got.shape == expected.shape == (len(strings), 77)
    mismatched = [s for s, a, b in zip(strings, expected, got) if not np.array_equal(a, b)]  # noqa: B905
    assert not mismatched, f"{len(mismatched)} strings tokenised differently, e.g. {mismatched[:3]!r}"
    long = [s for s in strings if len(reference.encode(s)) + 2 > 77]
    assert len(long) >= 20, "the sample must hold over-long strings (truncation)"
    for s in strings:
        assert ours.encode(s) == reference.encode(s)
        assert ours.decode(ours.encode(s)) == reference.decode(reference.encode(s))


def test_truncation_keeps_the_end_token(pair):
    _, ours = pair
    ids = ours(["word " * 200])[0]
    assert ids[0] == ours.sot_token_id and ids[-1] == ours.eot_token_id and (ids != 0).all()


def test_a_file_without_clip_merges_is_refused(tmp_path):
    import gzip

    path = tmp_path / VOCAB_FILE
    path.write_bytes(gzip.compress(b"#version\na b\n"))
    with pytest.raises(ValueError, match="CLIP's BPE merges"):
        ClipTokenizer.from_file(path)
