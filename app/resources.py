"""The UI's shared, read-only parts, built once per server process from settings
(`st.cache_resource`), and the one place where project errors become `st.error`.

The app does not choose its parts: the composition root (`ragqa.wiring`) is handed to `install`
by the Streamlit entry script that `ragqa ui` runs (`ragqa/ui_app.py`), so the app depends only
on what is below it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import streamlit as st

from llm.errors import LlmError
from rag.errors import ConfigError, RagqaError


class Parts(Protocol):
    """What the app needs from the composition root (the functions of `ragqa.wiring`)."""

    def offline(self) -> None: ...
    def open_store(self, settings: Any) -> Any: ...
    def embedding_ref(self, settings: Any) -> Any: ...
    def retriever(self, settings: Any, store: Any = None) -> Any: ...
    def generator(self, settings: Any, retriever: Any = None) -> Any: ...
    def answerer(self, settings: Any, retriever_: Any = None, generator_: Any = None) -> Any: ...


_parts: Parts | None = None


def install(parts: Parts) -> None:
    """Hand the app its composition root; the entry script calls this before every run."""
    global _parts
    _parts = parts


def parts() -> Parts:
    if _parts is None:
        raise ConfigError("the UI was started without its parts: start it with `ragqa ui`")
    return _parts


@st.cache_resource
def settings() -> Any:
    from rag.settings import load_settings

    parts().offline()
    return load_settings()


@st.cache_resource
def store() -> Any:
    return parts().open_store(settings())


@st.cache_resource
def retriever() -> Any:
    return parts().retriever(settings(), store())


@st.cache_resource
def generator() -> Any:
    return parts().generator(settings(), retriever())


def answerer() -> Any:
    return parts().answerer(settings(), retriever(), generator())


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
