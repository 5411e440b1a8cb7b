"""The native backend: our own gpt-oss engine on a local checkpoint folder, in the harmony format.

The model loads on first use (not at construction, not at import) and is shared by every caller;
generations run together: a scheduler thread batches every caller's tokens (llm/scheduler.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm.errors import GeneratorError, LlmError
from llm.generator import Piece, Prompt, ToolCall, ToolStep, Turn, new_call_id

if TYPE_CHECKING:
    from llm import harmony
    from llm.engine import Sampling
    from llm.harmony_parser import StreamParser


class NativeGenerator:
    name = "native"
    extractive = False
    tools_capable = True  # harmony tool calls: rendered, parsed, stopped on <|call|>

    def __init__(self, folder: Path, *, device: str = "auto", dtype: str = "auto", expert_cache_mb: float = 1024.0,
                 context: int = 8192, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 cpu_kernel: bool = True, queue: int = 64) -> None:
        self.folder = Path(folder)
        self.queue = queue  # requests waiting past the running batch before 'busy'
        self.cpu_kernel = cpu_kernel
        self.device, self.dtype, self.expert_cache_mb = device, dtype, expert_cache_mb
        self._context = context
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None  # scheduler, seed generator
        self._tokenizer: Any = None

    # ---- loading ---------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from llm.harmony import HarmonyTokenizer

            path = self.folder / "tokenizer.json"
            if not path.is_file():
                raise GeneratorError(f"no tokenizer.json in the model folder {self.folder}")
            self._tokenizer = HarmonyTokenizer.from_file(str(path))
        return self._tokenizer

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            import torch

            from llm.loader import load_model
            from llm.scheduler import Scheduler

            with self._lock:  # two first callers at once load the model once
                if self._loaded is None:
                    net, _, _ = load_model(self.folder, device=self.device, dtype=self.dtype,
                                           expert_cache_mb=self.expert_cache_mb, context=self._context,
                                           cpu_kernel=self.cpu_kernel)
                    # Seeds for each request's own generator: the same seed gives the same answers
                    # to the same questions asked in the same order, whatever else runs beside them.
                    seeds = torch.Generator().manual_seed(self.seed if self.seed is not None
                                                          else torch.seed() % 2**63)
                    self._loaded = (Scheduler(net, max_queue=self.queue), seeds)
        return self._loaded

    def check(self) -> str | None:
        from llm.checkpoint import Checkpoint, ensure_fits, estimate_memory
        from llm.loader import resolve_device, resolve_dtype

        try:
            self.tokenizer()
            if self._loaded is None:
                dev = resolve_device(self.device)
                config = Checkpoint(self.folder).config
                ensure_fits(estimate_memory(config, resolve_dtype(self.dtype, dev), self.expert_cache_mb,
                                            context=self._context), dev)
        except LlmError as exc:
            return str(exc)
        return None

    # ---- generation ------------------------------------------------------------------------
    def render(self, prompt: Prompt) -> list[int]:
        """The prompt's token ids: system (date, cutoff, reasoning), developer (instructions), the
        earlier turns, then the user's turn (sources as quoted data, then the question), then this
        answer's tool rounds (`Prompt.steps`). Offered tools are declared in harmony's layout for
        their namespace. Special-token text inside a document or a tool's result is encoded as
        plain text, so it cannot open or close a message."""
        from llm.harmony import conversation, render

        *history, last = prompt.turns
        after = [m for step in prompt.steps for m in _step_messages(step, prompt.tool_namespace)]
        return render(self.tokenizer(), conversation(prompt.today, prompt.instructions, last.text,
                                                     reasoning=prompt.reasoning,
                                                     history=[_harmony_message(m) for m in history],
                                                     tools=prompt.tools, namespace=prompt.tool_namespace,
                                                     after=after))

    def stream(self, prompt: Prompt) -> Iterator[Piece | ToolCall]:
        """Reasoning and answer as Pieces; with tools offered, a message the model addresses to a
        tool ends the stream as one ToolCall, its arguments unparsed. A malformed call (no
        recipient, no <|message|>, a tool of another namespace) is still a ToolCall, with the raw
        text, so the caller answers it with an error as the tool's result. Without tools offered, a
        call ends the stream with no answer (never the call's text shown as one)."""
        from llm.engine import Sampling
        from llm.harmony_parser import Delta, StreamParser

        tok = self.tokenizer()
        ids = self.render(prompt)
        budget = min(prompt.max_tokens, self._context - len(ids))
        if budget < 1:
            raise GeneratorError(f"the prompt ({len(ids)} tokens) leaves no room for an answer in "
                                 f"{self._context} tokens")
        params = Sampling(max_new_tokens=budget, temperature=self.temperature, top_p=self.top_p,
                          stop_ids=tok.stop_ids)
        parser = StreamParser(tok)
        produced: list[int] = []
        shown = False
        for token in self._tokens(ids, params):
            produced.append(token)
            for event in parser.feed(token):
                # A call's arguments are not reasoning: they come back as the ToolCall.
                if isinstance(event, Delta) and event.text and event.recipient is None:
                    shown = True
                    yield Piece("analysis" if event.channel in ("analysis", "commentary") else "final",
                                event.text)
        parser.flush()
        call = _tool_call(parser, prompt)
        if call is not None and prompt.tools:
            yield call
        elif call is None and not shown and produced:
            # The model did not follow the chat format (only a random test checkpoint does
            # that): show what it said rather than nothing.
            yield Piece("final", tok.decode([t for t in produced if t not in tok.special_ids]))

    def _tokens(self, ids: list[int], params: Sampling) -> Iterator[int]:
        """The token ids generated for one rendered prompt, as they come (the engine's business:
        text, harmony and tools stay above this line)."""
        import torch

        scheduler, seeds = self._load()
        with self._lock:
            seed = int(torch.randint(0, 2**62, (1,), generator=seeds))
        rng = torch.Generator(device=scheduler.device).manual_seed(seed)
        stream = scheduler.submit(ids, params, rng)  # GeneratorError when busy: the caller says so
        try:
            yield from stream
        finally:  # the caller went away (closed or dropped this iterator): stop generating for it
            stream.close()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer().text(text))

    @property
    def context_tokens(self) -> int:
        return self._context

    def describe(self) -> dict[str, str]:
        return {"backend": "native", "model": str(self.folder), "context": str(self._context),
                "tokenizer": "the checkpoint's tokenizer.json (harmony)"}


