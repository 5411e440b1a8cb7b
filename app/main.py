"""The staff UI: `ragqa ui` runs this file with Streamlit. A thin shell over rag/: pages
call the same functions as the command line."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

HERE = Path(__file__).parent

st.set_page_config(page_title="ragqa", page_icon=":material/library_books:", layout="wide")
navigation = st.navigation([
    st.Page(HERE / "pages" / "ask.py", title="Ask", icon=":material/chat:", default=True),
    st.Page(HERE / "pages" / "library.py", title="Library", icon=":material/folder:"),
    st.Page(HERE / "pages" / "status.py", title="Status", icon=":material/monitoring:"),
])
navigation.run()
