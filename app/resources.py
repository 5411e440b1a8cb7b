"""The UI's shared, read-only parts, built once per server process from settings
(`st.cache_resource`), and the one place where project errors become `st.error`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import streamlit as st

from llm.errors import LlmError
from rag.errors import RagqaError


@st.cache_resource
def settings() -> Any:
    from rag.settings import load_settings
    from ragqa import wiring

    wiring.offline()
    return load_settings()


@st.cache_resource
def store() -> Any:
    from ragqa import wiring

    return wiring.open_store(settings())


@st.cache_resource
def retriever() -> Any:
    from ragqa import wiring

    return wiring.retriever(settings(), store())


@st.cache_resource
def generator() -> Any:
    from ragqa import wiring

    return wiring.generator(settings(), retriever())


def answerer() -> Any:
    from ragqa import wiring

    return wiring.answerer(settings(), retriever(), generator())


@st.cache_resource
def conversations() -> Any:
    from rag.conversations import Conversations

    return Conversations(store().engine)


@contextlib.contextmanager
def shown_errors() -> Iterator[None]:
    """A project error becomes one red line and stops the page; nothing else is caught here
    (Streamlit shows a bug as a bug)."""
    try:
        yield
    except (RagqaError, LlmError) as exc:
        st.error(str(exc))
        st.stop()
