"""Ask: a chat over the library. Answers stream; each shows its sources with the cited span
highlighted, the reasoning in a closed box, and thumbs up/down with a comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app import auth, render, resources
from rag.answer import REASONING_LEVELS, Collected
from rag.retrieval import Scope


def sidebar(cfg: Any, who: Any, readable: tuple[str, ...] | None) -> tuple[tuple[str, ...], str]:
    chats = resources.conversations()
    with st.sidebar:
        if st.button("New chat", icon=":material/add:", width="stretch"):
            st.session_state.conversation = None
            st.rerun()
        collections = [c for c in resources.store().collections() if readable is None or c in readable]
        chosen = st.multiselect("Collections", collections, placeholder="All collections", key="collections")
        levels = list(REASONING_LEVELS)
        level = st.selectbox("Reasoning", levels, index=levels.index(cfg.reasoning), key="reasoning",
                             help="How long the model thinks before answering (ignored by the extractive backend).")
        st.caption("Conversations")
        for c in chats.recent(user=who.name):
            current = st.session_state.get("conversation") == c.id
            if st.button(c.title, key=f"conv_{c.id}", width="stretch",
                         type="primary" if current else "secondary"):
                st.session_state.conversation = c.id
                st.rerun()
    return tuple(chosen), level


def show_sources(answer: dict[str, Any], message_id: int) -> None:
    sources = answer.get("sources", [])
    cited = [s for s in sources if s["cited"]]
    if answer.get("extractive"):
        st.caption("Extractive answer: sentences quoted from the sources, no language model.")
    for s in cited or sources:
        label = f"[{s['number']}] {s['title']}, p. {s['pages']}"
        with st.expander(label, expanded=False):
            spans = [(q["passage_start"], q["passage_end"]) for q in s["quotes"]]
            st.markdown(render.highlighted(s["text"], spans))
            for q in s["quotes"]:
                st.caption(f"Cited: page {q['page']}, characters {q['start']}–{q['end']}"
                           + ("" if q["verbatim"] else " (closest sentence)"))
            page_pictures(s)
            original(s, key=f"dl_{message_id}_{s['number']}")
    for d in answer.get("dropped", []):
        st.caption(f"Left out: {d}")
    for p in answer.get("problems", []):
        st.warning(f"Citation check: {p}")


def page_pictures(source: dict[str, Any]) -> None:
    """The cited page as it looks (a PDF page or a scan), the cited lines highlighted on it."""
    from ingest.page_view import cited_pages

    for page in cited_pages(resources.store().engine, source):
        read = "" if page.ocr_confidence is None else f"; text read by OCR, confidence {page.ocr_confidence:.0f}%"
        st.image(render.highlight_boxes(page.image, page.boxes),
                 caption=f"Page {page.page_no}, cited lines highlighted{read}")


def original(source: dict[str, Any], key: str) -> None:
    path = Path(source["path"])
    if path.is_file() and path.stat().st_size <= 50 * 2**20:
        st.download_button("Download the original", path.read_bytes(), file_name=path.name, key=key,
                           icon=":material/download:")
    else:
        st.caption(f"Original: {source['path']}")


def feedback(message_id: int, rating: int | None) -> None:
    chats = resources.conversations()
    if rating is not None:
        st.caption("Thanks for the feedback." if rating > 0 else "Thanks: we will look at this answer.")
        return
    choice = st.feedback("thumbs", key=f"fb_{message_id}")
    if choice is not None:
        comment = st.text_input("Comment (optional)", key=f"fbc_{message_id}")
        if st.button("Send feedback", key=f"fbs_{message_id}"):
            chats.rate(message_id, 1 if choice == 1 else -1, comment)
            st.rerun()


def show_steps(steps: list[dict[str, Any]]) -> None:
    """The model's tool steps in a closed box above its answer."""
    if steps:
        with st.status(render.steps_label(steps), state="complete", expanded=False):
            for step in steps:
                st.markdown(render.step_markdown(step))


