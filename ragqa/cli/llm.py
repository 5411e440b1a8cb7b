"""`ragqa llm ...`: the gpt-oss engine from the command line."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from ragqa.cli.common import edge, print_json, settings

llm_app = typer.Typer(no_args_is_help=True, help="Run the gpt-oss engine directly.")
ModelOpt = Annotated[Path | None, typer.Option("--model", help="Checkpoint folder (default: RAGQA_MODEL_PATH).")]


def register(app: typer.Typer) -> None:
    """`ragqa llm ...` on the app."""
    app.add_typer(llm_app, name="llm")


def model_dir(given: Path | None) -> Path:
    from llm.errors import CheckpointError

    folder = given or settings().model_path
    if folder is None:
        raise CheckpointError("no model: pass --model DIR or set RAGQA_MODEL_PATH")
    return Path(folder)


@llm_app.command("generate")
@edge
def generate(
    model: ModelOpt = None,
    prompt: Annotated[str | None, typer.Option(help="A user message, sent in the harmony chat format.")] = None,
    token_ids: Annotated[str | None, typer.Option(help="Comma-separated ids, fed as they are.")] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token.")] = False,
    temperature: Annotated[float, typer.Option(min=0.0)] = 1.0,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 or bfloat16 (default: by device).")] = None,
    reasoning: Annotated[str, typer.Option(help="low, medium or high (with --prompt).")] = "medium",
    show_reasoning: Annotated[bool, typer.Option("--show-reasoning", help="Also print the analysis channel.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Generate from a prompt (chat format) or from raw token ids."""
    import torch

    from llm.engine import Engine, Sampling
    from llm.errors import LlmError
    from llm.harmony import HarmonyTokenizer, conversation, render
    from llm.harmony_parser import StreamParser
    from llm.loader import load_model

    if (prompt is None) == (token_ids is None):
        raise LlmError("give exactly one of --prompt and --token-ids")
    cfg = settings()
    folder = model_dir(model)
    net, ckpt, _ = load_model(folder, device=cfg.generator_device, dtype=dtype or cfg.generator_dtype,
                              expert_cache_mb=cfg.expert_cache_mb, context=cfg.context_tokens,
                              cpu_kernel=cfg.cpu_kernel)
    tok = HarmonyTokenizer.from_file(str(folder / "tokenizer.json"))
    generator = torch.Generator(device=next(net.parameters()).device)
    generator.manual_seed(seed if seed is not None else torch.seed() % 2**63)
    engine = Engine(net, pad_id=ckpt.config.pad_token_id or 0)
    if token_ids is not None:
        ids = _parse_ids(token_ids, ckpt.config.vocab_size)
        stops = ckpt.stop_ids() or tok.stop_ids
    else:
        msgs = conversation(date.today(), "Answer the user.", prompt or "", reasoning=reasoning)
        ids, stops = render(tok, msgs), tok.stop_ids
    params = Sampling(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, greedy=greedy,
                      stop_ids=tuple(stops))
    parser = StreamParser(tok) if prompt is not None else None
    out = _stream(engine.stream([ids], params, generator), parser, echo=not as_json, show_reasoning=show_reasoning)
    text = tok.decode(out)
    if as_json:
        result: dict[str, Any] = {"token_ids": out, "text": text}
        if parser is not None:
            result.update(answer=parser.final_text(), reasoning=parser.reasoning_text())
        print_json(result)
    elif parser is None:
        typer.echo(text)
    else:
        typer.echo()


def _stream(steps: Any, parser: Any, echo: bool, show_reasoning: bool) -> list[int]:
    """The generated token ids; with a harmony parser and `echo`, the final channel's text (and the
    analysis channel's with `show_reasoning`) is printed as it arrives."""
    from llm.harmony_parser import Delta

    out: list[int] = []
    for step in steps:
        token = step[0]
        if token is None:
            break
        out.append(token)
        if parser is None:
            continue
        for event in parser.feed(token):
            if echo and isinstance(event, Delta) and (event.channel == "final" or show_reasoning):
                typer.echo(event.text, nl=False)
    return out


@llm_app.command("make-tiny")
@edge
def make_tiny(
    folder: Annotated[Path, typer.Argument(help="Where to write the checkpoint.")],
    layers: Annotated[int, typer.Option(min=1)] = 2,
    hidden: Annotated[int, typer.Option(min=32, help="Multiple of 32.")] = 64,
    experts: Annotated[int, typer.Option(min=1)] = 8,
    experts_per_token: Annotated[int, typer.Option(min=1)] = 2,
    heads: Annotated[int, typer.Option(min=1)] = 4,
    kv_heads: Annotated[int, typer.Option(min=1)] = 2,
    sliding_window: Annotated[int, typer.Option(min=1)] = 128,
    seed: int = 0,
    intermediate: Annotated[int, typer.Option(min=0, help="Expert width, a multiple of 32 (0: hidden).")] = 0,
    head_dim: Annotated[int, typer.Option(min=0, help="0: hidden / heads (gpt-oss-20b: 64).")] = 0,
    vocab: Annotated[int, typer.Option(min=0, help="vocab_size (0: the test tokenizer's; 20b: 201088).")] = 0,
) -> None:
    """Write a random gpt-oss checkpoint of any shape in the published layout (MXFP4 experts),
    streamed to disk: gpt-oss-20b's is --layers 24 --hidden 2880 --heads 64 --head-dim 64
    --kv-heads 8 --experts 32 --experts-per-token 4 --vocab 201088."""
    from llm.errors import LlmError
    from llm.tiny import TinySpec, make_tiny_checkpoint

    intermediate = intermediate or hidden
    if not head_dim and hidden % heads:
        raise LlmError("hidden must be a multiple of heads, or give --head-dim")
    head_dim = head_dim or hidden // heads
    if hidden % 32 or intermediate % 32 or head_dim % 2 or experts_per_token > experts or heads % kv_heads:
        raise LlmError("hidden and intermediate must be multiples of 32, head-dim even; heads a multiple of "
                       "kv-heads; experts-per-token at most experts")
    spec = TinySpec(layers=layers, hidden=hidden, intermediate=intermediate, heads=heads, kv_heads=kv_heads,
                    head_dim=head_dim, experts=experts, experts_per_token=experts_per_token,
                    sliding_window=sliding_window, seed=seed, vocab=vocab)
    make_tiny_checkpoint(folder, spec)
    typer.echo(f"wrote {folder}")


def _parse_ids(text: str, vocab: int) -> list[int]:
    from llm.errors import LlmError

    try:
        ids = [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise LlmError("--token-ids takes comma-separated integers") from None
    if not ids or any(i < 0 or i >= vocab for i in ids):
        raise LlmError(f"--token-ids needs at least one id, each in 0..{vocab - 1}")
    return ids
