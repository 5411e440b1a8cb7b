"""Scans and photos of pages: read by OCR (Tesseract), answered and cited by page, the cited
words' boxes on the page; a broken image fails alone; `ragqa bench ocr` measures CER.

Every picture is made here: text drawn at 200 dpi, grey noise, a little blur and a slight rotation,
with each word's true position kept to check the boxes OCR reports."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from ingest.loaders import ReadOptions, load_file
from rag import schema as s
from tests.fixtures import make_pdf
from tests.helpers import Library, no_traceback, ragqa, run_ingest

pytestmark = pytest.mark.skipif(
    not __import__("ingest.ocr", fromlist=["tessdata_dir"]).tessdata_dir(),
    reason="Tesseract's English data is not installed (apt-get install tesseract-ocr-eng)")

DPI = 200
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"


def scan(lines: list[str], angle: float = 1.2, seed: int = 0, size_pt: int = 13) -> tuple[Any, list[tuple]]:
    """A noisy, slightly rotated A4 page at 200 dpi, and each word with its true box after the
    rotation: (word, x0, y0, x1, y1) in pixels (the rotated box's bounding rectangle)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    rng = np.random.default_rng(seed)
    w, h = int(8.27 * DPI), int(11.69 * DPI)
    px = int(size_pt * DPI / 72)
    font = ImageFont.truetype(FONT, px) if Path(FONT).exists() else ImageFont.load_default(px)
    page = Image.new("L", (w, h), 248)
    draw = ImageDraw.Draw(page)
    words: list[tuple] = []
    y = 200
    for line in lines:
        x = 170.0
        for word in line.split():
            draw.text((x, y), word, fill=30, font=font)
            words.append((word, *draw.textbbox((x, y), word, font=font)))
            x += font.getlength(word + " ")
        y += int(px * 1.6)
    page = page.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=248)
    page = page.filter(ImageFilter.GaussianBlur(0.6))
    noisy = np.asarray(page, dtype=np.float64) + rng.normal(0, 14, (h, w))
    page = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    t, cx, cy = math.radians(angle), w / 2, h / 2

    def moved(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + dx * math.cos(t) + dy * math.sin(t), cy - dx * math.sin(t) + dy * math.cos(t)

    boxes = []
    for word, x0, y0, x1, y1 in words:
        pts = [moved(x, y) for x in (x0, x1) for y in (y0, y1)]
        boxes.append((word, min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts),
                      max(p[1] for p in pts)))
    return page, boxes


NOTICE = ["Notice to all staff of the west building", "The annual parking permit for the west car park costs",
          "84 pounds and is issued by the facilities desk.", "Permits run from the first of April each year."]
CONTRACT_1 = ["Supply agreement between the council and Oakline Ltd", "This agreement covers office furniture."]
CONTRACT_2 = ["Delivery terms", "The supplier shall deliver forty chairs to the depot",
              "no later than the third of May."]


def scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    images = [scan(lines, angle=(-1) ** i * 0.8, seed=i)[0] for i, lines in enumerate(pages)]
    images[0].save(path, "PDF", resolution=DPI, save_all=True, append_images=images[1:])
    return path


