"""OCR: a picture of a page -> its text, each word's box, and how sure the engine was.

The engine is Tesseract (Debian's `tesseract-ocr` language data, through tesserocr's in-process
API): measured against RapidOCR's ONNX models on generated scans, it was more accurate and faster
on this hardware (docs/architecture.md, "OCR engine"; `ragqa bench ocr`). It runs inside the reader
process, so a page that makes it loop or eat memory is timed out and capped like any other file.

Word boxes are kept as fractions of the page image (x0, y0, x1, y1 in 0..1), each tied to the
characters of the page text it produced, so a cited span can be drawn on the page at any scale.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import LoadError, one_line
from rag.records import PageOcr

if TYPE_CHECKING:
    from PIL.Image import Image

#: Where distributions put Tesseract's language data (Debian's tesseract-ocr-eng, Homebrew, source builds).
_TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                  "/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata")
#: PDF pages without text are rendered at this resolution for OCR (Tesseract reads 10 pt text
#: reliably from 200 dpi up: `ragqa bench ocr` pages are 200 dpi scans; higher was not measured).
OCR_DPI = 200
#: Pixels of the longer side above which an image is scaled down first: a 60-megapixel photo of a
#: page holds no more text than a 200 dpi scan, and would cost minutes and gigabytes.
_MAX_SIDE = 4000
#: Below this many pixels on the longer side an image is scaled up twice first: Tesseract reads
#: letters from about 20 pixels high, and an A4 page under ~150 dpi has smaller ones.
_MIN_SIDE = 1700
#: Below this mean word confidence a page may be sideways or upside down: orientation is checked.
_DOUBTFUL = 65.0


def tessdata_dir() -> str | None:
    """The folder holding Tesseract's `*.traineddata`, or None."""
    given = os.environ.get("TESSDATA_PREFIX")
    for folder in ([given] if given else []) + list(_TESSDATA_DIRS):
        if Path(folder).is_dir() and any(Path(folder).glob("*.traineddata")):
            return folder.rstrip("/") + "/"
    return None


def available_languages() -> list[str]:
    folder = tessdata_dir()
    return sorted(p.stem for p in Path(folder).glob("*.traineddata")) if folder else []