def _harmony_message(m: Turn) -> harmony.Message:
    """An earlier turn in harmony: the user's as it was, an answer as a `final` message (its
    reasoning is not kept: harmony drops the analysis of turns that reached a final answer)."""
    from llm import harmony

    if m.role == "assistant":
        return harmony.Message("assistant", m.text, channel="final")
    return harmony.Message("user", m.text)


def _step_messages(step: ToolStep, namespace: str) -> list[harmony.Message]:
    """One tool round in harmony: this turn's reasoning so far (kept until the final answer), the
    call as the model made it, and the tool's result addressed back to the assistant on the same
    channel (commentary for functions, analysis for the built-in browser)."""
    from llm import harmony

    channel = harmony.call_channel(namespace)
    # A name with a dot was a call to another namespace (malformed): keep it as the model wrote it.
    recipient = step.call.name if "." in step.call.name else f"{namespace}.{step.call.name}"
    out = [harmony.Message("assistant", step.reasoning, channel="analysis")] if step.reasoning else []
    return [*out, harmony.Message("assistant", step.call.arguments, channel=channel, recipient=recipient,
                                  content_type="json"),
            harmony.Message(recipient, step.result, channel=channel, recipient="assistant")]


def _tool_call(parser: StreamParser, prompt: Prompt) -> ToolCall | None:
    """The call the generation ended with, if it ended with one: the last message addressed to a
    tool, or anything stopped by <|call|>. The name loses the offered namespace (`functions.search`
    -> `search`); any other recipient is kept whole, so the caller sees a tool it never offered."""
    if not parser.messages:  # <|call|> always ends a message, so no message: no call
        return None
    last = parser.messages[-1]
    if not (last.role == "assistant" and last.recipient) and parser.stopped != "call":
        return None
    name = (last.recipient or "").removeprefix(f"{prompt.tool_namespace}.")
    # A call cut short before <|message|> has no content: its raw header is what the model wrote.
    return ToolCall(name=name, arguments=last.content or parser.raw_header, call_id=new_call_id())
