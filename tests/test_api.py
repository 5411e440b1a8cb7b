"""The HTTP API as other tools use it: `ragqa serve` started as a real process, spoken to by the
official `openai` client, by curl and by plain HTTP; keys acting as two accounts with different
permissions; bad requests refused in JSON while the server keeps serving; /metrics parsed by
Prometheus' own parser."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rag.access import Accounts
from rag.audit import entries
from rag.keys import ApiKeys
from rag.settings import Settings
from tests.helpers import no_traceback, ragqa, ragqa_command, run_ingest, write_files

TOWER = ("The Eiffel Tower\n\nThe Eiffel Tower stands on the Champ de Mars in Paris. It was built between 1887 and "
         "1889 as the entrance arch of the World's Fair. It was designed by the engineers Maurice Koechlin and "
         "Emile Nouguier of Gustave Eiffel's company.")
LOGO = ("The company logo\n\nThe new company logo was designed by the studio Brightline in 2021. Who designed the "
        "logo was decided by a vote of the staff.")
PAY = "Salaries\n\nSalaries are paid on the 25th of each month. The finance director earns 200000 pounds a year."


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call(url: str, path: str, key: str | None = None, body: Any = None, *, raw: bytes | None = None,
         method: str | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, parsed JSON or text) of one request; 4xx and 5xx are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Server:
    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.log = open(home / "serve.log", "w")  # closed in stop()
        self.proc = subprocess.Popen(ragqa_command("serve", "--port", port), env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (home / "serve.log").read_text()
            try:
                if call(self.url, "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("ragqa serve did not start: " + (home / "serve.log").read_text())

    def alive(self) -> bool:
        return self.proc.poll() is None and call(self.url, "/healthz")[0] == 200

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        return (self.home / "serve.log").read_text()


def make_library(home: Path, embedder: Any) -> tuple[Settings, dict[str, str]]:
    """A store with an open collection (public: the tower, a logo) and a closed one (hr), three
    accounts (a reader, an hr editor, an admin) and a key for each."""
    from ragqa.wiring import open_store

    settings = Settings(home=home, chunk_tokens=64, chunk_overlap=8, file_timeout_s=60)
    store = open_store(settings)
    files = write_files(home / "files", {"public/tower.txt": TOWER, "public/logo.txt": LOGO, "hr/pay.txt": PAY})
    run_ingest([files / "public"], store, settings, embedder, collection="public")
    run_ingest([files / "hr"], store, settings, embedder, collection="hr")
    accounts = Accounts(store.engine)
    accounts.add("alice", "reader", ("staff",))
    accounts.add("hrbob", "editor", ("hr",))
    accounts.add("root", "admin")
    accounts.grant("hr", "hr")
    keys = {name: ApiKeys(store.engine).create(name)[1] for name in ("alice", "hrbob", "root")}
    store.close()
    return settings, keys


def server_env(settings: Settings, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGQA_") or k == "RAGQA_CACHE_DIR"}
    env.update({"RAGQA_HOME": str(settings.home), "RAGQA_DATABASE_URL": "", "RAGQA_CHUNK_TOKENS": "64",
                "RAGQA_CHUNK_OVERLAP": "8", "RAGQA_GENERATOR": "extractive", "HF_HUB_OFFLINE": "1", **more})
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Iterator[tuple[Server, dict[str, str]]]:
    """One `ragqa serve` process (extractive answers) for the tests of this module."""
    home = tmp_path_factory.mktemp("api") / "home"
    settings, keys = make_library(home, embedder)
    server = Server(home, server_env(settings))
    yield server, keys
    log = server.stop()
    assert "Traceback" not in log, log


def openai_client(server: Server, key: str) -> Any:
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=300)


def cited_titles(sources: list[dict[str, Any]]) -> set[str]:
    return {s["title"] for s in sources if s["cited"]}


def test_openai_client_gets_answers_with_citations_streamed_and_not(served) -> None:
    server, keys = served
    client = openai_client(server, keys["alice"])
    assert {m.id for m in client.models.list()} == {"library", "public"}  # hr is closed to alice

    question = [{"role": "user", "content": "When was the Eiffel Tower built?"}]
    done = client.chat.completions.create(model="library", messages=question)
    text = done.choices[0].message.content
    assert "1889" in text and "[^1]" in text
    assert "\n[^1]: The Eiffel Tower, " in text  # the footnote a plain client shows
    assert cited_titles(done.model_extra["sources"]) == {"The Eiffel Tower"}

    chunks = list(client.chat.completions.create(model="public", messages=question, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert cited_titles(chunks[-1].model_extra["sources"]) == {"The Eiffel Tower"}


def test_a_follow_up_in_the_message_list_is_answered_from_the_right_document(served) -> None:
    server, keys = served
    client = openai_client(server, keys["alice"])
    # Alone, "Who designed it?" ranks the logo first (its words are there); after a question about
    # the tower, the tower must come first and lead the answer.
    alone = client.chat.completions.create(model="public", messages=[{"role": "user", "content": "Who designed it?"}])
    assert alone.model_extra["sources"][0]["title"] == "The company logo"
    first = [{"role": "user", "content": "When was the Eiffel Tower built?"}]
    answer = client.chat.completions.create(model="public", messages=first).choices[0].message.content
    follow = client.chat.completions.create(model="public", messages=[
        {"role": "system", "content": "You are helpful."}, *first, {"role": "assistant", "content": answer},
        {"role": "user", "content": "Who designed it?"}])
    sources = follow.model_extra["sources"]
    assert sources[0]["title"] == "The Eiffel Tower" and sources[0]["cited"]
    lead = follow.choices[0].message.content.split("\n")[0]
    assert "Koechlin" in lead and lead.endswith(f"[^{sources[0]['number']}]")
    assert "Eiffel" in follow.model_extra["searched_for"]


def test_curl_gets_an_answer_and_a_stream(served) -> None:
    server, keys = served
    body = json.dumps({"model": "library", "messages": [{"role": "user", "content": "When was the tower built?"}]})
    base = ["curl", "-sS", "-H", f"Authorization: Bearer {keys['alice']}", "-H", "Content-Type: application/json"]
    done = subprocess.run([*base, "-d", body, server.url + "/v1/chat/completions"], capture_output=True, text=True,
                          timeout=300, check=True)
    assert "1889" in json.loads(done.stdout)["choices"][0]["message"]["content"]
    stream = subprocess.run([*base, "-N", "-d", json.dumps({**json.loads(body), "stream": True}),
                             server.url + "/v1/chat/completions"], capture_output=True, text=True, timeout=300,
                            check=True)
    events = [line[6:] for line in stream.stdout.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "1889" in "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])


def test_two_keys_of_two_users_see_only_what_each_may_read(served) -> None:
    server, keys = served
    question = [{"role": "user", "content": "When are salaries paid?"}]
    seen = {}
    for user in ("alice", "hrbob"):
        answer = openai_client(server, keys[user]).chat.completions.create(model="library", messages=question)
        seen[user] = answer
    assert all(s["collection"] == "public" for s in seen["alice"].model_extra["sources"])
    assert "25th" not in seen["alice"].choices[0].message.content
    assert "25th" in seen["hrbob"].choices[0].message.content
    assert cited_titles(seen["hrbob"].model_extra["sources"]) == {"Salaries"}
    # The native search applies the same permissions, and a closed collection does not exist for alice.
    status, found = call(server.url, "/v1/search", keys["alice"], {"query": "salaries paid", "k": 10})
    assert status == 200 and found["passages"] and {p["collection"] for p in found["passages"]} <= {"public"}
    assert call(server.url, "/v1/search", keys["alice"], {"query": "salaries", "collections": ["hr"]})[0] == 404

    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{server.home / 'ragqa.db'}")
    asked = [e for e in entries(engine)
             if e["action"] == "ask" and e["detail"]["question"] == "When are salaries paid?"]
    engine.dispose()
    assert {e["user"] for e in asked} == {"alice", "hrbob"}
    assert all(e["detail"]["via"] == "chat.completions" and e["detail"]["key"] for e in asked)


def test_native_ask_and_documents(served, tmp_path: Path) -> None:
    server, keys = served
    status, answer = call(server.url, "/v1/ask", keys["hrbob"], {"question": "When are salaries paid?"})
    assert status == 200 and answer["answered"] and "25th" in answer["answer"]
    status, docs = call(server.url, "/v1/documents", keys["alice"])
    assert status == 200 and {d["collection"] for d in docs} == {"public"}

    def upload(key: str, name: str, data: bytes, collection: str = "uploads") -> tuple[int, Any]:
        boundary = "ragqaboundary"
        parts = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"collection\"\r\n\r\n{collection}\r\n"
                 f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
                 "Content-Type: text/plain\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return call(server.url, "/v1/documents", key, raw=parts,
                    headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    status, refused = upload(keys["alice"], "note.txt", b"Readers may not add documents.")
    assert status == 403 and "may not change" in refused["error"]["message"]
    status, summary = upload(keys["hrbob"], "parking.txt", b"Parking\n\nThe car park closes at ten at night.")
    assert status == 201 and summary["added"] == 1
    added = [d for d in call(server.url, "/v1/documents?collection=uploads", keys["hrbob"])[1]
             if d["title"] == "Parking"]
    assert len(added) == 1
    assert call(server.url, f"/v1/documents/{added[0]['id']}", keys["alice"], method="DELETE")[0] == 403
    assert call(server.url, f"/v1/documents/{added[0]['id']}", keys["hrbob"], method="DELETE") == \
        (200, {"removed": [added[0]["id"]]})
    assert call(server.url, f"/v1/documents/{added[0]['id']}", keys["hrbob"], method="DELETE")[0] == 404


def test_bad_requests_get_a_json_reason_and_the_server_keeps_serving(served) -> None:
    server, keys = served
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{server.home / 'ragqa.db'}")
    expired = ApiKeys(engine).create("alice", datetime.now(UTC) - timedelta(days=1))[1]
    engine.dispose()
    revoked = json.loads(ragqa(server.env, "keys", "create", "alice", "--json").stdout)
    assert ragqa(server.env, "keys", "revoke", str(revoked["id"])).returncode == 0
    chat = {"model": "library", "messages": [{"role": "user", "content": "When was the tower built?"}]}
    big = b'{"model": "library", "messages": [{"role": "user", "content": "' + b"x" * (50 * 2**20) + b'"}]}'
    traversal = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"../../etc/cron.txt\"\r\n\r\n"
                 b"hello\r\n--b--\r\n")
    cases = {
        "no key": (call(server.url, "/v1/chat/completions", None, chat), 401, "no API key"),
        "wrong key": (call(server.url, "/v1/chat/completions", "ragqa_" + "x" * 43, chat), 401, "unknown API key"),
        "not even a key": (call(server.url, "/v1/models", "hello"), 401, "unknown API key"),
        "expired key": (call(server.url, "/v1/chat/completions", expired, chat), 401, "expired"),
        "revoked key": (call(server.url, "/v1/chat/completions", revoked["key"], chat), 401, "revoked"),
        "malformed JSON": (call(server.url, "/v1/chat/completions", keys["alice"], raw=b'{"model": "library",'),
                           400, "not valid JSON"),
        "50 MB body": (call(server.url, "/v1/chat/completions", keys["alice"], raw=big), 413, "MB limit"),
        "unknown model": (call(server.url, "/v1/chat/completions", keys["alice"], {**chat, "model": "nope"}),
                          404, "no model 'nope'"),
        "closed collection as model": (call(server.url, "/v1/chat/completions", keys["alice"], {**chat, "model": "hr"}),
                                       404, "no model 'hr'"),
        "no messages": (call(server.url, "/v1/chat/completions", keys["alice"], {"model": "library", "messages": []}),
                        422, "messages"),
        "bad effort": (call(server.url, "/v1/chat/completions", keys["alice"], {**chat, "reasoning_effort": "max"}),
                       400, "reasoning_effort"),
        "path traversal": (call(server.url, "/v1/documents", keys["hrbob"], raw=traversal,
                                headers={"Content-Type": "multipart/form-data; boundary=b"}), 400,
                           "not a plain file name"),
        "no such endpoint": (call(server.url, "/v1/nothing", keys["alice"]), 404, "no such endpoint"),
    }
    for name, ((status, body), expected, reason) in cases.items():
        assert status == expected, (name, status, body)
        message = body["error"]["message"]
        assert reason in message and "\n" not in message and "Traceback" not in message, (name, body)
    assert server.alive()
    status, done = call(server.url, "/v1/chat/completions", keys["alice"], chat)
    assert status == 200 and "1889" in done["choices"][0]["message"]["content"]


def test_metrics_parse_and_move_with_requests(served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    server, keys = served

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(server.url + "/metrics", timeout=60) as resp:
            text = resp.read().decode()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    ok = ("ragqa_api_requests_total", (("endpoint", "/v1/chat/completions"), ("method", "POST"), ("status", "200")))
    refused = ("ragqa_api_requests_total", (("endpoint", "/v1/chat/completions"), ("method", "POST"),
                                            ("status", "401")))
    answers = ("ragqa_answer_seconds_count", ())
    first = ("ragqa_answer_first_token_seconds_count", ())
    before = scrape()
    chat = {"model": "library", "messages": [{"role": "user", "content": "When was the tower built?"}]}
    assert call(server.url, "/v1/chat/completions", keys["alice"], chat)[0] == 200
    assert call(server.url, "/v1/chat/completions", keys["alice"], {**chat, "stream": True})[0] == 200
    assert call(server.url, "/v1/chat/completions", None, chat)[0] == 401
    after = scrape()
    assert after[ok] - before.get(ok, 0) == 2
    assert after[refused] - before.get(refused, 0) == 1
    assert after[answers] - before.get(answers, 0) == 2 and after[first] - before.get(first, 0) == 2
    assert after[("ragqa_generated_tokens_total", ())] > before.get(("ragqa_generated_tokens_total", ()), 0)
    assert after[("ragqa_answer_tokens_per_second_count", ())] >= 2
    assert after[("ragqa_store_chunks", ())] >= 3
    assert after[("ragqa_store_documents", (("status", "ready"),))] >= 3


def test_keys_are_shown_once_and_stored_hashed(served) -> None:
    server, _ = served
    made = ragqa(server.env, "keys", "create", "hrbob", "--expires", "2999-12-31", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]
    assert call(server.url, "/v1/models", key)[0] == 200
    listed = ragqa(server.env, "keys", "list", "--user", "hrbob")
    assert "hrbob" in listed.stdout and key not in listed.stdout and "2999-12-31" in listed.stdout
    assert key.encode() not in (server.home / "ragqa.db").read_bytes()
    past = ragqa(server.env, "keys", "create", "hrbob", "--expires", "2001-01-01")
    nobody = ragqa(server.env, "keys", "create", "nobody")
    for ran in (past, nobody):
        assert ran.returncode != 0 and ran.stderr.startswith("error: ")
        no_traceback(ran)


def test_reasoning_effort_reaches_the_generator(tmp_path: Path, embedder: Any) -> None:
    """The generator here is a recording stand-in of an OpenAI-compatible server behind the
    `openai` backend: what the library's generator was asked is what it recorded."""
    from tests.openai_standin import StandIn

    settings, keys = make_library(tmp_path / "home", embedder)
    with StandIn(["The tower was built in 1889 [1]."], ["Thinking."], context=8192) as standin:
        server = Server(settings.home, server_env(settings, RAGQA_GENERATOR="openai",
                                                  RAGQA_OPENAI_BASE_URL=standin.url, RAGQA_OPENAI_MODEL=standin.model))
        try:
            client = openai_client(server, keys["alice"])
            question = [{"role": "user", "content": "When was the Eiffel Tower built?"}]
            for effort, level in (("high", "high"), ("minimal", "low"), ("medium", "medium")):
                done = client.chat.completions.create(model="library", messages=question, reasoning_effort=effort)
                assert standin.requests[-1]["reasoning_effort"] == level
            assert done.choices[0].message.content.startswith("The tower was built in 1889 [^1].")
            assert done.model_extra["sources"][0]["cited"]
            # Streamed, through a model that may call the library's tools: the same answer and footnotes.
            chunks = list(client.chat.completions.create(model="library", messages=question, stream=True,
                                                         reasoning_effort="low"))
            assert standin.requests[-1]["reasoning_effort"] == "low" and standin.requests[-1]["stream"]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
                done.choices[0].message.content
            assert "Thinking." in "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or ""
                                          for c in chunks if c.choices)
        finally:
            server.stop()
