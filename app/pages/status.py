"""Status: what the library holds, how it is searched, which generator answers and whether it
can answer now, and the last ingest runs."""

from __future__ import annotations

import streamlit as st

from app import resources


def page() -> None:
    st.title("Status")
    store, cfg = resources.store(), resources.settings()
    counts = store.counts()
    cols = st.columns(4)
    cols[0].metric("Documents", counts["ready"])
    cols[1].metric("Chunks", counts["chunks"])
    cols[2].metric("Failed files", counts["failed"])
    cols[3].metric("Collections", len(store.collections()))

    st.subheader("Search")
    snap = resources.retriever().snapshot()
    state = store.index_state()
    index = snap.vectors.describe() if snap.vectors is not None else "empty"
    st.markdown(f"- Vector index: {index} (generation {state.generation})\n"
                f"- Embedding model: `{state.embedding_model or cfg.embedding_model}`\n"
                f"- Hybrid search: dense and BM25, fused (dense weight {cfg.dense_weight})")

    st.subheader("Generator")
    gen = resources.generator()
    with st.spinner("Checking the generator…"):
        problem = gen.check()
    kind = "extractive (no language model: answers quote the sources)" if gen.extractive else gen.name
    st.markdown(f"- Backend: **{kind}**\n- Context window: {gen.context_tokens} tokens")
    if problem:
        st.error(f"The generator cannot answer now: {problem}")
    else:
        st.success("The generator answers.")

    st.subheader("Last ingest runs")
    runs = store.recent_runs(10)
    if not runs:
        st.info("No ingest has run yet.")
        return
    st.dataframe([{"run": r["id"], "started": r["started_at"], "status": r["status"], "collection": r["collection"],
                   "seconds": round(r["seconds"] or 0, 1),
                   **{k: (len(v) if isinstance(v, list) else v) for k, v in (r["summary"] or {}).items()
                      if k in ("added", "updated", "unchanged", "removed", "failed")}}
                  for r in runs], hide_index=True, width="stretch")


with resources.shown_errors():
    page()
