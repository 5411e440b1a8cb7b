"""The harmony chat format of gpt-oss, above the engine: rendering conversations to token ids and
parsing generated ids back into messages, channel by channel, as they stream.

    <|start|>{role}[ to={recipient}]<|channel|>{channel}[ <|constrain|>{type}]<|message|>{content}<|end|>

Special-token ids come from the tokenizer (a small test tokenizer works as well as the 200k one).
Text that merely *looks* like a special token (a document saying "<|start|>system") is encoded
as ordinary text, never as a control token.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from llm.errors import CheckpointError

SPECIALS = ("start", "end", "message", "channel", "constrain", "return", "call")
REASONING_LEVELS = ("low", "medium", "high")
IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."


@dataclass(frozen=True)
class Message:
    role: str  # system, developer, user, assistant, or a tool's name (functions.search)
    content: str
    channel: str | None = None  # analysis, commentary, final (assistant and tool messages)
    recipient: str | None = None  # a tool call's target (functions.search) or "assistant"
    content_type: str | None = None  # <|constrain|> type of a tool call's arguments, e.g. json


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)  # JSON schema of one object


class HarmonyTokenizer:
    """The checkpoint's tokenizer plus the ids of the harmony special tokens."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        self.ids: dict[str, int] = {}
        for name in SPECIALS:
            tid = tokenizer.token_to_id(f"<|{name}|>")
            if tid is None:
                raise CheckpointError(f"the tokenizer has no <|{name}|> token: not a harmony tokenizer")
            self.ids[name] = tid
        self._special_text = sorted((t for t in tokenizer.get_vocab(with_added_tokens=True)
                                     if t.startswith("<|") and t.endswith("|>")), key=len, reverse=True)

    @classmethod
    def from_file(cls, path: str) -> HarmonyTokenizer:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_file(path))
        except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exceptions
            raise CheckpointError(f"cannot read tokenizer {path}: {exc}") from None

    def text(self, text: str) -> list[int]:
        """Ids of plain text. Any special-token string inside is split so it stays text."""
        out: list[int] = []
        rest = text
        while rest:
            hit = min(((rest.find(s), s) for s in self._special_text if s in rest), default=None)
            if hit is None:
                out += self.tok.encode(rest, add_special_tokens=False).ids
                break
            at, s = hit
            for piece in (rest[:at], s[:1], s[1:]):  # "<" and "|start|>" are not specials
                if piece:
                    out += self.tok.encode(piece, add_special_tokens=False).ids
            rest = rest[at + len(s):]
        return out

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.ids.values())

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    @property
    def stop_ids(self) -> tuple[int, int]:
        """Decoding stops at <|return|> (answer done) or <|call|> (tool call), not at <|end|>."""
        return self.ids["return"], self.ids["call"]


# ---- building prompts -----------------------------------------------------------------------
def system_content(today: date, reasoning: str = "medium", identity: str = IDENTITY,
                   knowledge_cutoff: str = "2024-06", with_tools: bool = False) -> str:
    if reasoning not in REASONING_LEVELS:
        raise ValueError(f"reasoning must be one of {', '.join(REASONING_LEVELS)}")
    lines = [identity, f"Knowledge cutoff: {knowledge_cutoff}", f"Current date: {today.isoformat()}", "",
             f"Reasoning: {reasoning}", "",
             "# Valid channels: analysis, commentary, final. Channel must be included for every message."]
    if with_tools:
        lines.append("Calls to these tools must go to the commentary channel: 'functions'.")
    return "\n".join(lines)


def developer_content(instructions: str, tools: Sequence[Tool] = ()) -> str:
    parts = [f"# Instructions\n\n{instructions}"]
    if tools:
        parts.append("# Tools\n\n## functions\n\nnamespace functions {\n\n"
                     + "".join(_tool_type(t) for t in tools) + "} // namespace functions")
    return "\n\n".join(parts)


def _tool_type(tool: Tool) -> str:
    props = tool.parameters.get("properties") or {}
    if not props:
        return f"// {tool.description}\ntype {tool.name} = () => any;\n\n"
    required = set(tool.parameters.get("required") or [])
    fields = []
    for name, schema in props.items():
        if schema.get("description"):
            fields.append(f"// {schema['description']}")
        optional = "" if name in required else "?"
        default = f" // default: {schema['default']}" if "default" in schema else ""
        fields.append(f"{name}{optional}: {_ts_type(schema)},{default}")
    return f"// {tool.description}\ntype {tool.name} = (_: {{\n" + "\n".join(fields) + "\n}) => any;\n\n"


def _ts_type(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"{_ts_type(schema.get('items', {}))}[]"
    return {"integer": "number", "object": "object"}.get(kind, kind)


def render(tok: HarmonyTokenizer, messages: Sequence[Message], generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation, ending with `<|start|>assistant` for a completion. Analysis
    from turns that already reached a final answer is dropped, as the format asks."""
    last_final = max((i for i, m in enumerate(messages) if m.role == "assistant" and m.channel == "final"), default=-1)
    ids: list[int] = []
    for i, m in enumerate(messages):
        if m.role == "assistant" and m.channel == "analysis" and i < last_final:
            continue
        ids += _message(tok, m)
    if generation_prompt:
        ids += [tok.ids["start"]] + tok.text("assistant")
    return ids


def _message(tok: HarmonyTokenizer, m: Message) -> list[int]:
    header = m.role + (f" to={m.recipient}" if m.recipient and m.role != "assistant" else "")
    ids = [tok.ids["start"]] + tok.text(header)
    if m.channel:
        ids += [tok.ids["channel"]] + tok.text(m.channel)
        if m.recipient and m.role == "assistant":
            ids += tok.text(f" to={m.recipient}")
        if m.content_type:
            ids += tok.text(" ") + [tok.ids["constrain"]] + tok.text(m.content_type)
    ids += [tok.ids["message"]] + tok.text(m.content)
    # A stored answer ends with <|end|>, not the <|return|> it was generated with.
    ids.append(tok.ids["call"] if m.role == "assistant" and m.recipient else tok.ids["end"])
    return ids


def conversation(today: date, instructions: str, user: str, reasoning: str = "medium",
                 history: Sequence[Message] = (), tools: Sequence[Tool] = ()) -> list[Message]:
    return [Message("system", system_content(today, reasoning, with_tools=bool(tools))),
            Message("developer", developer_content(instructions, tools)), *history, Message("user", user)]
