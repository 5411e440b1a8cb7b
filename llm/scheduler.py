"""Continuous batching: one scheduler thread owns the model and serves many requests at once.

A request (prompt token ids, its Sampling, its own torch.Generator) waits in a bounded queue,
joins the running batch between steps when a slot is free, and leaves when it finishes or its
caller goes away (the token stream closed or garbage collected): no tokens are generated for
nobody. Each step runs the new tokens of every running sequence through the model together
(GptOss.step): one token per decoding sequence, plus prompt chunks of joining ones, at most
`prefill_chunk` prompt tokens per step so that running answers keep streaming while a long
prompt is read. Each sequence has its own slot in the KV cache (SlotCache; sliding layers keep
only their window). Past the queue, submit refuses with a "busy, try again" GeneratorError.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator, Sequence

import torch

from llm.engine import Sampling, sample
from llm.errors import GeneratorError
from llm.model import GptOss, StepPlan

log = logging.getLogger(__name__)
_DONE = object()  # the end of a request's tokens


class Request:
    """One prompt's state in the scheduler (its thread alone changes it, except `cancelled`)."""

    def __init__(self, ids: Sequence[int], params: Sampling, generator: torch.Generator | None) -> None:
        self.ids = list(ids)
        self.params = params
        self.generator = generator
        self.stop = set(params.stop_ids)
        self.out: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.cancelled = False
        self.slot = -1
        self.length = 0  # positions in its cache slot so far
        self.last = -1  # the token to feed next (the last one sampled)
        self.generated = 0
        self.steps = 0  # model steps this request took part in

    @property
    def prefilling(self) -> bool:
        return self.length < len(self.ids)


class TokenStream(Iterator[int]):
    """The tokens of one request, as they come. Closing it (or dropping it) cancels the request."""

    def __init__(self, request: Request, scheduler: Scheduler) -> None:
        self.request = request
        self._scheduler = scheduler
        self._finished = False

    def __next__(self) -> int:
        if self._finished:
            raise StopIteration
        item = self.request.out.get()
        if item is _DONE:
            self._finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        assert isinstance(item, int)
        return item

    def close(self) -> None:
        if not self._finished:
            self._finished = True
            self.request.cancelled = True
            self._scheduler.wake()

    def __del__(self) -> None:
        self.close()


