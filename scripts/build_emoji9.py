#!/usr/bin/env python
"""Rebuild ``src/mmbalance/data/embedded/files/emoji9.npz`` (the Emoji-9 image + text dataset) byte for byte.

Sources (Debian 12 packages; needed only to rebuild, never by the library):

* ``unicode-data`` 15.0.0-1: ``/usr/share/unicode/emoji/emoji-test.txt`` (Unicode 15.0) gives, per emoji, its
  code points, status, group, sub-group and CLDR short name;
* ``fonts-noto-color-emoji`` 2.042-0+deb12u1: ``/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf``.

    apt-get install unicode-data fonts-noto-color-emoji

Construction: every ``fully-qualified`` line whose code points contain no skin-tone modifier (U+1F3FB..1F3FF)
is a sample (the ``Component`` group has no fully-qualified line), labelled by its group (9 classes, in file
order). Image: the code point sequence drawn by Pillow with Noto Color Emoji at its bitmap size 109
(``embedded_color=True``, Raqm layout so that ZWJ sequences and flags become one glyph), alpha-composited on
white in a 136x136 square, resized to 32x32 with Lanczos, uint8 RGB. Text: the CLDR name, tokenised by
scikit-learn's ``CountVectorizer`` (lower case, words of >= 2 letters) keeping the words that occur in at least
two names (a word seen once cannot carry from a training sample to a test sample). The sub-group is not used
as text: it determines the group.

Usage:
    python scripts/build_emoji9.py            # rebuild the shipped file and update files/SHA256SUMS
    python scripts/build_emoji9.py --check    # rebuild into a temp dir; exit 1 unless it matches SHA256SUMS
    python scripts/build_emoji9.py --out DIR  # write DIR/emoji9.npz only

Byte-for-byte equality needs the same emoji-test.txt and font (their SHA-256 are stored in ``build_config``),
and the same Pillow/FreeType (glyph scaling) and zlib (compression); the script prints what it used.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.data.embedded import (  # noqa: E402
    rebuild,
    sha256_file,
    write_npz_deterministic,
)
from mmbalance.data.embedded.emoji9 import EMOJI9_FILE, IMAGE_SIZE  # noqa: E402

EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
GLYPH_SIZE = 109  # the only size of Noto Color Emoji's CBDT bitmaps (136x128 px)
CANVAS = 136
SKIN_TONES = range(0x1F3FB, 0x1F3FF + 1)
MIN_DOCUMENT_FREQUENCY = 2
LINE = re.compile(r"^(?P<cps>[0-9A-F ]+?)\s*;\s*(?P<status>[a-z-]+)\s*#\s*\S+\s+E(?P<since>\d+\.\d+)\s+(?P<name>.+)$")


def read_emoji_test(path: Path) -> tuple[list[dict], str]:
    """Samples ``{codepoints, group, subgroup, name}`` (fully-qualified, no skin tone) and the file's version."""
    samples, group, subgroup, version = [], None, None, "?"
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# Version:"):
            version = line.split(":", 1)[1].strip()
        elif line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#"):
            m = LINE.match(line)
            if m is None:
                raise SystemExit(f"{path}: cannot parse line {line!r}")
            cps = [int(c, 16) for c in m["cps"].split()]
            if m["status"] == "fully-qualified" and not any(c in SKIN_TONES for c in cps):
                samples.append({"codepoints": cps, "group": group, "subgroup": subgroup, "name": m["name"].strip()})
    return samples, version


def render(samples: list[dict], font_path: Path) -> np.ndarray:
    """uint8 ``[N, 3, 32, 32]`` RGB glyphs on white."""
    from PIL import Image, ImageDraw, ImageFont, features

    if not features.check("raqm"):
        raise SystemExit("Pillow has no Raqm layout (libraqm/fribidi): ZWJ sequences and flags would render as "
                         "several glyphs. Use a Pillow wheel (it bundles Raqm) with libfribidi installed.")
    font = ImageFont.truetype(str(font_path), GLYPH_SIZE, layout_engine=ImageFont.Layout.RAQM)
    images = []
    for s in samples:
        text = "".join(map(chr, s["codepoints"]))
        left, top, right, bottom = font.getbbox(text)
        if (right - left, bottom - top) != (136, 128):  # several glyphs, or a missing one: not one emoji
            raise SystemExit(f"{s['name']!r}: glyph box {right - left}x{bottom - top}, expected one 136x128 glyph")
        glyph = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 0))
        ImageDraw.Draw(glyph).text((-left, (CANVAS - 128) // 2 - top), text, font=font, embedded_color=True)
        canvas = Image.new("RGBA", (CANVAS, CANVAS), (255, 255, 255, 255))
        canvas.alpha_composite(glyph)
        small = canvas.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
        images.append(np.asarray(small, dtype=np.uint8).transpose(2, 0, 1))
    return np.stack(images)


def word_counts(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """uint8 ``[N, V]`` word counts and the sorted vocabulary (words in >= 2 names)."""
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(min_df=MIN_DOCUMENT_FREQUENCY, lowercase=True)
    counts = vectorizer.fit_transform(names).toarray()
    if counts.max() > 255:
        raise SystemExit("a word occurs more than 255 times in one name")
    return counts.astype(np.uint8), np.array(vectorizer.get_feature_names_out(), dtype=str)


def build_arrays(emoji_test: Path, font: Path) -> dict[str, np.ndarray]:
    samples, version = read_emoji_test(emoji_test)
    groups = list(dict.fromkeys(s["group"] for s in samples))
    names = [s["name"] for s in samples]
    counts, vocabulary = word_counts(names)
    import PIL
    import sklearn

    config = {"emoji_version": version, "emoji_test_sha256": sha256_file(emoji_test),
              "font_sha256": sha256_file(font), "glyph_size": GLYPH_SIZE, "image_size": IMAGE_SIZE,
              "min_document_frequency": MIN_DOCUMENT_FREQUENCY, "pillow": PIL.__version__,
              "scikit_learn": sklearn.__version__}
    return {
        "image": render(samples, font),
        "text_counts": counts,
        "vocabulary": vocabulary,
        "labels": np.array([groups.index(s["group"]) for s in samples], dtype=np.int64),
        "class_names": np.array(groups, dtype=str),
        "names": np.array(names, dtype=str),
        "subgroups": np.array([s["subgroup"] for s in samples], dtype=str),
        "codepoints": np.array([" ".join(f"{c:04X}" for c in s["codepoints"]) for s in samples], dtype=str),
        "build_config": np.array(json.dumps(config, sort_keys=True)),
    }


def build(out_dir: Path, emoji_test: Path, font: Path) -> Path:
    for p in (emoji_test, font):
        if not p.is_file():
            raise SystemExit(f"{p} not found: apt-get install unicode-data fonts-noto-color-emoji")
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / EMOJI9_FILE
    write_npz_deterministic(out, build_arrays(emoji_test, font))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with SHA256SUMS")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's files/)")
    parser.add_argument("--emoji-test", type=Path, default=EMOJI_TEST, help=f"default {EMOJI_TEST}")
    parser.add_argument("--font", type=Path, default=FONT, help=f"default {FONT}")
    args = parser.parse_args(argv)
    import zlib

    import PIL
    from PIL import features

    print(f"Pillow {PIL.__version__}, FreeType {features.version('freetype2')}, Raqm {features.version('raqm')}, "
          f"zlib {zlib.ZLIB_RUNTIME_VERSION}")
    return rebuild(EMOJI9_FILE, lambda folder: build(folder, args.emoji_test, args.font),
                   check=args.check, out=args.out)


if __name__ == "__main__":
    sys.exit(main())
