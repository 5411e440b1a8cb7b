"""Document text on screen: always as text. Pure functions from text to the Markdown Streamlit
renders, with every character that Markdown or HTML would interpret escaped, so a document that
holds `<script>` or a Markdown image shows those characters and nothing more."""

from __future__ import annotations

import re
from collections.abc import Sequence

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
