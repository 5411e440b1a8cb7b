"""A document's title: the one rule every reader uses (pure functions).

A file's metadata title is often not a title at all: the name of the program or file that made it
("10811.exe", "Microsoft Word - memo.doc"), a placeholder ("Untitled", "Document1") or a number.
Such a title gives way to the document's first heading or first line, and that to the file name,
so that sources and the Library show something a person recognises.
"""

from __future__ import annotations

import re

MAX_TITLE = 300
MAX_HEADING = 120

#: Extensions of documents, images and programs: a "title" ending in one is a file name.
_FILE_EXTENSIONS = (
    "exe|dll|bat|com|doc|docx|docm|dot|dotx|rtf|odt|ott|wpd|wps|pages|pdf|ps|eps|dvi|tex|txt|md|htm|html|xml|"
    "ppt|pptx|pps|ppsx|odp|key|xls|xlsx|xlsm|ods|csv|indd|qxd|qxp|pmd|p65|fm|tmp|msg|eml|png|jpe?g|gif|tiff?|bmp"
)
_FILE_NAME = re.compile(rf"\.({_FILE_EXTENSIONS})$", re.I)
_PATH = re.compile(r"^([A-Za-z]:)?[\\/]|[\\/].*[\\/]")
_PROGRAM_PREFIX = re.compile(r"^(microsoft\s+(word|powerpoint|excel|office\s+\w+)|adobe\s+\w+|untitled)\b", re.I)
_PLACEHOLDER = re.compile(
    r"^(untitled|no\s+title|title|none|null|unknown|default|anonymous|\(anonymous\)|draft|"
    r"(new\s+)?(document|presentation|book|workbook|doc|slide|page)\s*\d*)$", re.I)
_MARKDOWN_HEADING = re.compile(r"^#{1,6}\s+")


def is_real_title(text: str) -> bool:
    """False for what is not a title: empty, a file name or path, a program's label, a
    placeholder, or something without two letters (a number, a date, punctuation)."""
    t = " ".join(text.split())
    if sum(ch.isalpha() for ch in t) < 2:
        return False
    return not (_FILE_NAME.search(t) or _PATH.search(t) or _PROGRAM_PREFIX.match(t) or _PLACEHOLDER.match(t))


def first_line(text: str) -> str:
    """The first line of `text` that could be a heading, Markdown's `#` marks taken off."""
    for line in text.splitlines():
        line = _MARKDOWN_HEADING.sub("", line.strip()).strip(" #")
        if is_real_title(line):
            return line[:MAX_HEADING]
    return ""


def choose_title(metadata: str | None, heading: str, file_name: str) -> str:
    """The metadata title when it is one, else the document's first heading or line (`heading`,
    as the reader found it), else the file name without its extension."""
    for candidate in (metadata or "", heading):
        candidate = " ".join(candidate.split())
        if is_real_title(candidate):
            return candidate[:MAX_TITLE]
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.strip(".") else file_name
    return (stem or file_name)[:MAX_TITLE]
