"""The Streamlit pages with AppTest: each page runs against a real store in the test's folder."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from rag.consistency import check_store
from rag.conversations import Conversations
from tests.helpers import Library, run_ingest

MAIN = str(Path(__file__).parents[1] / "ragqa" / "ui_app.py")
PAGES = Path(__file__).parents[1] / "app" / "pages"


@pytest.fixture
def ui(monkeypatch: pytest.MonkeyPatch, library: Library, settings, store):
    """A library of two documents, one of which carries HTML; the UI reads the same settings."""
    library({"leave.md": "# Leave\n\nStaff get 27 days of annual leave, plus public holidays.\n\n"
                         "Unused leave of up to five days carries over to the next year.",
             "evil.html": "<html><head><title>Canteen</title></head><body><article><h1>Canteen</h1>"
                          "<p>The canteen opens at eight. &lt;script&gt;alert('x')&lt;/script&gt; "
                          "<b>Soup</b> on Fridays is served from noon until the canteen closes.</p>"
                          "</article></body></html>"}, collection="hr")
    for key, value in {"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": settings.database_url,
                       "RAGQA_GENERATOR": "fake", "RAGQA_CHUNK_TOKENS": "64", "RAGQA_CHUNK_OVERLAP": "8"}.items():
        monkeypatch.setenv(key, value)
    st.cache_resource.clear()
    yield store
    st.cache_resource.clear()


def started(page: str | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def test_ask_streams_an_answer_with_sources_reasoning_and_feedback(ui) -> None:
    at = started()
    at.chat_input[0].set_value("How many days of annual leave do staff get?").run()
    assert not at.exception and not at.error
    chats = Conversations(ui.engine)
    [conv] = chats.recent()
    user, answer = chats.messages(conv.id)
    assert user.content == "How many days of annual leave do staff get?"
    assert answer.answer is not None and answer.answer["backend"] == "fake" and answer.content.endswith("[1]")
    assert answer.answer["sources"][0]["title"] == "Leave" and answer.answer["sources"][0]["cited"]
    labels = [e.label for e in at.expander]
    assert "Reasoning" in labels and any(label.startswith("[1] Leave") for label in labels)
    assert not next(e for e in at.expander if e.label == "Reasoning").proto.expanded  # closed by default
    assert [c.label for c in at.sidebar.button][1:] == [conv.title]  # listed in the sidebar
    feedback: Any = at.get("feedback")[0]  # a Feedback widget (get() is typed for any node)
    feedback.set_value(0).run()  # thumbs down
    at.text_input(key=f"fbc_{answer.id}").input("out of date").run()
    at.button(key=f"fbs_{answer.id}").click().run()
    assert [(f["rating"], f["comment"]) for f in chats.feedback()] == [(-1, "out of date")]


def test_a_new_chat_starts_clean(ui) -> None:
    at = started()
    at.chat_input[0].set_value("When does the canteen open?").run()
    assert len(at.chat_message) == 2
    at.sidebar.button[0].click().run()  # New chat
    assert len(at.chat_message) == 0 and at.session_state.conversation is None


def test_document_html_is_shown_as_text(ui) -> None:
    at = started()
    at.chat_input[0].set_value("When is soup served in the canteen?").run()
    shown = " ".join(m.value for m in at.markdown)
    assert "\\<script\\>" in shown  # the passage, as text
    assert not re.search(r"(?<!\\)<", shown)  # no "<" that Markdown could take for HTML, answer included
    assert not any(m.allow_html for m in at.markdown)


def test_collection_filter_limits_the_sources(ui) -> None:
    at = started()
    assert at.sidebar.multiselect[0].options == ["hr"]
    at.sidebar.multiselect[0].set_value(["hr"]).run()
    at.chat_input[0].set_value("leave").run()
    assert not at.exception and len(at.chat_message) == 2


def test_library_lists_filters_and_deletes_documents(ui) -> None:
    at = started("../app/pages/library.py")
    table = at.dataframe[0].value
    assert sorted(table["title"]) == ["Canteen", "Leave"]
    at.text_input[1].input("canteen").run()
    assert list(at.dataframe[0].value["title"]) == ["Canteen"]
    doc_id = int(at.dataframe[0].value["id"][0])
    at.multiselect[0].set_value([doc_id]).run()
    at.button(key="delete").click().run()
    assert [d.title for d in ui.documents()] == ["Leave"]
    assert check_store(ui).ok


def test_an_upload_names_what_it_skipped_and_why(ui) -> None:
    at = started("../app/pages/library.py")
    at.file_uploader[0].set_value([("travel.md", b"# Travel\n\nTrains are booked by the office.", "text/markdown"),
                                   ("scan.heic", b"\x00\x00\x00\x18ftypheic", "image/heic"),
                                   ("deck.pptx", b"PK\x03\x04....", "application/octet-stream")])
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert [w.value for w in at.warning] == ["Skipped 2: 1 .heic (image format not read: save it as PNG, "
                                             "JPEG or TIFF), 1 .pptx (not a supported type)."]
    assert any(m.value.startswith("Added 1,") for m in at.success)
    assert "Travel" in [d.title for d in ui.documents()]


def test_library_shows_failures_with_their_reasons(ui, tmp_path, settings, embedder) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    run_ingest([bad], ui, settings, embedder)
    at = started("../app/pages/library.py")
    assert any(e.label == "1 failed" for e in at.expander)
    shown = [m.value.replace("\\", "") for m in at.markdown]
    assert any(line.startswith("- broken.pdf: ") and len(line) > 20 for line in shown), shown


def test_status_reports_the_library_and_the_generator(ui) -> None:
    at = started("../app/pages/status.py")
    assert [m.value for m in at.metric][:2] == ["2", str(ui.counts()["chunks"])]
    assert any("The generator answers" in s.value for s in at.success)
    assert len(at.dataframe) == 1  # the ingest run


def test_status_says_when_the_generator_cannot_answer(ui, monkeypatch) -> None:
    monkeypatch.setenv("RAGQA_GENERATOR", "openai")
    monkeypatch.setenv("RAGQA_OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    at = started("../app/pages/status.py")
    assert any("cannot reach the generator server" in e.value for e in at.error)


def test_a_bad_setting_is_one_red_line(ui, monkeypatch) -> None:
    monkeypatch.setenv("RAGQA_CHUNK_OVERLAP", "999")
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.run()
    assert not at.exception and at.error[0].value.startswith("invalid setting")


def test_sign_in_is_required_once_accounts_exist_and_readers_see_only_theirs(ui) -> None:
    from rag.access import Accounts
    from rag.audit import entries

    accounts = Accounts(ui.engine)
    accounts.add("sam", "reader", ("sales",), "long enough pw")
    at = started()
    assert at.title[0].value == "Sign in to ragqa" and not at.chat_input
    at.text_input[0].input("sam")
    at.text_input[1].input("wrong password")
    at.button[0].click().run()
    assert at.error[0].value == "Wrong name or password."
    at.text_input[1].input("long enough pw")
    at.button[0].click().run()
    assert at.title[0].value == "Ask the library"
    assert at.sidebar.multiselect[0].options == ["hr"]  # open collection: no groups listed
    accounts.grant("hr", "hr-staff")
    at.run()
    assert at.sidebar.multiselect[0].options == []
    at.chat_input[0].set_value("How many days of annual leave do staff get?").run()
    chats = Conversations(ui.engine)
    [conv] = chats.recent(user="sam")
    shown = chats.messages(conv.id)[1].answer
    assert shown is not None and shown["sources"] == []  # nothing readable, nothing shown
    assert chats.recent(user="local") == []
    assert [e["action"] for e in entries(ui.engine, user="sam")] == ["login", "ask"]
    at.switch_page("../app/pages/status.py").run()
    assert [m.value for m in at.metric] == ["0", "0", "0", "0"]  # not even counts of closed collections


def test_readers_cannot_reach_the_library_page(ui) -> None:
    from rag.access import Accounts

    Accounts(ui.engine).add("sam", "reader", (), "long enough pw")
    at = started()
    at.text_input[0].input("sam")
    at.text_input[1].input("long enough pw")
    at.button[0].click().run()
    with pytest.raises(ValueError, match="Known pages"):  # not in this reader's navigation
        at.switch_page("../app/pages/library.py")
    page = AppTest.from_file(str(PAGES / "library.py"), default_timeout=60)
    page.session_state["_who"] = Accounts(ui.engine).get("sam")
    page.run()  # reached directly, the page refuses too
    assert page.error and "Only editors and admins" in page.error[0].value and not page.dataframe


def test_with_an_identity_provider_configured_staff_sign_in_through_it(ui) -> None:
    at = AppTest.from_file(MAIN, default_timeout=60)
    at.secrets["auth"] = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "s" * 32,
                          "client_id": "ragqa", "client_secret": "x",
                          "server_metadata_url": "https://idp.example.org/.well-known/openid-configuration"}
    at.run()
    assert not at.exception and [b.label for b in at.button] == ["Sign in"] and not at.chat_input
