"""Accounts, collection permissions enforced inside retrieval, and the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.access import LOCAL_ADMIN, AccessDeniedError, Accounts, Principal
from rag.answer import Answerer
from rag.audit import answer_detail, entries, record
from rag.errors import ConfigError, NotFoundError
from rag.extractive import ExtractiveGenerator
from rag.retrieval import Retriever, Scope
from tests.helpers import Library, no_traceback, ragqa


@pytest.fixture
def two_collections(library: Library, store) -> Accounts:
    library({"pay.txt": "Salaries\n\nThe finance director earns 200000 pounds a year, paid monthly."},
            collection="hr", folder="hr")
    library({"canteen.txt": "Canteen\n\nThe canteen opens at eight; the finance director eats there."},
            collection="general", folder="general")
    accounts = Accounts(store.engine)
    accounts.grant("hr", "hr-staff")
    return accounts


def test_accounts_hash_passwords_and_check_roles(store) -> None:
    accounts = Accounts(store.engine)
    accounts.add("alice", "editor", ("hr-staff", "all"), "correct horse")
    with store.engine.connect() as c:
        stored = c.exec_driver_sql("SELECT password_hash FROM users").scalar()
    assert stored.startswith("$argon2") and "correct horse" not in stored
    assert accounts.verify("alice", "correct horse") == Principal("alice", "editor", ("all", "hr-staff"))
    assert accounts.verify("alice", "wrong password") is None and accounts.verify("nobody", "correct horse") is None
    with pytest.raises(ConfigError, match="exists"):
        accounts.add("alice", "reader", (), "another one")
    with pytest.raises(ConfigError, match="role"):
        accounts.add("carol", "owner", (), "a password")
    with pytest.raises(ConfigError, match="8 characters"):
        accounts.add("carol", "reader", (), "short")
    accounts.remove("alice")
    assert not accounts.any()
    with pytest.raises(NotFoundError):
        accounts.remove("alice")


def test_who_may_read_and_write(two_collections: Accounts) -> None:
    a = two_collections
    hr_reader, outsider = Principal("h", "reader", ("hr-staff",)), Principal("o", "reader", ("sales",))
    assert a.readers() == {"general": (), "hr": ("hr-staff",)}
    assert set(a.readable(hr_reader) or ()) == {"general", "hr"} and a.readable(outsider) == ("general",)
    assert a.readable(LOCAL_ADMIN) is None
    editor = Principal("e", "editor", ("hr-staff",))
    assert a.may_write(editor, "hr") and a.may_write(editor, "new-collection")
    assert not a.may_write(Principal("e2", "editor", ("sales",)), "hr") and not a.may_write(hr_reader, "general")
    with pytest.raises(AccessDeniedError):
        a.require_write(hr_reader, "general")
    a.revoke("hr", "hr-staff")
    assert a.readable(outsider) == ("general", "hr")  # no groups left: open again


def test_two_users_ask_the_same_question_and_each_gets_only_what_they_may_read(
        two_collections: Accounts, store, embedder) -> None:
    retriever = Retriever(store, lambda: embedder)
    answerer = Answerer(retriever, ExtractiveGenerator(embedder.encode))
    question = "How much does the finance director earn?"
    seen = {}
    for who in (Principal("hannah", "reader", ("hr-staff",)), Principal("sam", "reader", ("sales",))):
        readable = two_collections.readable(who)
        answer = answerer.prepare(question, scope=Scope(readable=readable))
        seen[who.name] = {p.collection for p in answer.passages}
        full = answerer.ask(question, scope=Scope(readable=readable))
        record(store.engine, who.name, "ask", **answer_detail(full))
        # Not only the passages: the ranking itself never scored an unreadable chunk.
        ranked = retriever.rank(question, "hybrid", Scope(readable=readable))
        hr_ids = {c for c, d in zip(retriever.snapshot().table.ids, retriever.snapshot().table.collection)
                  if d == store.collection_id("hr")}
        assert (who.name == "hannah") or not (set(ranked.ids.tolist()) & hr_ids)
        for mode in ("dense", "lexical"):
            assert (who.name == "hannah") or not (set(retriever.rank(question, mode, Scope(readable=readable))
                                                      .ids.tolist()) & hr_ids)
    assert seen == {"hannah": {"hr", "general"}, "sam": {"general"}}
    with pytest.raises(NotFoundError, match="no collection 'hr'"):  # as if it did not exist
        retriever.search(question, 5, "hybrid", Scope(("hr",), readable=("general",)))
    assert retriever.search(question, 5, "hybrid", Scope(readable=())) == []
    log = entries(store.engine)
    assert [(e["user"], e["action"]) for e in log] == [("hannah", "ask"), ("sam", "ask")]
    assert log[0]["detail"]["question"] == question and log[0]["detail"]["chunks"]
    assert len(entries(store.engine, user="sam")) == 1


def test_cli_users_collections_ask_as_user_and_audit(tmp_path: Path, cli_env: dict[str, str]) -> None:
    hr = tmp_path / "hr"
    hr.mkdir()
    (hr / "pay.txt").write_text("Salaries\n\nThe finance director earns 200000 pounds a year.")
    assert ragqa(cli_env, "ingest", str(hr), "--collection", "hr").returncode == 0
    assert ragqa(cli_env, "collections", "grant", "hr", "hr-staff").returncode == 0
    add = ragqa(cli_env, "users", "add", "sam", "--group", "sales", "--password-stdin", input="long enough pw\n")
    assert add.returncode == 0, add.stderr
    listed = json.loads(ragqa(cli_env, "users", "list", "--json").stdout)
    assert listed == [{"name": "sam", "role": "reader", "groups": ["sales"]}]
    asked = ragqa(cli_env, "ask", "What does the finance director earn?", "--user", "sam", "--json")
    assert asked.returncode == 0 and json.loads(asked.stdout)["sources"] == []
    denied = ragqa(cli_env, "ask", "x", "--user", "sam", "--collection", "hr")
    no_traceback(denied)
    assert denied.returncode == 1 and "no collection 'hr'" in denied.stderr
    log = json.loads(ragqa(cli_env, "audit", "--json").stdout)
    assert [e["action"] for e in log] == ["ingest", "collections.grant", "users.add", "ask"]
    assert log[0]["detail"]["changes"][0]["change"] == "added" and log[3]["user"] == "sam"
    assert json.loads(ragqa(cli_env, "audit", "--user", "sam", "--json").stdout)[0]["action"] == "ask"
    assert json.loads(ragqa(cli_env, "audit", "--since", "2999-01-01", "--json").stdout) == []
    bad = ragqa(cli_env, "audit", "--since", "yesterday")
    assert bad.returncode == 2 and "ISO" in bad.stderr
    gone = ragqa(cli_env, "users", "remove", "nobody")
    assert gone.returncode == 1 and "no account" in gone.stderr