def stream_answer(answerer: Any, draft: Any, collected: Collected) -> None:
    """The answer as it streams; with tools, each step shown in a status box as it happens, the box
    closed once the answer starts. Reasoning is only ever a 'Reasoning…' caption."""
    from rag.tools import Step

    box = st.status("Searching the library…", expanded=True) if draft.prompt.tools else None

    def close_box() -> None:
        if box is not None:
            box.update(label=render.steps_label(collected.steps), state="complete", expanded=False)

    thinking, shown, text = st.empty(), st.empty(), ""
    for piece in answerer.stream(draft, collected):
        if isinstance(piece, Step):
            if box is not None:
                box.markdown(render.step_markdown(piece.as_json()))
            text = ""  # text before a call was a preamble to it, not the answer
            shown.empty()
        elif piece.channel == "final":
            if text == "":
                close_box()
            text += piece.text
            shown.markdown(render.escape_markdown(text) if answerer.generator.extractive else render.model_answer(text))
        else:
            thinking.caption("Reasoning…")
    thinking.empty()
    close_box()


def show_history(conversation_id: int) -> None:
    for m in resources.conversations().messages(conversation_id):
        with st.chat_message(m.role):
            if m.role == "user":
                st.markdown(render.escape_markdown(m.content))
                continue
            answer = m.answer or {}
            extractive = answer.get("extractive", False)
            st.markdown(render.escape_markdown(m.content) if extractive else render.model_answer(m.content))
            searched = answer.get("searched_for")
            if searched and searched != answer.get("question"):
                st.caption(render.escape_markdown(f"searched for: {searched}"))
            show_steps(answer.get("steps") or [])
            for note in answer.get("notes") or []:
                st.info(render.escape_markdown(note))
            if answer.get("reasoning"):
                with st.expander("Reasoning", expanded=False):
                    st.markdown(render.escape_markdown(answer["reasoning"]))
            show_sources(answer, m.id)
            feedback(m.id, m.rating)


def answer_now(question: str, scope: Scope, level: str, who: Any) -> None:
    from rag.audit import answer_detail, record
    from rag.conversations import exchanges

    chats = resources.conversations()
    if st.session_state.get("conversation") is None:
        st.session_state.conversation = chats.start(question, who.name)
    conversation = st.session_state.conversation
    # The conversation shown is the context of the question: its earlier questions and answers.
    history = exchanges(chats.messages(conversation)) if chats.owner(conversation) == who.name else []
    chats.add(conversation, "user", question)
    with st.chat_message("user"):
        st.markdown(render.escape_markdown(question))
    with st.chat_message("assistant"), resources.shown_errors():
        answerer = resources.answerer()
        with st.spinner("Searching the library…"):
            draft = answerer.prepare(question, history=history, scope=scope, reasoning=level)
        if draft.search_query != draft.question:
            st.caption(render.escape_markdown(f"searched for: {draft.search_query}"))
        collected = Collected()
        stream_answer(answerer, draft, collected)
        answer = answerer.finish(draft, collected)
    chats.add(conversation, "assistant", answer.text, answer.as_json())
    record(resources.store().engine, who.name, "ask", **answer_detail(answer))
    st.rerun()


def page() -> None:
    cfg = resources.settings()
    who = auth.current()
    readable = auth.readable(who)
    st.title("Ask the library")
    collections, level = sidebar(cfg, who, readable)
    conversation = st.session_state.get("conversation")
    if conversation is not None and resources.conversations().owner(conversation) == who.name:
        show_history(conversation)
    elif resources.store().counts()["ready"] == 0:
        st.info("The library is empty: add documents on the Library page.")
    question = st.chat_input("Ask a question about your documents")
    if question and question.strip():
        answer_now(question.strip(), Scope(collections, readable=readable), level, who)


with resources.shown_errors():
    page()