class Scheduler:
    def __init__(self, model: GptOss, *, max_batch: int = 16, max_queue: int = 64, prefill_chunk: int = 512) -> None:
        if max_batch < 1 or max_queue < 0 or prefill_chunk < 1:
            raise ValueError("max_batch and prefill_chunk must be at least 1, max_queue at least 0")
        self.model = model
        self.device = next(model.parameters()).device
        self.max_batch, self.max_queue, self.prefill_chunk = max_batch, max_queue, prefill_chunk
        self.vocab = model.config.vocab_size
        self.cache = model.new_slot_cache(max_batch)
        self.steps = 0  # model steps run so far
        self.peak_batch = 0  # the most sequences one step has served
        self._cond = threading.Condition()
        self._waiting: deque[Request] = deque()
        self._running: list[Request] = []  # index == cache slot
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- callers' side -------------------------------------------------------------------
    def submit(self, ids: Sequence[int], params: Sampling, generator: torch.Generator | None = None) -> TokenStream:
        """Queue a prompt; its tokens arrive on the returned stream. Raises GeneratorError when
        the queue is full (busy) or the scheduler is closed."""
        if not ids or params.max_new_tokens < 1:
            raise ValueError("every prompt needs at least one token, and every answer room for one")
        if min(ids) < 0 or max(ids) >= self.vocab:
            raise ValueError(f"token ids must lie in 0..{self.vocab - 1}")
        request = Request(ids, params, generator)
        with self._cond:
            if self._closed:
                raise GeneratorError("the model has been shut down")
            if len(self._waiting) >= self.max_queue and len(self._running) + len(self._waiting) >= self.max_batch:
                raise GeneratorError(f"the model is busy ({len(self._running)} answers running, "
                                     f"{len(self._waiting)} waiting): try again in a moment")
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="llm-scheduler", daemon=True)
                self._thread.start()
                atexit.register(self.close)  # stop between steps, not inside one, when the process ends
            self._cond.notify_all()
        return TokenStream(request, self)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def active(self) -> tuple[int, int]:
        """(running, waiting) requests now."""
        with self._cond:
            return len(self._running), len(self._waiting)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no request is running or waiting; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._running and not self._waiting, timeout)

    def close(self) -> None:
        """Stop after the current step; running and waiting requests end with an error."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()

    # ---- the scheduler thread ------------------------------------------------------------
    def _loop(self) -> None:
        try:
            with torch.inference_mode():  # the cache's tensors are inference tensors: all work here
                self._serve()
        finally:  # closed, or a bug: nobody waits forever
            with self._cond:
                self._closed = True
                for request in [*self._running, *self._waiting]:
                    request.out.put(GeneratorError("the model has been shut down"))
                self._running.clear()
                self._waiting.clear()
                self._cond.notify_all()

    def _serve(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                self._admit()
                if not self._running:
                    self._cond.notify_all()  # idle (wait_idle)
                    self._cond.wait_for(lambda: self._closed or bool(self._waiting))
                    if self._closed:
                        return
                    continue
            try:
                self._step()
            except Exception as exc:  # every running caller hears of it; the thread lives on
                log.exception("generation step failed")
                error = GeneratorError(f"generation failed: {exc}")
                for request in list(self._running):
                    self._finish(request, error)

    def _admit(self) -> None:
        """Under the lock: drop cancelled requests, then fill free slots from the queue."""
        for request in [r for r in self._running if r.cancelled]:
            self._leave(request)
        self._waiting = deque(r for r in self._waiting if not r.cancelled)
        while self._waiting and len(self._running) < self.max_batch:
            request = self._waiting.popleft()
            request.slot = len(self._running)
            self._running.append(request)

    def _leave(self, request: Request) -> None:
        """Free the request's slot; the last running sequence moves into it, so that slots stay
        0..n-1 (decoding reads a slice of the cache, not a gather)."""
        last = self._running.pop()
        if last is not request:
            self.cache.move(last.slot, request.slot)
            last.slot = request.slot
            self._running[request.slot] = last
        request.slot = -1

    def _finish(self, request: Request, end: object = _DONE) -> None:
        request.out.put(end)
        with self._cond:
            if request.slot >= 0:
                self._leave(request)

    def _step(self) -> None:
        """One model step over every running sequence: decode one token each, prefill up to
        `prefill_chunk` prompt tokens of joining ones; sample and deliver."""
        decoding = [r for r in self._running if not r.prefilling]
        tokens = [r.last for r in decoding]
        positions = [r.length for r in decoding]
        chunks: list[tuple[int, int, int, int]] = []
        prefilled: list[Request] = []
        budget = self.prefill_chunk
        for r in self._running:
            if not r.prefilling or budget <= 0:
                continue
            take = min(budget, len(r.ids) - r.length)
            chunks.append((r.slot, len(tokens), take, r.length))
            tokens += r.ids[r.length:r.length + take]
            positions += range(r.length, r.length + take)
            prefilled.append(r)
            budget -= take
        slots = [r.slot for r in decoding]
        plan = StepPlan(decoding=len(decoding), slots=torch.tensor(slots, device=self.device),
                        positions=torch.tensor(positions, device=self.device), chunks=tuple(chunks),
                        prefix=slots == list(range(len(slots))), longest=max(positions[:len(decoding)], default=-1) + 1)
        logits = self.model.step(torch.tensor(tokens, device=self.device), plan, self.cache)
        self.steps += 1
        for r, (_, _, take, _) in zip(prefilled, chunks):
            r.length += take
        for r in decoding:
            r.length += 1
        rows = decoding + prefilled
        self.peak_batch = max(self.peak_batch, len(rows))
        for r in rows:
            r.steps += 1
        greedy = logits.argmax(dim=-1).tolist()
        for i, r in enumerate(rows):
            if r.prefilling or r.cancelled:
                continue  # a prompt chunk that is not its last: nothing to sample yet
            if r.params.greedy or r.params.temperature <= 0:
                token = greedy[i]
            else:
                token = int(sample(logits[i:i + 1], r.params, r.generator).item())
            r.generated += 1
            r.out.put(token)
            if token in r.stop or r.generated >= r.params.max_new_tokens:
                self._finish(r)
            else:
                r.last = token
