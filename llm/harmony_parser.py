"""Parsing harmony tokens back into messages: as they stream from the model (which channel each
piece of text belongs to, where messages end, which message is a tool call), or a whole rendered
conversation at once (`parse_conversation`, the inverse of `harmony.render`).

The header is read as openai-harmony's parser reads it: the recipient (`to=...`) may stand in the
role part or in the channel part; the content type follows `<|constrain|>` (or stands as a bare
word after the channel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from llm.harmony import HarmonyTokenizer, Message


@dataclass(frozen=True)
class Delta:
    channel: str
    text: str
    recipient: str | None = None  # set when the message is addressed to a tool (its arguments)


@dataclass(frozen=True)
class MessageDone:
    message: Message
    stop: str  # end, return, call, or eos (the tokens ran out inside the message)


@dataclass(frozen=True)
class _Header:
    role: str
    channel: str | None
    recipient: str | None
    content_type: str | None


class StreamParser:
    """Feed token ids one at a time; get Delta and MessageDone events. A generation parser starts
    inside an assistant header (the prompt ended with `<|start|>assistant`) and stops at
    `<|return|>` or `<|call|>`; a conversation parser (`conversation=True`) starts before a
    `<|start|>` and reads every message to the end."""

    def __init__(self, tok: HarmonyTokenizer, role: str = "assistant", *, conversation: bool = False) -> None:
        self.tok = tok
        self._by_id = {v: k for k, v in tok.ids.items()}
        self.messages: list[Message] = []
        self.stopped: str | None = None  # "return" or "call" once generation is over
        self.raw_header = ""  # the header text of a message cut short before <|message|>
        self._conversation = conversation
        self._state = "between"
        if not conversation:
            self._start_header(role)

    def _start_header(self, role: str) -> None:
        self._state = "header"
        self._header: list[tuple[str, list[int]]] = [("role", self.tok.text(role) if role else [])]
        self._parsed: _Header | None = None
        self._content: list[int] = []
        self._shown = ""
        self.raw_header = ""

    def feed(self, token: int) -> list[Delta | MessageDone]:
        special = self._by_id.get(token)
        if self.stopped is not None:
            return []
        if self._state == "between":
            if special == "start":
                self._start_header("")
            return []  # anything else between messages is noise
        if special == "start":  # a new message before this one ended: keep what it said, if anything
            events = self._finish("end") if self._state == "content" else []
            self._start_header("")
            return events
        if self._state == "header":
            if special == "message":
                self._state = "content"
                self._parsed = self._read_header()
            elif special in ("channel", "constrain"):
                self._header.append((special, []))
            elif special in ("end", "return", "call"):  # no <|message|>: a malformed message
                return self._finish(special)
            else:
                self._header[-1][1].append(token)
            return []
        if special in ("end", "return", "call"):
            return self._finish(special)
        self._content.append(token)
        text = self.tok.decode(self._content)
        if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
            return []
        delta, self._shown = text[len(self._shown):], text
        head = self._parsed  # read once, at <|message|>
        assert head is not None
        return [Delta(head.channel or "final", delta, head.recipient)] if delta else []

    def flush(self) -> list[Delta | MessageDone]:
        """The tokens ended (a budget ran out): close the message in progress, if it had begun its
        content (a header cut short says nothing; a stopped parser is between messages)."""
        return self._finish("eos") if self._state == "content" else []

    def _read_header(self) -> _Header:
        parts: dict[str, str] = {}
        for kind, ids in self._header:
            parts[kind] = parts.get(kind, "") + self.tok.decode(ids)
        role_words = parts.get("role", "").split()
        channel_words = parts.get("channel", "").split()
        recipient = next((w[3:] for w in role_words + channel_words if w.startswith("to=")), None)
        role = next((w for w in role_words if not w.startswith("to=")), "assistant")
        rest = [w for w in channel_words if not w.startswith("to=")]
        channel = rest[0] if rest else None
        content_type = parts.get("constrain", "").strip() or " ".join(rest[1:]) or None
        if channel is None and role == "assistant":
            channel = "final"  # a model that omits the channel is answering
        return _Header(role, channel, recipient, content_type)

    def _finish(self, stop: str) -> list[Delta | MessageDone]:
        head = self._parsed or self._read_header()
        if self._state == "header":
            self.raw_header = "".join(("" if kind == "role" else f"<|{kind}|>") + self.tok.decode(ids)
                                      for kind, ids in self._header)
        message = Message(role=head.role, content=self.tok.decode(self._content), channel=head.channel,
                          recipient=head.recipient, content_type=head.content_type)
        self.messages.append(message)
        if stop in ("return", "call") and not self._conversation:
            self.stopped = stop
        self._state = "between"
        return [MessageDone(message, stop)]

    # ---- results ---------------------------------------------------------------------------
    def final_text(self) -> str:
        return "".join(m.content for m in self.messages if m.channel == "final")

    def reasoning_text(self) -> str:
        return "".join(m.content for m in self.messages if m.channel == "analysis" and not m.recipient)

    def tool_calls(self) -> list[Message]:
        return [m for m in self.messages if m.recipient and m.role == "assistant"]


def parse_conversation(tok: HarmonyTokenizer, ids: Sequence[int]) -> list[Message]:
    """The messages of a rendered conversation (`render(..., generation_prompt=False)`)."""
    parser = StreamParser(tok, conversation=True)
    for token in ids:
        parser.feed(token)
    parser.flush()
    return parser.messages
