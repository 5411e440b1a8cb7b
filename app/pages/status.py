"""Status: what the library holds, how it is searched, which generator answers and whether it
can answer now, and the last ingest runs."""

from __future__ import annotations

import streamlit as st

from app import auth, resources


def page() -> None:
    st.title("Status")
    store, cfg = resources.store(), resources.settings()
    readable = auth.readable(auth.current())
    # Counts only over what this person may read: a closed collection's size is not theirs to see.
    docs = [d for d in store.documents() if readable is None or d.collection in readable]
    cols = st.columns(4)
    cols[0].metric("Documents", sum(d.status == "ready" for d in docs))
    cols[1].metric("Chunks", sum(d.chunks for d in docs if d.status == "ready"))
    cols[2].metric("Failed files", sum(d.status == "failed" for d in docs))
    cols[3].metric("Collections", len({d.collection for d in docs}))

    if readable is not None:  # index internals and ingest runs are for admins
        return
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
