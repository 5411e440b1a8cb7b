"""Library: upload files (the same pipeline as `ragqa ingest`), list, filter and delete documents,
and see which files failed and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app import auth, render, resources
from rag.errors import RagqaError
from rag.writer import open_writer


class UploadProgress:
    """The pipeline's progress callbacks drawn as a Streamlit progress bar."""

    def __init__(self, files: int) -> None:
        self._bar = st.progress(0.0, text="Reading files…")
        self._total = max(files, 1)
        self._done = 0
        self._chunks = 0

    def start(self, files: int) -> None:
        self._total = max(files, 1)

    def file_done(self, path: str, outcome: str) -> None:
        self._done += 1
        self._draw()

    def chunks_embedded(self, n: int) -> None:
        self._chunks += n
        self._draw()

    def message(self, text: str) -> None:
        pass

    def _draw(self) -> None:
        self._bar.progress(min(self._done / self._total, 1.0),
                           text=f"{self._done} of {self._total} files, {self._chunks} chunks embedded")


def upload_section(cfg: Any) -> None:
    from ingest.discover import Skipped, describe_skipped, group_skipped
    from ingest.formats import skip_reason
    from ingest.uploads import ingest_uploads, save_upload

    st.subheader("Add documents")
    with st.form("upload", clear_on_submit=True):
        # Any type is accepted here so that what cannot be read is named with its reason, as
        # `ragqa ingest` names it, instead of being greyed out by the browser.
        files = st.file_uploader("PDF, text, Markdown, HTML, DOCX, spreadsheets (CSV, XLSX) or scans "
                                 "(PNG, JPEG, TIFF)", accept_multiple_files=True)
        collection = st.text_input("Collection", value="default")
        submitted = st.form_submit_button("Add to the library", icon=":material/upload:")
    if not (submitted and files):
        return
    who = auth.current()
    collection = collection.strip() or "default"
    auth.accounts().require_write(who, collection)
    limit = int(cfg.max_file_mb * 2**20)
    paths, refused, skipped = [], [], []
    for f in files:
        reason = skip_reason(Path(f.name), ocr=cfg.ocr != "off")
        if reason is not None:
            skipped.append(Skipped(Path(f.name), reason))
            continue
        try:
            paths.append(save_upload(cfg.home / "uploads", f.name, f.getvalue(), limit))
        except RagqaError as exc:
            refused.append(str(exc))
    summary = None
    if paths:
        summary = ingest_uploads(paths, resources.store(), cfg, resources.parts().embedding_ref(cfg), user=who.name,
                                 collection=collection, files=[f.name for f in files],
                                 load_embedder=lambda: resources.retriever().embedder(),
                                 progress=UploadProgress(len(paths)))
    report(summary, refused, describe_skipped(group_skipped(skipped)))


def report(summary: Any, refused: list[str], skipped: str = "") -> None:
    if summary is not None:
        st.success(f"Added {summary.added}, updated {summary.updated}, unchanged {summary.unchanged}, "
                   f"failed {len(summary.failed)} ({summary.chunks} chunks).")
        for d in summary.duplicates:
            st.info(f"{d['path']}: same content as {d['same_as']} (stored once).")
        for f in summary.failed:
            st.error(f"{f['path'].rsplit('/', 1)[-1]}: {f['error']}")
    if skipped:
        st.warning(skipped[0].upper() + skipped[1:] + ".")
    for reason in refused:
        st.error(reason)


def documents_section() -> None:
    store = resources.store()
    readable = auth.readable(auth.current())
    st.subheader("Documents")
    cols = st.columns([2, 2, 3])
    visible = [c for c in store.collections() if readable is None or c in readable]
    collection = cols[0].selectbox("Collection", ["All", *visible])
    status = cols[1].selectbox("Status", ["All", "ready", "failed", "duplicate"])
    needle = cols[2].text_input("Title or path contains")
    docs = [d for d in store.documents(None if collection == "All" else collection) if d.collection in visible]
    rows = [d for d in docs if (status == "All" or d.status == status)
            and (not needle or needle.lower() in (d.title + " " + d.path).lower())]
    if not rows:
        st.info("No documents match." if docs else "The library is empty.")
        return
    from ingest.page_view import ocr_summary

    ocr = ocr_summary(store.engine, [d.id for d in rows])
    st.dataframe([{"id": d.id, "title": d.title, "collection": d.collection, "status": d.status, "pages": d.pages,
                   "chunks": d.chunks, "OCR": ocr_label(ocr.get(d.id)), "file": d.path.rsplit("/", 1)[-1],
                   "error": d.error or ""} for d in rows],
                 hide_index=True, width="stretch")
    if ocr:
        st.caption("OCR: pages read from a scan or image, and the OCR engine's mean confidence; check the "
                   "text of low-confidence pages against the original.")
    failed = [d for d in rows if d.status == "failed"]
    if failed:
        with st.expander(f"{len(failed)} failed", expanded=True):
            for d in failed:
                st.markdown("- " + render.escape_markdown(f"{d.path.rsplit('/', 1)[-1]}: {d.error}"))
    delete_section(rows)


def ocr_label(read: tuple[int, float] | None) -> str:
    """"2 pages, 94% confidence" for a document OCR read, "" for one with a text layer."""
    if read is None:
        return ""
    pages, confidence = read
    return f"{pages} page{'s' if pages != 1 else ''}, {confidence:.0f}% confidence"


def delete_section(rows: list[Any]) -> None:
    who = auth.current()
    rows = [d for d in rows if auth.accounts().may_write(who, d.collection)]
    labels = {d.id: f"{d.id}: {d.title}" for d in rows}
    chosen = st.multiselect("Delete documents", list(labels), format_func=labels.__getitem__)
    if chosen and st.button(f"Delete {len(chosen)} document(s)", type="primary", icon=":material/delete:",
                                 key="delete"):
        with open_writer(resources.store()) as w:
            for doc_id in chosen:
                w.remove(doc_id)
        from rag.audit import record

        record(resources.store().engine, who.name, "remove",
               documents=[{"id": d.id, "path": d.path} for d in rows if d.id in chosen])
        st.success(f"Deleted {len(chosen)} document(s).")
        st.rerun()


def page() -> None:
    if auth.current().role not in ("admin", "editor"):
        st.error("Only editors and admins manage documents.")
        st.stop()
    st.title("Library")
    upload_section(resources.settings())
    documents_section()


with resources.shown_errors():
    page()
