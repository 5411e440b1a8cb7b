"""The staff UI: a thin shell over rag/ whose pages call the same functions as the command line.
`ragqa ui` runs `ragqa/ui_app.py` with Streamlit, which installs the parts and calls `run`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import auth, resources

HERE = Path(__file__).parent


def run() -> None:
    """One run of the app (Streamlit re-runs the entry script on every interaction)."""
    st.set_page_config(page_title="ragqa", page_icon=":material/library_books:", layout="wide")

    with resources.shown_errors():
        who = auth.signed_in()
    st.session_state["_who"] = who
    pages = [st.Page(HERE / "pages" / "ask.py", title="Ask", icon=":material/chat:", default=True)]
    if who.role in ("admin", "editor"):  # readers ask; editors and admins manage documents
        pages.append(st.Page(HERE / "pages" / "library.py", title="Library", icon=":material/folder:"))
    pages.append(st.Page(HERE / "pages" / "status.py", title="Status", icon=":material/monitoring:"))
    navigation = st.navigation(pages)
    auth.sidebar_identity(who)
    navigation.run()
