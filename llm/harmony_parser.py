"""Parsing generated harmony tokens as they stream: which channel each piece of text belongs to,
where messages end, and which messages are tool calls."""

from __future__ import annotations

import re
from dataclasses import dataclass

from llm.harmony import HarmonyTokenizer, Message

_RECIPIENT = re.compile(r"\bto=(\S+)")


@dataclass(frozen=True)
class Delta:
    channel: str
    text: str


@dataclass(frozen=True)
class MessageDone:
    message: Message
    stop: str  # end, return or call


class StreamParser:
    """Feed generated token ids one at a time; get Delta and MessageDone events. Starts inside
    an assistant header (the prompt ended with `<|start|>assistant`)."""

    def __init__(self, tok: HarmonyTokenizer, role: str = "assistant") -> None:
        self.tok = tok
        self._by_id = {v: k for k, v in tok.ids.items()}
        self.messages: list[Message] = []
        self.stopped: str | None = None  # "return" or "call" once generation is over
        self._start_header(role)

    def _start_header(self, role: str) -> None:
        self._state = "header"
        self._header: list[tuple[str, list[int]]] = [("role", self.tok.text(role) if role else [])]
        self._content: list[int] = []
        self._shown = ""

    def feed(self, token: int) -> list[Delta | MessageDone]:
        special = self._by_id.get(token)
        if self.stopped is not None:
            return []
        if self._state == "between":
            if special == "start":
                self._start_header("")
            return []  # anything else between messages is noise
        if self._state == "header":
            if special == "message":
                self._state = "content"
            elif special in ("channel", "constrain"):
                self._header.append((special, []))
            else:
                self._header[-1][1].append(token)
            return []
        # content
        if special in ("end", "return", "call"):
            return self._finish(special)
        self._content.append(token)
        text = self.tok.decode(self._content)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return []
        delta, self._shown = text[len(self._shown):], text
        return [Delta(self._channel(), delta)] if delta else []

    def _fields(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for kind, ids in self._header:
            out[kind] = out.get(kind, "") + self.tok.decode(ids)
        return out

    def _channel(self) -> str:
        return self._fields().get("channel", "").split(" ")[0].strip() or "final"

    def _finish(self, stop: str) -> list[Delta | MessageDone]:
        f = self._fields()
        role_part = f.get("role", "").strip()
        role = role_part.split(" ")[0] if role_part else "assistant"
        channel_part = f.get("channel", "")
        m = _RECIPIENT.search(role_part) or _RECIPIENT.search(channel_part)
        message = Message(role=role, content=self.tok.decode(self._content), channel=self._channel(),
                          recipient=m.group(1) if m else None, content_type=f.get("constrain", "").strip() or None)
        self.messages.append(message)
        if stop in ("return", "call"):
            self.stopped = stop
        self._state = "between"
        return [MessageDone(message, stop)]

    # ---- results ---------------------------------------------------------------------------
    def final_text(self) -> str:
        return "".join(m.content for m in self.messages if m.channel == "final")

    def reasoning_text(self) -> str:
        return "".join(m.content for m in self.messages if m.channel == "analysis")

    def tool_calls(self) -> list[Message]:
        return [m for m in self.messages if m.recipient and m.role == "assistant"]
