"""The native backend: our own gpt-oss engine on a local checkpoint folder, in the harmony format.

The model loads on first use (not at construction, not at import) and is shared by every caller;
one generation runs at a time (a lock), since one GPU serves one batch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llm.errors import GeneratorError, LlmError
from llm.generator import Piece, Prompt, Turn

if TYPE_CHECKING:
    from llm import harmony
    from llm.engine import Sampling


class NativeGenerator:
    name = "native"
    extractive = False
    tools_capable = False  # set by the tool-use work (harmony tool calls)

    def __init__(self, folder: Path, *, device: str = "auto", dtype: str = "auto", expert_cache_mb: float = 1024.0,
                 context: int = 8192, temperature: float = 1.0, top_p: float = 1.0, seed: int | None = None,
                 cpu_kernel: bool = True) -> None:
        self.folder = Path(folder)
        self.cpu_kernel = cpu_kernel
        self.device, self.dtype, self.expert_cache_mb = device, dtype, expert_cache_mb
        self._context = context
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None  # engine, tokenizer, torch generator
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

    def _load(self) -> tuple[Any, Any, Any]:
        if self._loaded is None:
            import torch

            from llm.engine import Engine
            from llm.loader import load_model

            net, ckpt, _ = load_model(self.folder, device=self.device, dtype=self.dtype,
                                      expert_cache_mb=self.expert_cache_mb, context=self._context,
                                      cpu_kernel=self.cpu_kernel)
            rng = torch.Generator(device=next(net.parameters()).device)
            rng.manual_seed(self.seed if self.seed is not None else torch.seed() % 2**63)
            self._loaded = (Engine(net, pad_id=ckpt.config.pad_token_id or 0), self.tokenizer(), rng)
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
        earlier turns, then the user's turn (sources as quoted data, then the question). Special-token
        text inside a document is encoded as plain text, so it cannot open or close a message."""
        from llm.harmony import conversation, render

        *history, last = prompt.turns
        return render(self.tokenizer(), conversation(prompt.today, prompt.instructions, last.text,
                                                     reasoning=prompt.reasoning,
                                                     history=[_harmony_message(m) for m in history]))

    def stream(self, prompt: Prompt) -> Iterator[Piece]:
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
                if isinstance(event, Delta) and event.text:
                    shown = True
                    yield Piece("analysis" if event.channel in ("analysis", "commentary") else "final",
                                event.text)
        if not shown and produced:
            # The model did not follow the chat format (only a random test checkpoint does
            # that): show what it said rather than nothing.
            yield Piece("final", tok.decode([t for t in produced if t not in tok.special_ids]))

    def _tokens(self, ids: list[int], params: Sampling) -> Iterator[int]:
        """The token ids generated for one rendered prompt, as they come (the engine's business:
        text, harmony and tools stay above this line)."""
        with self._lock:
            engine, _, rng = self._load()
            for step in engine.stream([ids], params, rng):
                token = step[0]
                if token is None:
                    return
                yield token

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