def check_languages(languages: str) -> None:
    """Raise LoadError unless Tesseract and the data of each `+`-joined language are installed."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        raise LoadError("OCR needs tesserocr (pip install tesserocr)") from None
    have = available_languages()
    missing = [lang for lang in languages.split("+") if lang not in have]
    if missing:
        raise LoadError(f"OCR language data missing for {'+'.join(missing)} "
                        f"(install tesseract-ocr-{missing[0]}; found: {', '.join(have) or 'none'})")


_apis: dict[str, Any] = {}


def _api(languages: str) -> Any:
    """One Tesseract instance per language set and process: loading the model costs ~0.2 s."""
    if languages not in _apis:
        # One thread: the reader process has one core; the embedder has the others.
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        import tesserocr

        check_languages(languages)
        _apis[languages] = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang=languages,
                                                   psm=tesserocr.PSM.AUTO)
    return _apis[languages]


def prepare(image: Image) -> Image:
    """Grey levels, sensible size; orientation from EXIF (a phone's photo)."""
    from PIL import ImageOps

    image = ImageOps.exif_transpose(image) or image
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGBA").convert("RGB") if "A" in image.mode or image.mode == "P" else image.convert("RGB")
    image = image.convert("L")
    longest = max(image.size)
    if longest < _MIN_SIDE:  # a page scanned or faxed at 100 dpi: Tesseract wants taller letters
        from PIL import Image as PILImage

        image = image.resize((image.width * 2, image.height * 2), PILImage.Resampling.LANCZOS)
    elif longest > _MAX_SIDE:
        scale = _MAX_SIDE / longest
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image


def ocr_image(image: Image, languages: str = "eng") -> PageOcr:
    """Read one page image with Tesseract. Raises LoadError when the engine cannot run."""
    import tesserocr

    image = prepare(image)
    api = _api(languages)
    page = _read_best(api, image, tesserocr.RIL)
    if page.confidence < _DOUBTFUL and (turn := _upright_turn(image)):
        # A page scanned sideways or upside down: read it turned upright, boxes turned back.
        turned = _read_best(api, image.rotate(turn, expand=True), tesserocr.RIL)
        if turned.confidence > page.confidence:
            words = [(a, b, *_turn_back(turn, box)) for a, b, *box in turned.words]
            page = PageOcr(turned.text, words, turned.confidence)
    return page


def _read_best(api: Any, image: Image, ril: Any) -> PageOcr:
    """Tesseract's global (Otsu) threshold first; on a doubtful result, Sauvola's local threshold,
    which reads a photo lit unevenly (one side in shadow: Otsu turns it black and reads nothing).
    Not always: on even scans Sauvola was slower and no more accurate (an unrecorded trial)."""
    page = _recognize(api, image, ril)
    if page.confidence >= _DOUBTFUL:
        return page
    api.SetVariable("thresholding_method", "2")
    try:
        local = _recognize(api, image, ril)
    finally:
        api.SetVariable("thresholding_method", "0")
    return local if local.confidence > page.confidence else page


def _recognize(api: Any, image: Image, ril: Any) -> PageOcr:
    api.SetImage(image)
    try:
        api.Recognize()
        return _collect(api, image.width, image.height, ril)
    finally:
        api.Clear()


def _upright_turn(image: Image) -> int:
    """Degrees (counter-clockwise) that turn the page upright, by Tesseract's orientation
    detection (`osd` data, installed with tesseract-ocr); 0 when unsure or unavailable."""
    import tesserocr

    if "osd" not in available_languages():
        return 0
    if "osd" not in _apis:
        _apis["osd"] = tesserocr.PyTessBaseAPI(path=tessdata_dir(), lang="osd", psm=tesserocr.PSM.OSD_ONLY)
    api = _apis["osd"]
    api.SetImage(image)
    try:
        found = api.DetectOrientationScript() or {}
    except RuntimeError:  # too little text to tell
        return 0
    finally:
        api.Clear()
    turn = int(found.get("orient_deg", 0)) % 360
    return turn if turn in (90, 180, 270) and found.get("orient_conf", 0) > 2 else 0


def _turn_back(turn: int, box: list[float]) -> tuple[float, float, float, float]:
    """A box (fractions) on the page turned by `turn` degrees counter-clockwise, on the page as given."""
    x0, y0, x1, y1 = box
    if turn == 90:
        out = 1 - y1, x0, 1 - y0, x1
    elif turn == 270:
        out = y0, 1 - x1, y1, 1 - x0
    else:
        out = 1 - x1, 1 - y1, 1 - x0, 1 - y0
    return round(out[0], 5), round(out[1], 5), round(out[2], 5), round(out[3], 5)


def _collect(api: Any, width: int, height: int, ril: Any) -> PageOcr:
    """Text in reading order: words by spaces, lines by newlines, and a blank line where the gap
    above a line is about a line high or more (a paragraph); Tesseract's own blocks and paragraphs
    split a paragraph whose lines are indented differently, which would cut its sentences."""
    lines: list[list[tuple[str, float, tuple[int, int, int, int]]]] = []
    it = api.GetIterator()
    level = ril.WORD
    while it is not None:
        word = (it.GetUTF8Text(level) or "").strip()
        box = it.BoundingBox(level)
        if word and box is not None:
            if not lines or it.IsAtBeginningOf(ril.TEXTLINE):
                lines.append([])
            lines[-1].append((word, float(it.Confidence(level)), box))
        if not it.Next(level):
            break
    lines = [line for line in lines if line]
    heights = sorted(max(b[3] for _, _, b in line) - min(b[1] for _, _, b in line) for line in lines)
    typical = heights[len(heights) // 2] if heights else 0
    parts: list[str] = []
    words: list[tuple[int, int, float, float, float, float]] = []
    confidences: list[float] = []
    pos, bottom = 0, None
    for line in lines:
        top = min(b[1] for _, _, b in line)
        if bottom is not None:
            gap = "\n\n" if top - bottom > 0.9 * typical else "\n"
            parts.append(gap)
            pos += len(gap)
        bottom = max(b[3] for _, _, b in line)
        for n, (word, confidence, (x0, y0, x1, y1)) in enumerate(line):
            if n:
                parts.append(" ")
                pos += 1
            words.append((pos, pos + len(word), round(x0 / width, 5), round(y0 / height, 5),
                          round(x1 / width, 5), round(y1 / height, 5)))
            confidences.append(confidence)
            parts.append(word)
            pos += len(word)
    confidence = sum(confidences) / len(confidences) if confidences else 0.0
    return PageOcr("".join(parts), words, round(confidence, 1))


def try_ocr(image: Image, languages: str, page_no: int) -> tuple[PageOcr | None, str | None]:
    """OCR one page on its own: a page the engine cannot read gives (None, a warning naming it),
    so the others are kept. An engine that cannot start at all (no language data) raises
    LoadError and fails the whole file, as does memory exhaustion."""
    try:
        return ocr_image(image, languages), None
    except (LoadError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - one unreadable page must not cost the others
        return None, f"page {page_no}: OCR failed ({type(exc).__name__}: {one_line(exc, 120)})"
