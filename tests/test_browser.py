"""End to end in a real browser: `ragqa ui` serving, Debian's Chromium driven by Playwright.
Upload a PDF on the Library page, ask a question whose answer is on its second page, and see the
answer cite page 2. Set RAGQA_SCREENSHOT=PATH to keep a screenshot of the Ask page."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fixtures import make_pdf

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ui_server(tmp_path: Path, env: Mapping[str, str]) -> Iterator[str]:
    """`ragqa ui` serving with `env`, once it answers; its URL. Its log is tmp_path/ui.log."""
    port = free_port()
    # A process of its own: `ragqa ui` execs the Streamlit server; started by the console script users run.
    ragqa = shutil.which("ragqa", path=str(Path(sys.executable).parent)) or "ragqa"
    log = (tmp_path / "ui.log").open("w")
    proc = subprocess.Popen([ragqa, "ui", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("the UI did not come up: " + (tmp_path / "ui.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[str]:
    env = {**os.environ, "RAGQA_HOME": str(tmp_path / "home"), "RAGQA_DATABASE_URL": database_url,
           "RAGQA_GENERATOR": "extractive", "HF_HUB_OFFLINE": "1"}
    with ui_server(tmp_path, env) as url:
        yield url


def test_upload_a_pdf_then_ask_and_see_page_two_cited(server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    pdf = make_pdf(tmp_path / "travel-policy.pdf", [
        "Travel policy\nThis policy explains how staff book and claim travel.",
        "Mileage\nThe mileage allowance for private cars is 42 pence per mile.\n"
        "Claims are paid with the next monthly salary.",
        "Hotels\nHotels are booked through the travel desk."], title="Travel policy")
    expect.set_options(timeout=120_000)  # the first upload loads the embedding model
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(f"{server}/library")
        page.get_by_role("heading", name="Library").wait_for()
        page.locator("input[type=file]").set_input_files(str(pdf))
        expect(page.get_by_text("travel-policy.pdf")).to_be_visible()  # uploaded to the server
        page.get_by_role("button", name="Add to the library").click()
        expect(page.get_by_text("Added 1,", exact=False)).to_be_visible()

        page.goto(server)
        page.get_by_role("heading", name="Ask the library").wait_for()
        page.get_by_placeholder("Ask a question about your documents").fill(
            "What is the mileage allowance for private cars?")
        page.keyboard.press("Enter")
        source = page.get_by_text("[1] Travel policy, p. 2")
        expect(source).to_be_visible()
        assistant = page.locator('[data-testid="stChatMessage"]').last
        expect(assistant).to_contain_text("42 pence per mile")
        source.click()
        expect(page.get_by_text("Cited: page 2", exact=False)).to_be_visible()
        if os.environ.get("RAGQA_SCREENSHOT"):
            page.screenshot(path=os.environ["RAGQA_SCREENSHOT"], full_page=True)
        browser.close()


def scripted_model(request: dict) -> dict:
    """A gpt-oss stand-in that searches the library once with its tool, then answers from what
    that search showed (for a follow-up, from the part-time contract)."""
    import json
    import re

    messages = request["messages"]
    last_user = [m["content"] for m in messages if m["role"] == "user"][-1]
    if last_user.startswith("Rewrite this question"):
        return {"answer": ["parental leave for part-time staff"]}
    followup = "part-time" in last_user.rsplit("Question:", 1)[-1]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results:
        query = "part-time staff parental leave" if followup else "parental leave weeks"
        return {"reasoning": ["Let me search."],
                "tool_call": {"name": "search", "arguments": json.dumps({"query": query})}}
    title = "Part-time contracts" if followup else "Parental leave"
    found = re.findall(r"【(\d+)†" + title, results[-1])
    text = ("Part-time staff receive parental leave pro rata to their contracted hours" if followup
            else "Staff receive 26 weeks of parental leave on full pay")
    return {"reasoning": ["Found it."], "answer": [f"{text} [{found[0] if found else 1}]."]}


@pytest.fixture
def tool_server(tmp_path: Path, database_url: str) -> Iterator[str]:
    """The UI answering through the openai backend, against a stand-in server whose model calls
    the library's search tool; the library already holds the staff handbook."""
    from tests.helpers import ragqa as run_ragqa
    from tests.helpers import write_files
    from tests.openai_standin import StandIn

    handbook = write_files(tmp_path / "handbook", {
        "leave.md": "# Parental leave\n\nStaff receive 26 weeks of parental leave on full pay after one year.",
        "parttime.md": "# Part-time contracts\n\nPart-time staff receive parental leave pro rata to their "
                       "contracted hours, with a minimum of ten weeks.",
        "canteen.md": "# Canteen\n\nThe canteen opens at 8 am and closes at 3 pm."})
    with StandIn([], [], script=scripted_model) as model:
        env = {**os.environ, "RAGQA_HOME": str(tmp_path / "home"), "RAGQA_DATABASE_URL": database_url,
               "RAGQA_GENERATOR": "openai", "RAGQA_OPENAI_BASE_URL": model.url, "RAGQA_OPENAI_MODEL": "gpt-oss-test",
               "RAGQA_ANSWER_PASSAGES": "1", "HF_HUB_OFFLINE": "1"}
        assert run_ragqa(env, "ingest", str(handbook), "--collection", "handbook").returncode == 0
        with ui_server(tmp_path, env) as url:
            yield url


def test_a_followup_is_answered_from_the_right_document_with_the_steps_box_closed(tool_server: str) -> None:
    import re

    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=120_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        page.goto(tool_server)
        page.get_by_role("heading", name="Ask the library").wait_for()
        ask = page.get_by_placeholder("Ask a question about your documents")
        ask.fill("How long is parental leave?")
        page.keyboard.press("Enter")
        expect(page.locator('[data-testid="stChatMessage"]').nth(1)).to_contain_text("26 weeks")
        ask.fill("And for part-time staff?")
        page.keyboard.press("Enter")
        answer = page.locator('[data-testid="stChatMessage"]').nth(3)
        expect(answer).to_contain_text("pro rata to their contracted hours")
        expect(answer.get_by_text(re.compile(r"^\[\d+\] Part-time contracts"))).to_be_visible()
        steps = answer.locator("details").filter(has_text="Searched the library: 1 step")
        expect(steps).to_have_count(1)
        assert steps.evaluate("box => box.open") is False  # there, and closed
        expect(answer.get_by_text("searched for “part-time staff parental leave”", exact=False)).to_be_hidden()
        steps.locator("summary").click()
        expect(answer.get_by_text("searched for “part-time staff parental leave”", exact=False)).to_be_visible()
        browser.close()
