"""The harmony chat format of gpt-oss, above the engine: rendering conversations to token ids and
parsing generated ids back into messages, channel by channel, as they stream.

    <|start|>{role}[ to={recipient}]<|channel|>{channel}[ <|constrain|>{type}]<|message|>{content}<|end|>

Special-token ids come from the tokenizer (a small test tokenizer works as well as the 200k one).
Text that merely *looks* like a special token (a document saying "<|start|>system") is encoded
as ordinary text, never as a control token.

Tools follow the published format (openai/harmony `docs/format.md` and its renderer): plain
functions are declared in the developer message under `# Tools` / `## functions`; a built-in tool
namespace such as `browser` (the browsing tool gpt-oss was trained with) in the system message,
with its description as `//` lines above `namespace browser { ... }`. A call renders as
`<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{args}<|call|>`
(the browser's on the analysis channel), its result as
`<|start|>functions.NAME to=assistant<|channel|>commentary<|message|>{result}<|end|>`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from llm.errors import CheckpointError
from llm.generator import Tool

__all__ = ["BROWSER_DESCRIPTION", "HarmonyTokenizer", "Message", "Tool", "call_channel", "conversation",
           "developer_content", "render", "system_content", "tools_section"]

SPECIALS = ("start", "end", "message", "channel", "constrain", "return", "call")
REASONING_LEVELS = ("low", "medium", "high")
IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
FUNCTIONS = "functions"
#: The browsing tool's description as gpt-oss was trained with it (openai-harmony's
#: `ToolNamespaceConfig.browser()`, the gpt-oss reference `SimpleBrowserTool.tool_config`); the
#: sources line names our library instead of the web.
BROWSER_DESCRIPTION = (
    "Tool for browsing.\n"
    "The `cursor` appears in brackets before each browsing display: `[{cursor}]`.\n"
    "Cite information from the tool using the following format:\n"
    "`【{cursor}†L{line_start}(-L{line_end})?】`, for example: `【6†L9-L11】` or `【8†L3】`.\n"
    "Do not quote more than 10 words directly from the tool output.\n"
    "sources=library")


@dataclass(frozen=True)
class Message:
    role: str  # system, developer, user, assistant, or a tool's name (functions.search)
    content: str
    channel: str | None = None  # analysis, commentary, final (assistant and tool messages)
    recipient: str | None = None  # a tool call's target (functions.search) or "assistant"
    content_type: str | None = None  # <|constrain|> type of a tool call's arguments, e.g. json


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
                   knowledge_cutoff: str = "2024-06", with_tools: bool = False, builtin_tools: str = "") -> str:
    """`with_tools`: function tools are declared (in the developer message); `builtin_tools`: a
    rendered `# Tools` section for a built-in namespace (browser), which lives here."""
    if reasoning not in REASONING_LEVELS:
        raise ValueError(f"reasoning must be one of {', '.join(REASONING_LEVELS)}")
    sections = [f"{identity}\nKnowledge cutoff: {knowledge_cutoff}\nCurrent date: {today.isoformat()}",
                f"Reasoning: {reasoning}"]
    if builtin_tools:
        sections.append(builtin_tools)
    channels = "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    if with_tools:
        channels += "\nCalls to these tools must go to the commentary channel: 'functions'."
    return "\n\n".join([*sections, channels])


def developer_content(instructions: str, tools: Sequence[Tool] = ()) -> str:
    parts = [f"# Instructions\n\n{instructions}"]
    if tools:
        parts.append(tools_section(FUNCTIONS, tools))
    return "\n\n".join(parts)


def tools_section(namespace: str, tools: Sequence[Tool], description: str = "") -> str:
    """`# Tools` with one namespace, laid out line for line as openai-harmony renders it."""
    lines = [f"## {namespace}\n"]
    lines += [f"// {line}" for line in description.splitlines()]
    lines.append(f"namespace {namespace} {{\n")
    for tool in tools:
        lines += [f"// {line}" for line in tool.description.splitlines()]
        if tool.parameters.get("properties"):
            lines.append(f"type {tool.name} = (_: {_ts_type(tool.parameters, '')}) => any;\n")
        else:
            lines.append(f"type {tool.name} = () => any;\n")
    lines.append(f"}} // namespace {namespace}")
    return "# Tools\n\n" + "\n".join(lines)


def _default(schema: dict[str, Any]) -> str:
    value = schema["default"]
    if isinstance(value, str):  # a plain string default is quoted, an enum's is not
        return f'// default: {value}' if schema.get("enum") else f'// default: "{value}"'
    return f"// default: {json.dumps(value)}"


def _ts_type(schema: dict[str, Any], indent: str) -> str:
    """A JSON schema as the TypeScript-like type harmony shows the model (the subset tools use:
    objects, arrays, enums, unions of types)."""
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        return " | ".join("number" if k == "integer" else str(k) for k in kind)
    if kind == "object" and "properties" in schema:
        required = set(schema.get("required") or [])
        out = "{\n"
        for name, prop in schema["properties"].items():
            if prop.get("description"):
                out += f"{indent}// {prop['description']}\n"
            out += f"{indent}{name}{'' if name in required else '?'}: {_ts_type(prop, indent + '    ')},"
            out += (" " + _default(prop) if "default" in prop else "") + "\n"
        return out + f"{indent}}}"
    if kind == "string" and schema.get("enum"):
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if kind == "array":
        return f"{_ts_type(schema['items'], indent)}[]" if "items" in schema else "Array<any>"
    return {"integer": "number", "number": "number", "boolean": "boolean", "string": "string"}.get(kind, "any")


def call_channel(namespace: str) -> str:
    """Where the model sends calls: functions on commentary (the system message says so); the
    built-in browser on analysis, as it was trained (openai/harmony docs, Built-in tools)."""
    return "commentary" if namespace == FUNCTIONS else "analysis"


def render(tok: HarmonyTokenizer, messages: Sequence[Message], generation_prompt: bool = True) -> list[int]:
    """Token ids of a conversation, ending with `<|start|>assistant` for a completion. Analysis
    from turns that already reached a final answer is dropped, as the format asks (a browser call
    on the analysis channel stays, with its result); the analysis of the turn in progress, before
    its tool calls, is kept."""
    last_final = max((i for i, m in enumerate(messages) if m.role == "assistant" and m.channel == "final"), default=-1)
    ids: list[int] = []
    for i, m in enumerate(messages):
        if m.role == "assistant" and m.channel == "analysis" and not m.recipient and i < last_final:
            continue
        ids += _message(tok, m)
    if generation_prompt:
        ids += [tok.ids["start"]] + tok.text("assistant")
    return ids


def _message(tok: HarmonyTokenizer, m: Message) -> list[int]:
    # The assistant's recipient goes in the channel part, as the model writes it and as the
    # published example continues a conversation; a tool's reply names its addressee by the role.
    header = m.role + (f" to={m.recipient}" if m.recipient and m.role != "assistant" else "")
    ids = [tok.ids["start"]] + tok.text(header)
    if m.channel:
        ids += [tok.ids["channel"]] + tok.text(m.channel)
        if m.recipient and m.role == "assistant":
            ids += tok.text(f" to={m.recipient}")
        if m.content_type:
            ids += tok.text(" ") + [tok.ids["constrain"]] + tok.text(m.content_type)
    ids += [tok.ids["message"]] + tok.text(m.content)
    # A stored answer ends with <|end|>, not the <|return|> it was generated with; a call with <|call|>.
    ids.append(tok.ids["call"] if m.role == "assistant" and m.recipient else tok.ids["end"])
    return ids


def conversation(today: date, instructions: str, user: str, reasoning: str = "medium",
                 history: Sequence[Message] = (), tools: Sequence[Tool] = (),
                 namespace: str = FUNCTIONS, after: Sequence[Message] = ()) -> list[Message]:
    """System, developer, the earlier turns, the user's turn, then `after` (this turn's tool
    rounds). Function tools are declared in the developer message, a built-in namespace in the
    system message (openai-harmony's layout for each)."""
    functions, builtin = tools, ""
    if namespace != FUNCTIONS and tools:
        description = BROWSER_DESCRIPTION if namespace == "browser" else ""
        functions, builtin = (), tools_section(namespace, tools, description)
    return [Message("system", system_content(today, reasoning, with_tools=bool(functions), builtin_tools=builtin)),
            Message("developer", developer_content(instructions, functions)), *history, Message("user", user),
            *after]
