"""Document text on screen: always as text. Pure functions from text to the Markdown Streamlit
renders, with every character that Markdown or HTML would interpret escaped, so a document that
holds `<script>` or a Markdown image shows those characters and nothing more; and cited lines
marked on a page image (`highlight_boxes`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

# Every ASCII punctuation character may be backslash-escaped in CommonMark; escaping all of them
# leaves no syntax in the text at all (emphasis, links, images, HTML, tables, math, directives).
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")


def escape_markdown(text: str) -> str:
    escaped = _PUNCT.sub(r"\\\1", text.replace("\f", ""))
    # Markdown joins single newlines into one paragraph; keep the document's line breaks.
    return re.sub(r"\n(?!\n)", "  \n", escaped)


def highlighted(text: str, spans: Sequence[tuple[int, int]], colour: str = "orange") -> str:
    """`text` escaped, with the given character spans marked (Streamlit's background colour)."""
    out, pos = [], 0
    for a, b in sorted(spans):
        a, b = max(a, pos), min(b, len(text))
        if a >= b:
            continue
        out.append(escape_markdown(text[pos:a]))
        # A highlight cannot span paragraphs in Markdown: mark each line on its own.
        out.append("\n".join(f":{colour}-background[{escape_markdown(line)}]" if line.strip() else line
                             for line in text[a:b].split("\n")))
        pos = b
    out.append(escape_markdown(text[pos:]))
    return "".join(out)


def model_answer(text: str) -> str:
    """A language model's answer keeps its Markdown (lists, emphasis) but cannot pull anything in:
    raw HTML and images are shown as text (an image would fetch a URL a document planted)."""
    return text.replace("<", "\\<").replace("![", "!\\[")


def highlight_boxes(image: Any, boxes: Sequence[tuple[float, float, float, float]],
                    colour: tuple[int, int, int] = (255, 165, 0)) -> Any:
    """A copy of a page image (PIL) with each box (fractions of the page: x0, y0, x1, y1) shaded
    in translucent `colour` and outlined, as a highlighter marks cited lines on paper."""
    from PIL import Image, ImageDraw

    page = image.convert("RGBA")
    layer = Image.new("RGBA", page.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w, h = page.size
    pad = max(2, w // 300)
    for x0, y0, x1, y1 in boxes:
        rect = (int(x0 * w) - pad, int(y0 * h) - pad, int(x1 * w) + pad, int(y1 * h) + pad)
        draw.rectangle(rect, fill=(*colour, 90), outline=(*colour, 255), width=max(1, pad // 2))
    return Image.alpha_composite(page, layer).convert("RGB")


def steps_label(steps: Sequence[object]) -> str:
    """The closed box's label over an answer's tool steps."""
    n = len(steps)
    return f"Searched the library: {n} step{'s' if n != 1 else ''}"


def step_markdown(step: dict[str, object]) -> str:
    """One tool step ("searched for ...", "opened ...", "found ...") as escaped Markdown."""
    summary = escape_markdown(str(step.get("summary", "")))
    return f":red[{summary}]" if step.get("error") else summary