def test_scanned_pdf_and_photo_are_answered_with_their_page(library: Library, cli_env: dict[str, str],
                                                            tmp_path: Path) -> None:
    photo, truth = scan(NOTICE, angle=1.4, seed=3)
    folder = library({"notice.png": lambda p: photo.save(p),
                      "contract.pdf": lambda p: scanned_pdf(p, [CONTRACT_1, CONTRACT_2]),
                      "canteen.md": "# Canteen\n\nThe canteen opens at eight and serves soup on Fridays."})
    assert library.summary is not None and library.summary.added == 3

    out = ragqa(cli_env, "ask", "How much does the annual parking permit cost?", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert "84 pounds" in answer["answer"]
    cited = [src for src in answer["sources"] if src["cited"]]
    assert cited[0]["path"] == str(folder / "notice.png") and cited[0]["pages"] == "1"
    quote = cited[0]["quotes"][0]
    assert quote["page"] == 1 and "84 pounds" in quote["text"]

    # The stored word boxes of the cited span lie on the words as drawn.
    with library.store.engine.connect() as c:
        row = c.execute(select(s.page_ocr).where(s.page_ocr.c.document_id == cited[0]["document_id"])).one()
        page_text = c.execute(select(s.pages.c.text).where(s.pages.c.document_id == cited[0]["document_id"])).scalar()
    assert row.page_no == 1 and row.confidence > 70
    w, h = photo.size
    cited_words = [wd for wd in row.words if wd[0] < quote["end"] and wd[1] > quote["start"]]
    assert len(cited_words) >= 5
    for start, end, x0, y0, x1, y1 in cited_words:
        text = page_text[start:end]
        cx, cy = (x0 + x1) / 2 * w, (y0 + y1) / 2 * h
        near = [b for b in truth if b[1] - 6 <= cx <= b[3] + 6 and b[2] - 6 <= cy <= b[4] + 6]
        assert near and near[0][0].strip(".,") == text.strip(".,"), (text, near)

    out = ragqa(cli_env, "ask", "When must the supplier deliver the chairs?", "--json")
    answer = json.loads(out.stdout)
    cited = [src for src in answer["sources"] if src["cited"]]
    assert "third of May" in answer["answer"]
    assert cited[0]["path"].endswith("contract.pdf") and cited[0]["quotes"][0]["page"] == 2


def test_the_source_view_marks_the_cited_lines_on_the_page(library: Library, cli_env: dict[str, str]) -> None:
    from app.render import highlight_boxes
    from ingest.page_view import cited_pages, ocr_summary

    photo, truth = scan(NOTICE, angle=-1.0, seed=5)
    library({"notice.png": lambda p: photo.save(p),
             "memo.pdf": ["Memo on travel\nThe mileage allowance for private cars is 42 pence per mile."]})
    for question, name in (("How much does the annual parking permit cost?", "notice.png"),
                           ("What is the mileage allowance for private cars?", "memo.pdf")):
        answer = json.loads(ragqa(cli_env, "ask", question, "--json").stdout)
        source = next(src for src in answer["sources"] if src["cited"])
        assert source["path"].endswith(name)
        pages = cited_pages(library.store.engine, source)
        assert len(pages) == 1 and pages[0].page_no == 1 and pages[0].boxes
        marked = highlight_boxes(pages[0].image, pages[0].boxes)
        assert marked.size == pages[0].image.size
        assert (pages[0].ocr_confidence is not None) == (name == "notice.png")
    line = [b for b in truth if b[0] in ("84", "pounds", "issued")]  # the cited line of the photo
    box = cited_pages(library.store.engine, next(
        src for src in json.loads(ragqa(cli_env, "ask", "How much does the annual parking permit cost?",
                                        "--json").stdout)["sources"] if src["cited"]))[0].boxes
    w, h = photo.size
    assert any(bx[0] * w - 8 <= b[1] and b[3] <= bx[2] * w + 8 and bx[1] * h - 8 <= (b[2] + b[4]) / 2 <= bx[3] * h + 8
               for b in line for bx in box)
    docs = {d.path.rsplit("/", 1)[-1]: d.id for d in library.store.documents(None)}
    summary = ocr_summary(library.store.engine, list(docs.values()))
    assert set(summary) == {docs["notice.png"]} and summary[docs["notice.png"]][0] == 1


def test_a_broken_image_fails_alone_with_a_reason(tmp_path: Path, cli_env: dict[str, str]) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    photo, _ = scan(NOTICE, seed=1)
    photo.save(folder / "notice.png")
    data = (folder / "notice.png").read_bytes()
    (folder / "torn.png").write_bytes(data[: len(data) // 3])
    (folder / "fake.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG at all")
    (folder / "memo.txt").write_text("The office closes at six on Fridays.")
    out = ragqa(cli_env, "ingest", str(folder), "--json")
    no_traceback(out)
    summary = json.loads(out.stdout)
    assert summary["added"] == 2
    failed = {Path(f["path"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {"torn.png", "fake.jpg"}
    assert all(e.startswith("not a readable image") and "\n" not in e for e in failed.values()), failed
    answer = json.loads(ragqa(cli_env, "ask", "How much does the annual parking permit cost?", "--json").stdout)
    assert "84 pounds" in answer["answer"]


def test_a_scanned_page_inside_a_text_pdf_and_a_multipage_tiff(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    text_pdf = make_pdf(tmp_path / "text.pdf", ["Annual report\nRevenue rose by four percent this year."])
    scanned = scanned_pdf(tmp_path / "scanned.pdf", [CONTRACT_2])
    writer = PdfWriter()
    for part in (text_pdf, scanned):
        for page in PdfReader(part).pages:
            writer.add_page(page)
    mixed = tmp_path / "mixed.pdf"
    with open(mixed, "wb") as fh:
        writer.write(fh)
    loaded = load_file(mixed, "pdf", [])
    assert "Revenue rose" in loaded.pages[0] and "deliver forty chairs" in loaded.pages[1]
    assert set(loaded.ocr) == {2}  # only the page without a text layer went through OCR

    frames = [scan(CONTRACT_1, seed=7)[0], scan(CONTRACT_2, seed=8)[0]]
    tiff = tmp_path / "fax.tiff"
    frames[0].save(tiff, save_all=True, append_images=frames[1:], compression="tiff_lzw")
    loaded = load_file(tiff, "image", [])
    assert len(loaded.pages) == 2 and loaded.paginated and set(loaded.ocr) == {1, 2}
    assert "Oakline" in loaded.pages[0] and "third of May" in loaded.pages[1]

    buf = io.BytesIO()
    frames[0].convert("RGB").save(buf, "JPEG", quality=70)
    (tmp_path / "photo.jpg").write_bytes(buf.getvalue())
    assert "office furniture" in load_file(tmp_path / "photo.jpg", "image", []).pages[0]


def test_ocr_off_skips_images_and_names_scans(tmp_path: Path, settings: Any, store: Any, embedder: Any) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    scan(NOTICE)[0].save(folder / "notice.png")
    scanned_pdf(folder / "contract.pdf", [CONTRACT_1])
    off = settings.model_copy(update={"ocr": "off"})
    summary = run_ingest([folder], store, off, embedder)
    assert summary.skipped_by_type == [{"type": ".png", "count": 1, "reason": "images need OCR: RAGQA_OCR is off"}]
    assert [f["error"] for f in summary.failed] == ["no extractable text (a scanned PDF needs OCR: RAGQA_OCR is off)"]
    with pytest.raises(Exception, match="RAGQA_OCR is off"):
        load_file(folder / "notice.png", "image", [], ReadOptions(ocr=False))


def test_missing_language_data_is_one_line(tmp_path: Path) -> None:
    scan(NOTICE)[0].save(tmp_path / "n.png")
    with pytest.raises(Exception, match="OCR language data missing for xxx"):
        load_file(tmp_path / "n.png", "image", [], ReadOptions(ocr_languages="xxx"))


def test_bench_ocr_reports_cer_and_pages_per_minute(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = ragqa(cli_env, "bench", "ocr", str(tmp_path / "set"), "--generate", "3", "--json")
    no_traceback(out)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["generated"]["pages"] == 3 and len(list((tmp_path / "set").glob("*.png"))) == 3
    tess = result["engines"]["tesseract"]
    assert tess["pages"] == 3 and tess["cer"] <= 0.03 and tess["pages_per_minute"] > 0
    missing = ragqa(cli_env, "bench", "ocr", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "--generate" in missing.stderr


def test_a_page_scanned_upside_down_is_read_with_boxes_on_the_page_as_given(tmp_path: Path) -> None:
    page, truth = scan(NOTICE, angle=0.8, seed=11)
    page.rotate(180).save(tmp_path / "upside.png")  # the same size: a word at (x, y) is now at (w - x, h - y)
    loaded = load_file(tmp_path / "upside.png", "image", [])
    assert "84 pounds and is issued by the facilities desk." in loaded.pages[0]
    w, h = page.size
    ocr = loaded.ocr[1]
    start = loaded.pages[0].index("facilities")
    x0, y0, x1, y1 = next(wd[2:] for wd in ocr.words if wd[0] == start)
    word = next(b for b in truth if b[0] == "facilities")
    assert abs((1 - (x0 + x1) / 2) * w - (word[1] + word[3]) / 2) < 10
    assert abs((1 - (y0 + y1) / 2) * h - (word[2] + word[4]) / 2) < 10


def test_uploads_of_scans_are_typed_by_their_content(tmp_path: Path) -> None:
    from ingest.uploads import save_upload, sniff
    from rag.errors import LoadError

    buf = io.BytesIO()
    scan(NOTICE)[0].save(buf, "PNG")
    png = buf.getvalue()
    assert sniff(png) == "image" and sniff(b"BMW fleet report: all cars serviced") == "text"
    assert save_upload(tmp_path, "notice.png", png, 50 * 2**20).name == "notice.png"
    with pytest.raises(LoadError, match="notice.txt: the content is an image"):
        save_upload(tmp_path, "notice.txt", png, 50 * 2**20)
    with pytest.raises(LoadError, match="photo.jpg: the content is text"):
        save_upload(tmp_path, "photo.jpg", b"just words", 50 * 2**20)


def test_a_colour_photo_in_uneven_light_is_read(tmp_path: Path) -> None:
    from PIL import Image

    page, _ = scan(NOTICE, angle=2.5, seed=3)
    grey = np.asarray(page, dtype=np.float64)
    h, w = grey.shape
    light = np.linspace(0.45, 1.0, w)[None, :] * np.linspace(0.7, 1.0, h)[:, None]  # shadow on the left
    photo = np.stack([grey * light * 0.95, grey * light * 0.9, grey * light * 0.75], -1)
    Image.fromarray(photo.clip(0, 255).astype(np.uint8)).save(tmp_path / "photo.jpg", quality=85)
    loaded = load_file(tmp_path / "photo.jpg", "image", [])
    assert "annual parking permit for the west car park costs" in loaded.pages[0]
    assert loaded.ocr[1].confidence > 80
