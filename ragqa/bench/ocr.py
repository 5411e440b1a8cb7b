"""`ragqa bench ocr`: character error rate and pages per minute of OCR on scanned pages with known
text. `generate` makes such a set (text rendered at 200 dpi in several fonts, with noise, blur and
a slight rotation: what a flatbed scanner or a fax gives); `measure` reads it back.

A set is a folder of `NAME.png` with `NAME.txt` beside it (the text on the page). The CER is the
edit distance between what OCR read and that text, whitespace runs counted as one space, over the
length of the text, summed over the pages.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np

DPI = 200
_FONT_DIRS = ("/usr/share/fonts", "/usr/local/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
_WORDS = """the of and to in a is that for it as was with be by on not he this are or his from at which but have
an they you were her she there been one all we their has would when if so no will more can about said what out
up some into them than only other time new also its any these two may first then do could my our over such like
made after years work most where through back much before before must well between each year those people
state under never three should life being world same another while while last might great found since against
report policy staff office notice contract payment invoice meeting council budget member committee service
request approval deadline amount balance account record section schedule agreement renewal department leave
annual monthly review training safety building room floor access key visitor parking holiday travel expense
receipt signed dated received copy original number reference page total fee charge rate tax invoice period""".split()


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
    if rng.random() < 0.4:
        words.insert(rng.randrange(len(words)), str(rng.choice([rng.randint(1, 999), rng.randint(1990, 2030)])))
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), f"{rng.randint(10, 9999)}.{rng.randint(0, 99):02d}")
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice(".....;?:")


def fonts() -> list[Path]:
    """Regular, serif, mono, condensed, bold and italic TrueType fonts found on this machine."""
    found = sorted(p for d in _FONT_DIRS if Path(d).is_dir() for p in Path(d).rglob("*.ttf"))
    return [p for p in found if "Math" not in p.name and "ExtraLight" not in p.name]


def render_page(lines: list[str], font_path: Path | None, size_pt: float, rng: random.Random,
                noise: float = 12.0, max_angle: float = 1.5) -> Any:
    """An A4 page at 200 dpi with `lines` on it, grey noise, a little blur and a slight rotation."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    width, height = int(8.27 * DPI), int(11.69 * DPI)
    px = int(size_pt * DPI / 72)
    font = ImageFont.truetype(str(font_path), px) if font_path else ImageFont.load_default(px)
    page = Image.new("L", (width, height), 250)
    draw = ImageDraw.Draw(page)
    y = int(0.8 * DPI)
    for line in lines:
        draw.text((int(0.8 * DPI), y), line, fill=rng.randint(10, 60), font=font)
        y += int(px * 1.5)
    page = page.rotate(rng.uniform(-max_angle, max_angle), resample=Image.Resampling.BICUBIC, fillcolor=250,
                       expand=False)
    page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    nprng = np.random.default_rng(rng.randint(0, 2**31))
    arr = np.asarray(page, dtype=np.float64) + nprng.normal(0, noise, page.size[::-1])
    specks = nprng.random(arr.shape) < 0.0005  # dust
    arr[specks] = 0
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def wrap(text: str, font_path: Path | None, size_pt: float, max_px: int) -> list[str]:
    from PIL import ImageFont

    font = ImageFont.truetype(str(font_path), int(size_pt * DPI / 72)) if font_path else ImageFont.load_default()
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if font.getlength(trial) > max_px and line:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def generate(folder: Path, pages: int = 50, seed: int = 7) -> dict[str, Any]:
    """Write `pages` scanned pages with their texts into `folder`; the fonts are cycled."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    faces: list[Path | None] = list(fonts()) or [None]
    for n in range(pages):
        face = faces[n % len(faces)]
        size = rng.choice([10, 11, 12, 14])
        paragraph = " ".join(_sentence(rng) for _ in range(rng.randint(8, 16)))
        lines = wrap(paragraph, face, size, int(6.6 * DPI))[:40]
        render_page(lines, face, size, rng).save(folder / f"page{n:03d}.png", dpi=(DPI, DPI))
        (folder / f"page{n:03d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"folder": str(folder), "pages": pages, "fonts": sorted({f.stem if f else "default" for f in faces})}


def levenshtein(a: str, b: str) -> int:
    """Edit distance, one row at a time with numpy (a page is ~2,000 characters)."""
    if not a or not b:
        return len(a) or len(b)
    bb = np.frombuffer(b.encode("utf-32-le"), dtype=np.uint32)
    idx = np.arange(len(b) + 1)
    prev = idx.copy()
    for i, ch in enumerate(a, 1):
        cost = (bb != ord(ch)).astype(np.int64)
        tmp = np.empty(len(b) + 1, dtype=np.int64)
        tmp[0] = i
        tmp[1:] = np.minimum(prev[1:] + 1, prev[:-1] + cost)
        # Insertions within the row: row[j] = min_k<=j tmp[k] + (j - k).
        prev = np.minimum.accumulate(tmp - idx) + idx
    return int(prev[-1])


def _norm(text: str) -> str:
    return " ".join(text.split())


class _Tesseract:
    name = "tesseract"

    def __init__(self, languages: str) -> None:
        from ingest.ocr import check_languages

        check_languages(languages)
        self.languages = languages

    def read(self, image: Any) -> str:
        from ingest.ocr import ocr_image

        return ocr_image(image, self.languages).text


class _RapidOcr:
    """RapidOCR (PaddleOCR's PP-OCRv4 models, shipped in the rapidocr-onnxruntime wheel)."""

    name = "rapidocr"

    def __init__(self, languages: str) -> None:
        from rapidocr_onnxruntime import RapidOCR  # only for this comparison; not a dependency

        self._engine = RapidOCR()

    def read(self, image: Any) -> str:
        result, _ = self._engine(np.asarray(image.convert("RGB")))
        return "\n".join(line[1] for line in result or [])


ENGINES: dict[str, type[_Tesseract] | type[_RapidOcr]] = {"tesseract": _Tesseract, "rapidocr": _RapidOcr}


def measure(folder: Path, engine: str = "tesseract", languages: str = "eng", limit: int = 0) -> dict[str, Any]:
    """CER and pages/minute of one engine over the set in `folder`."""
    from PIL import Image

    images = sorted(folder.glob("*.png"))[: limit or None]
    if not images:
        from rag.errors import ConfigError

        raise ConfigError(f"no page images (*.png with *.txt) in {folder}; make a set with --generate")
    reader: _Tesseract | _RapidOcr = ENGINES[engine](languages)
    errors = chars = 0
    worst = 0.0
    seconds = 0.0
    for path in images:
        truth = _norm(path.with_suffix(".txt").read_text(encoding="utf-8"))
        with Image.open(path) as im:
            im.load()
            t0 = time.perf_counter()
            text = reader.read(im)
            seconds += time.perf_counter() - t0
        e = levenshtein(_norm(text), truth)
        errors, chars = errors + e, chars + len(truth)
        worst = max(worst, e / max(1, len(truth)))
    return {"engine": engine, "pages": len(images), "cer": round(errors / max(1, chars), 4),
            "worst_page_cer": round(worst, 4), "pages_per_minute": round(60 * len(images) / seconds, 1),
            "seconds": round(seconds, 1)}


def bench_ocr(folder: Path, engines: list[str], languages: str, limit: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in engines:
        try:
            out[name] = measure(folder, name, languages, limit)
        except ImportError as exc:
            out[name] = {"engine": name, "error": f"not installed ({exc.name})"}
    return out
