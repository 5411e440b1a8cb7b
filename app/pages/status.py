"""Status: what the library holds, how it is searched, which generator answers and whether it
can answer now, and the last ingest runs."""

from __future__ import annotations

from typing import Any

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

    api_section(cfg.api_url)

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


def api_figures(url: str) -> dict[str, Any]:
    """The HTTP API's own /metrics, read with Prometheus' parser: the same figures a scraper sees."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url.rstrip("/") + "/metrics", timeout=3) as resp:
        text = resp.read().decode()
    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def total(name: str) -> float:
        return sum(s.value for s in samples if s.name == name)

    def quantile(name: str, q: float) -> float | None:
        """histogram_quantile's estimate: linear within the bucket that holds the q-th answer."""
        buckets = sorted((float(s.labels["le"]), s.value) for s in samples if s.name == name + "_bucket")
        count = buckets[-1][1] if buckets else 0
        if not count:
            return None
        rank, below, low = q * count, 0.0, 0.0
        for le, cumulative in buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return low
                return low + (le - low) * (rank - below) / max(cumulative - below, 1e-9)
            below, low = cumulative, le
        return low

    queue = [s.value for s in samples if s.name == "ragqa_generator_queue_length"]
    return {"answers": total("ragqa_answers_total"),
            "latency": (quantile("ragqa_answer_seconds", 0.5), quantile("ragqa_answer_seconds", 0.95)),
            "first_token": (quantile("ragqa_answer_first_token_seconds", 0.5),
                            quantile("ragqa_answer_first_token_seconds", 0.95)),
            "tokens_per_s": total("ragqa_answer_tokens_per_second_sum") /
            max(total("ragqa_answer_tokens_per_second_count"), 1),
            "queue": queue[0] if queue else None,
            "documents": sum(s.value for s in samples if s.name == "ragqa_store_documents"
                             and s.labels.get("status") == "ready"),
            "chunks": total("ragqa_store_chunks"),
            "requests": [{**s.labels, "requests": int(s.value)} for s in samples
                         if s.name == "ragqa_api_requests_total"]}


def api_section(url: str) -> None:
    """The HTTP API's figures (`ragqa serve`, its /metrics), when RAGQA_API_URL names it."""
    st.subheader("HTTP API")
    if not url:
        st.caption("Set RAGQA_API_URL (e.g. http://api:8000) to see the HTTP API's figures here.")
        return
    try:
        f = api_figures(url)
    except (OSError, ValueError) as exc:
        st.warning(f"The HTTP API at {url} does not answer: {exc}")
        return

    def secs(pair: tuple[float | None, float | None]) -> str:
        return " / ".join("–" if v is None else f"{v:.2f} s" for v in pair)

    cols = st.columns(4)
    cols[0].metric("Answers", int(f["answers"]))
    cols[1].metric("Answer time p50 / p95", secs(f["latency"]))
    cols[2].metric("First token p50 / p95", secs(f["first_token"]))
    cols[3].metric("Tokens/s (mean)", f"{f['tokens_per_s']:.1f}")
    queue = "no queue (this backend answers one request at a time)" if f["queue"] is None else int(f["queue"])
    st.markdown(f"- Generator queue: {queue}\n- Store, as the API sees it: {int(f['documents'])} documents, "
                f"{int(f['chunks'])} chunks")
    if f["requests"]:
        st.dataframe(f["requests"], hide_index=True, width="stretch")


with resources.shown_errors():
    page()
