"""Docs that cannot drift: the README's settings table and `.env.example` are regenerated from
`rag.settings.Settings` and compared with the committed files, and every `ragqa ...` command line
in README.md and docs/*.md names a real command with options it has."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ragqa import docs_gen

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_generated_docs_match_the_settings() -> None:
    for path, text in docs_gen.generated_files(ROOT).items():
        assert path.read_text(encoding="utf-8") == text, (
            f"{path.name} is out of date with rag/settings.py: run {docs_gen.REGENERATE} and commit the result"
        )


def test_secrets_never_show_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGQA_OPENAI_API_KEY", "sk-live-do-not-print")
    secrets = [d for d in docs_gen.setting_docs() if d.secret]
    assert [d.env for d in secrets] == ["RAGQA_OPENAI_API_KEY"]
    table, env = docs_gen.settings_table(), docs_gen.env_section()
    assert "sk-live" not in table + env
    assert "| `RAGQA_OPENAI_API_KEY` | unset (secret) |" in table
    assert re.search(r"^# RAGQA_OPENAI_API_KEY=$", env, re.MULTILINE)


def test_every_setting_is_documented_with_its_default() -> None:
    from rag.settings import Settings

    env = docs_gen.env_section()
    for doc in docs_gen.setting_docs():
        assert f"# {doc.env}={doc.default}\n" in env + "\n"
    assert len(docs_gen.setting_docs()) == len(Settings.model_fields)
    assert "# RAGQA_CPU_KERNEL=true" in env and "# RAGQA_EXPERT_CACHE_MB=1024" in env


# ---- command lines in the docs ---------------------------------------------------------------

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
_INLINE = re.compile(r"`([^`\n]+(?:\n[^`\n]+)?)`")
_SEPARATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "("}


def _command_lines(text: str) -> list[str]:
    """Candidate shell lines: every line of a fenced block (continuations joined), and every
    inline code span, which may wrap onto the next line."""
    lines = []
    for block in _FENCE.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    lines += [span.replace("\n", " ") for span in _INLINE.findall(_FENCE.sub("", text))]
    return lines


def ragqa_invocations(text: str) -> list[list[str]]:
    """The arguments of each `ragqa` run in the text: `ragqa ...`, `$ ragqa ...`,
    `.venv/bin/ragqa ...`, `docker compose exec app ragqa ...`, after any VAR=value prefix."""
    found = []
    for line in _command_lines(text):
        if "ragqa" not in line:
            continue
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars="|&;<>()")
            lexer.whitespace_split, lexer.commenters = True, "#"
            tokens = list(lexer)
        except ValueError:  # an unbalanced quote: prose in a code span, not a command
            continue
        follows_command = False  # a table cell may show several commands side by side
        for i, token in enumerate(tokens):
            if _is_ragqa(token) and (follows_command or _command_position(tokens[:i])):
                args = []
                for arg in tokens[i + 1:]:
                    if arg in _SEPARATORS or _is_ragqa(arg):
                        break
                    args.append(arg)
                found.append(args)
                follows_command = True
            elif token in _SEPARATORS:
                follows_command = False
    return found


def _is_ragqa(token: str) -> bool:
    return token == "ragqa" or token.endswith("/ragqa")


def _command_position(before: list[str]) -> bool:
    """Whether a word after these tokens is the command run (not, say, `git clone URL ragqa`)."""
    while before and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", before[-1]):  # VAR=value prefixes
        before = before[:-1]
    if not before or before[-1] in _SEPARATORS or before[-1] in {"$", "sudo", "time"}:
        return True
    return len(before) >= 2 and before[-2] in {"exec", "run"}  # docker compose exec app ragqa ...


def _cli():
    from typer.main import get_command

    from ragqa.cli import app

    root = get_command(app)
    return root, root.context_class(root, info_name="ragqa")


def check_invocation(args: list[str]) -> str | None:
    """None if `ragqa ARGS` names a command and only options it has; else what is wrong."""
    cmd, ctx = _cli()
    path = ["ragqa"]
    rest = list(args)
    while hasattr(cmd, "list_commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        if name == "...":  # `ragqa ...`: any command
            return None
        sub = cmd.get_command(ctx, name)
        if sub is None:
            return f"{' '.join(path)} has no command {name!r} (it has: {', '.join(cmd.list_commands(ctx))})"
        cmd, path = sub, [*path, name]
    known = {o for p in cmd.params for o in [*p.opts, *p.secondary_opts]} | set(ctx.help_option_names)
    for arg in rest:
        arg = arg.lstrip("[").rstrip(".").rstrip("]")  # usage lines: [--json], [--collection C]...
        if arg.startswith("-") and arg != "-" and not re.fullmatch(r"-\d+(\.\d+)?", arg):
            option = arg.split("=", 1)[0]
            if option not in known:
                return f"{' '.join(path)} has no option {option} (it has: {', '.join(sorted(known))})"
    return None


def test_the_example_checker_catches_stale_examples() -> None:
    assert check_invocation(["search", "kiln", "-k", "5", "--mode", "dense"]) is None
    assert check_invocation(["bench", "search", "--chunks=10000", "--json"]) is None
    assert "no command 'issues'" in (check_invocation(["issues"]) or "")
    assert "no option --top" in (check_invocation(["search", "kiln", "--top", "5"]) or "")
    assert "no command 'frobnicate'" in (check_invocation(["eval", "frobnicate"]) or "")
    assert ragqa_invocations("```sh\nRAGQA_X=1 .venv/bin/ragqa ask \"q?\" --json | jq .  # --nope\n```") == [
        ["ask", "q?", "--json"]]
    assert ragqa_invocations("run `ragqa bench search --chunks\n1000000` once") == [
        ["bench", "search", "--chunks", "1000000"]]
    assert ragqa_invocations("```\ngit clone URL ragqa && cd ragqa\n$ docker compose exec app ragqa check\n```") == [
        ["check"]]
    assert "no option --nope" in (check_invocation(["docs", "[--nope]"]) or "")
    assert check_invocation(["..."]) is None and check_invocation(["eval", "beir", "...", "--mode", "all"]) is None


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: p.name)
def test_command_lines_in_the_docs_exist(doc: Path) -> None:
    wrong = []
    for args in ragqa_invocations(doc.read_text(encoding="utf-8")):
        problem = check_invocation(args)
        if problem:
            wrong.append(f"`ragqa {' '.join(args)}`: {problem}")
    assert not wrong, f"{doc.name} shows commands the CLI does not have:\n" + "\n".join(wrong)


def test_readme_lists_exactly_the_commands_the_cli_has() -> None:
    """The README's "Commands: `ingest`, ..., `eval beir|qa`, ..." sentence: every top-level
    command, and a group's subcommands where it names them."""
    cmd, ctx = _cli()
    sentence = re.search(r"Commands: (.*?)\.\s", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL)
    assert sentence, "README.md lost its 'Commands: ...' sentence"
    listed: dict[str, list[str]] = {}
    for span in re.findall(r"`([^`]+)`", sentence.group(1)):
        name, _, subs = span.partition(" ")
        listed[name] = subs.split("|") if subs else []
    assert sorted(listed) == sorted(cmd.list_commands(ctx))
    for name, subs in listed.items():
        if subs:
            assert sorted(subs) == sorted(cmd.get_command(ctx, name).list_commands(ctx)), name


def test_command_lines_in_the_cli_help_and_messages_exist() -> None:
    """`ragqa ...` in the code's own text (command and option help, docstrings shown as help,
    messages that tell the user what to run) is checked the same way as in the docs."""
    wrong = []
    for package in ("ragqa", "app", "rag", "ingest", "llm"):
        for path in sorted((ROOT / package).rglob("*.py")):
            spans = re.findall(r"`(ragqa [^`\n]+)`", path.read_text(encoding="utf-8"))
            for args in (a for span in spans for a in ragqa_invocations(f"`{span}`")):
                problem = check_invocation(args)
                if problem:
                    wrong.append(f"{path.relative_to(ROOT)}: `ragqa {' '.join(args)}`: {problem}")
    assert not wrong, "the code names commands the CLI does not have:\n" + "\n".join(wrong)
