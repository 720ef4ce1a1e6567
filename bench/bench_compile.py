"""torch.compile vs eager on our own inference code (Toto first-patch pass, Kronos decoding), in one run.

Full-size random-init weights (Toto-Open-Base-1.0 shapes, 151M; Kronos-small + Kronos-Tokenizer-base),
written once by ``bench_engine.full_size_weights`` and loaded through ``load_toto``/``load_kronos``;
windows are cut from the bundled sample data. Library code is not changed: the compiled units are
swapped into the loaded model objects for the compiled runs and swapped back afterwards.

* Toto: ``first_patch_distribution`` with ``model.model.transformer`` (the ``_Transformer`` holding
  the 12 layers; patch embedding, scaler, unembedding and head stay eager) wrapped by
  ``torch.compile``, for the first batch size and then for further batch sizes (new shapes).
* Kronos: ``sample_kronos`` (horizon > 1, so the per-sample KV cache grows each step) with either
  ``blocks``: each ``model.transformer[i]`` (``TransformerBlock``; used by the context pass and by
  every decode step) compiled, or ``step``: the bound method ``model.continue_stream`` (one whole
  decode step: embeddings, 8 blocks with the growing cache, final norm, dependency-layer keys) compiled.
  Sampled paths are compared with eager ones drawn with the same seeds.

Per unit, compile variant (Toto: default and ``dynamic=True``; Kronos: the same, for both units;
others such as ``reduce-overhead`` behind ``--toto-variants``/``--kronos-variants``) and shape it
reports the first call (compile included) separately from the steady state (after ``--warmup`` calls,
the median of ``--repeats`` compiled calls, interleaved with as many eager calls of the same objects
under ``torch.compiler.set_stance("force_eager")``, so both sides see the same machine load), the
eager/compiled ratio, graphs compiled, recompiles (from Dynamo's recompile log, with the guards that
failed), graph breaks, and the largest difference to eager. Failures (exceptions, graph breaks, recompile-limit hits, outputs that
differ) are reported, not raised. By default every variant starts from an empty Inductor cache, so the
first-call times are cold compiles (``--warm-cache`` reuses the on-disk cache instead).

Run: ``.venv/bin/python bench/bench_compile.py`` (CPU: about 6 minutes on 2 idle cores, most of it
compiling; timings are only meaningful on an otherwise idle machine);
on a GPU: ``.venv/bin/python bench/bench_compile.py --device cuda --dtype bf16``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch._dynamo  # noqa: E402
from bench_engine import full_size_weights  # noqa: E402
from torch._dynamo.utils import counters  # noqa: E402

from tuner.core.data import bundled_data_path, load_dataset  # noqa: E402
from tuner.core.models.kronos import load_kronos, sample_kronos  # noqa: E402
from tuner.core.models.toto import TotoOutput, first_patch_distribution, load_toto  # noqa: E402
from tuner.core.windows import WindowSpec, make_periods  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
VARIANTS = {  # name -> torch.compile kwargs; combine with '+', e.g. reduce-overhead+dynamic
    "default": {},
    "dynamic": {"dynamic": True},
    "static": {"dynamic": False},
    "reduce-overhead": {"mode": "reduce-overhead"},
    "max-autotune": {"mode": "max-autotune"},
}


def variant_kwargs(name: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for part in name.split("+"):
        if part not in VARIANTS:
            raise argparse.ArgumentTypeError(f"variant {part!r}: allowed {sorted(VARIANTS)} (joined by '+')")
        kwargs.update(VARIANTS[part])
    return kwargs


# ------------------------------------------------------------------------------ Dynamo watching


class _Capture(logging.Handler):
    """Keeps Dynamo's recompile / graph-break / limit messages (instead of printing them)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.recompiles: list[str] = []
        self.breaks: list[str] = []
        self.limits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record must not break the benchmark
            return
        if "Recompiling function" in text:
            self.recompiles.append(text)
        elif "__graph_breaks" in record.name or text.startswith("Graph break"):
            self.breaks.append(text)
        elif "recompile_limit" in text or "cache_size_limit" in text:
            self.limits.append(text)


def install_capture(verbose: bool) -> _Capture:
    """Turn on Dynamo's recompile and graph-break logs and route them to a capture handler."""
    torch._logging.set_logs(recompiles=True, graph_breaks=True)
    capture = _Capture()
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if not isinstance(logger, logging.Logger) or "__trace" in name or not logger.handlers:
            continue
        if name != "torch" and not name.startswith("torch."):
            continue
        if not verbose:
            for handler in list(logger.handlers):
                if isinstance(handler, logging.StreamHandler):
                    logger.removeHandler(handler)
        logger.addHandler(capture)
    return capture


def _recompile_reason(text: str) -> str:
    lines = [line.strip() for line in text.splitlines()]
    function = lines[0].replace("Recompiling function ", "")
    function = function.split(" in ")[0] + " (" + Path(function.split(" in ")[-1]).name + ")"
    # One failed guard per cached entry, newest entry first.
    guards = [line[2:].split("#")[0].strip() for line in lines if re.match(r"- \d+/\d+: ", line)]
    shown = " | ".join(g[:90] for g in guards[:4]) + (f" | (+{len(guards) - 4})" if len(guards) > 4 else "")
    return f"{function}: {shown or '?'}"


@dataclass
class Snapshot:
    graphs: int
    frames: int
    breaks: int
    recompiles: int
    break_msgs: int
    limits: int


class Watch:
    """Dynamo counters and captured log records, read as differences between two points."""

    def __init__(self, capture: _Capture) -> None:
        self.capture = capture

    def now(self) -> Snapshot:
        return Snapshot(
            graphs=counters["stats"]["unique_graphs"], frames=counters["frames"]["ok"],
            breaks=sum(counters["graph_break"].values()), recompiles=len(self.capture.recompiles),
            break_msgs=len(self.capture.breaks), limits=len(self.capture.limits),
        )

    def since(self, s: Snapshot) -> dict[str, Any]:
        n = self.now()
        return {
            "graphs": n.graphs - s.graphs,
            "recompiles": n.recompiles - s.recompiles,
            "breaks": max(n.breaks - s.breaks, n.break_msgs - s.break_msgs),
            "limits": n.limits - s.limits,
            "recompile_reasons": [_recompile_reason(t) for t in self.capture.recompiles[s.recompiles:]],
            "break_reasons": [t.splitlines()[0] for t in self.capture.breaks[s.break_msgs:]],
            "limit_msgs": [t.splitlines()[0] for t in self.capture.limits[s.limits:]],
        }


# ------------------------------------------------------------------------------------ results


@dataclass
class Row:
    unit: str
    variant: str
    shape: str
    eager_s: float | None = None
    compiled_s: float | None = None
    first_s: float | None = None
    graphs: int | None = None
    recompiles: int | None = None
    breaks: int | None = None
    steady_recompiles: int = 0
    limit_hits: int = 0
    max_diff: float | None = None
    close: bool | None = None  # outputs within tolerance of eager
    repeatable: bool | None = None  # compiled output equal call to call
    note: str = ""
    error: str | None = None
    details: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.eager_s is None or not self.compiled_s:
            return None
        return self.eager_s / self.compiled_s

    def verdict(self, noise: float) -> str:
        if self.error:
            return "unstable (error)"
        if self.limit_hits:
            return "unstable (recompile limit hit: rest runs eager)"
        if self.steady_recompiles:
            return "unstable (recompiles in steady state)"
        if self.close is False:
            return "unstable (outputs differ)"
        if self.repeatable is False:
            return "unstable (not repeatable)"
        ratio = self.ratio
        if ratio is None:
            return "n/a"
        if ratio >= 1 + noise:
            return "stable & faster"
        if ratio <= 1 - noise:
            return "stable but slower"
        return f"stable, same (±{noise:.0%})"


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_summary(rows: list[Row], noise: float) -> None:
    wu, wv, ws = (max(len(h), *(len(getattr(r, k)) for r in rows)) + 2
                  for h, k in (("unit", "unit"), ("variant", "variant"), ("shape", "shape")))
    header = (f"{'unit':<{wu}}{'variant':<{wv}}{'shape':<{ws}}{'eager s':>9}{'compiled s':>11}{'ratio':>7}"
              f"{'1st call s':>11}{'graphs':>7}{'recomp':>7}{'breaks':>7}{'max|diff|':>11}  verdict")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.unit:<{wu}}{r.variant:<{wv}}{r.shape:<{ws}}{_fmt(r.eager_s, '.4f'):>9}"
              f"{_fmt(r.compiled_s, '.4f'):>11}{_fmt(r.ratio, '.2f'):>7}{_fmt(r.first_s, '.2f'):>11}"
              f"{_fmt(r.graphs, 'd'):>7}{_fmt(r.recompiles, 'd'):>7}{_fmt(r.breaks, 'd'):>7}"
              f"{_fmt(r.max_diff, '.2e'):>11}  {r.verdict(noise)}{'; ' + r.note if r.note else ''}")


# ----------------------------------------------------------------------------------- helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_call(fn: Callable[[], Any], device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


def steady(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int,
           on_call: Callable[[], None] = lambda: None) -> tuple[Any, float]:
    """Output of the last call and the median wall time of ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    times, out = [], None
    for _ in range(repeats):
        on_call()
        out, t = timed_call(fn, device)
        times.append(t)
    return out, statistics.median(times)


def interleaved(fn: Callable[[], Any], device: torch.device, repeats: int,
                on_mode: Callable[[str], None] = lambda mode: None) -> tuple[Any, float, float]:
    """Median eager and compiled wall times of ``repeats`` calls each, taken alternately (so both see
    the same machine load); eager calls run the same objects under ``set_stance("force_eager")``.
    Returns the last compiled output and the two medians."""
    eager_times, compiled_times, out = [], [], None
    for i in range(repeats):
        for mode in (("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")):
            on_mode(mode)
            if mode == "eager":
                with torch.compiler.set_stance("force_eager"):
                    eager_times.append(timed_call(fn, device)[1])
            else:
                out, t = timed_call(fn, device)
                compiled_times.append(t)
    return out, statistics.median(eager_times), statistics.median(compiled_times)


@contextlib.contextmanager
def swapped(obj: Any, name: str | int, new: Any) -> Iterator[None]:
    """``obj.name`` (or ``obj[name]`` for an int) replaced by ``new`` inside the block."""
    if isinstance(name, int):
        old = obj[name]
        obj[name] = new
        try:
            yield
        finally:
            obj[name] = old
        return
    had_own = name in vars(obj) or (isinstance(obj, torch.nn.Module) and name in obj._modules)
    old = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield
    finally:
        if had_own:
            setattr(obj, name, old)
        else:
            delattr(obj, name)  # a bound method shadowed by an instance attribute


@contextlib.contextmanager
def compile_scope(warm_cache: bool) -> Iterator[None]:
    """Forget compiled code; unless ``warm_cache``, also start from an empty Inductor cache."""
    torch._dynamo.reset()
    try:
        if warm_cache:
            yield
        else:
            try:
                from torch._inductor.utils import fresh_cache
            except ImportError:  # older torch
                from torch._inductor.utils import fresh_inductor_cache as fresh_cache
            with fresh_cache():
                yield
    finally:
        torch._dynamo.reset()


def _error_text(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:160]}"


def _describe(row: Row, seen: dict[str, Any], steady_seen: dict[str, Any]) -> None:
    row.graphs = seen["graphs"] + steady_seen["graphs"]
    row.recompiles = seen["recompiles"] + steady_seen["recompiles"]
    row.breaks = seen["breaks"] + steady_seen["breaks"]
    row.steady_recompiles = max(steady_seen["recompiles"], steady_seen["graphs"])
    row.limit_hits = seen["limits"] + steady_seen["limits"]
    for d in (seen, steady_seen):
        row.details += [f"recompile: {r}" for r in d["recompile_reasons"]]
        row.details += [f"graph break: {r}" for r in d["break_reasons"]]
        row.details += [f"limit: {r}" for r in d["limit_msgs"]]


# -------------------------------------------------------------------------------------- Toto


def toto_diff(eager: TotoOutput, compiled: TotoOutput, rtol: float, atol: float) -> tuple[float, bool]:
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in zip(eager, compiled, strict=True))
    close = all(torch.allclose(b.float(), a.float(), rtol=rtol, atol=atol)
                for a, b in zip(eager, compiled, strict=True))
    return diff, close


def bench_toto(args, weights: Path, device: torch.device, watch: Watch, rows: list[Row]) -> None:
    model = load_toto(weights / "toto", device=device, dtype=DTYPES[args.dtype])
    context_length = args.toto_context
    bars = load_dataset(bundled_data_path(), symbols=[args.symbol]).get(args.symbol)
    batch = make_periods(bars, WindowSpec(val_windows=max(args.toto_windows), test_windows=1),
                         context_length).validation
    closes = torch.tensor(batch.close_context, dtype=torch.float32)
    rtol, atol = (1e-3, 1e-4) if args.dtype == "fp32" else (5e-2, 5e-2)
    print(f"\n== Toto: first_patch_distribution, {args.symbol} windows of {closes.shape[1]} bars, "
          f"batch sizes {args.toto_windows}; compiled unit: model.model.transformer "
          f"({type(model.model.transformer).__name__}, {len(model.model.transformer.layers)} layers) ==",
          flush=True)

    eager: dict[int, tuple[TotoOutput, float]] = {}
    for n in args.toto_windows:
        out, t = steady(lambda n=n: first_patch_distribution(model, closes[:n]), device, args.warmup,
                        args.repeats)
        eager[n] = (out, t)
        print(f"  eager reference W={n}: {t:.4f} s (median of {args.repeats})", flush=True)

    transformer = model.model.transformer
    for variant in args.toto_variants:
        kwargs = variant_kwargs(variant)
        print(f"  -- variant {variant}: torch.compile(model.model.transformer, **{kwargs})", flush=True)
        failed: str | None = None
        with compile_scope(args.warm_cache):
            compiled = torch.compile(transformer, **kwargs)
            with swapped(model.model, "transformer", compiled):
                for index, n in enumerate(args.toto_windows):
                    row = Row("toto first_patch_distribution", variant,
                              f"W={n}" + (" (new)" if index else ""))
                    rows.append(row)
                    if failed:
                        row.error, row.note = failed, "skipped after the error above"
                        continue
                    try:
                        before = watch.now()
                        call = lambda n=n: first_patch_distribution(model, closes[:n])  # noqa: E731
                        first, row.first_s = timed_call(call, device)
                        for _ in range(args.warmup):
                            call()
                        seen = watch.since(before)
                        before = watch.now()
                        out, row.eager_s, row.compiled_s = interleaved(call, device, args.repeats)
                        _describe(row, seen, watch.since(before))
                        row.max_diff, row.close = toto_diff(eager[n][0], out, rtol, atol)
                        row.repeatable = all(torch.equal(a, b) for a, b in zip(first, out, strict=True))
                    except Exception as e:  # an honest evaluation: record and go on
                        failed = row.error = _error_text(e)
                        row.details.append(traceback.format_exc(limit=-3).strip())
                    _print_row_details(row)


# ------------------------------------------------------------------------------------ Kronos


def bench_kronos(args, weights: Path, device: torch.device, watch: Watch, rows: list[Row]) -> None:
    model, tokenizer = load_kronos(weights / "kronos", weights / "kronos-tokenizer", device=device,
                                   dtype=DTYPES[args.dtype])
    context_length = max(args.kronos_contexts)
    bars = load_dataset(bundled_data_path(), symbols=[args.symbol]).get(args.symbol)
    spec = WindowSpec(val_windows=args.kronos_windows, test_windows=1, horizon=args.kronos_horizon)
    batch = make_periods(bars, spec, context_length).validation
    context = torch.tensor(batch.context, dtype=torch.float32)
    context_times = torch.tensor(batch.context_times.astype(np.int64))
    future_times = torch.tensor(batch.future_times.astype(np.int64))
    seeds = list(range(len(batch)))
    print(f"\n== Kronos-small + Tokenizer-base: sample_kronos, {args.symbol}, {len(batch)} window(s) of "
          f"{context.shape[1]} bars, horizon {args.kronos_horizon}, S in {args.kronos_samples}, "
          f"contexts {args.kronos_contexts}, temperature {args.kronos_temperature}, top_p 0.9 ==",
          flush=True)
    # The first shape is compiled first; the others are new shapes (other S, other context length
    # as the engine's max_context gives).
    s0, c0 = args.kronos_samples[0], args.kronos_contexts[0]
    shapes = ([(s0, c0)] + [(s, c0) for s in args.kronos_samples[1:]]
              + [(s0, c) for c in args.kronos_contexts[1:]])

    def run(shape: tuple[int, int]) -> torch.Tensor:
        s, c = shape  # S paths, the last c bars of context (as batch.truncated(max_context) does)
        return sample_kronos(model, tokenizer, context[:, -c:], context_times[:, -c:], future_times,
                             temperatures=[args.kronos_temperature] * s, top_p=0.9, top_k=0, clip=2.0,
                             seeds=seeds)

    def label(shape: tuple[int, int]) -> str:
        return f"S={shape[0]} L={shape[1]}"

    # Decode-step seconds of each timed call, by mode (the last entry is the call running now).
    step_time: dict[str, Any] = {"mode": "eager", "eager": [0.0], "compiled": [0.0]}

    def timing(step: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            _sync(device)
            t0 = time.perf_counter()
            out = step(*a, **k)
            _sync(device)
            step_time[step_time["mode"]][-1] += time.perf_counter() - t0
            return out
        return wrapper

    def set_mode(mode: str) -> None:  # called before each timed call
        step_time["mode"] = mode
        step_time[mode].append(0.0)

    def decode_median(mode: str) -> float:
        return statistics.median(step_time[mode][-args.repeats:])

    eager: dict[tuple[int, int], tuple[torch.Tensor, float, float]] = {}
    for s in shapes:
        with swapped(model, "continue_stream", timing(model.continue_stream)):
            for _ in range(args.warmup):
                run(s)
            out, t = steady(lambda s=s: run(s), device, 0, args.repeats, lambda: set_mode("eager"))
            eager[s] = (out, t, decode_median("eager"))
        print(f"  eager reference {label(s)}: {t:.4f} s per call (median of {args.repeats}), of which decode steps "
              f"(model.continue_stream x {args.kronos_horizon - 1}) {eager[s][2]:.4f} s", flush=True)

    def units() -> dict[str, Callable[[dict[str, Any]], contextlib.AbstractContextManager]]:
        def blocks(kwargs: dict[str, Any]) -> contextlib.AbstractContextManager:
            stack = contextlib.ExitStack()
            for i, block in enumerate(model.transformer):
                stack.enter_context(swapped(model.transformer, i, torch.compile(block, **kwargs)))
            return stack

        def step(kwargs: dict[str, Any]) -> contextlib.AbstractContextManager:
            return swapped(model, "continue_stream", torch.compile(model.continue_stream, **kwargs))

        return {"blocks": blocks, "step": step}

    names = {"blocks": f"kronos model.transformer[0..{len(model.transformer) - 1}]",
             "step": "kronos model.continue_stream"}
    for unit in args.kronos_units:
        for variant in args.kronos_variants:
            kwargs = variant_kwargs(variant)
            print(f"  -- unit {unit} ({names[unit]}), variant {variant}: torch.compile(..., **{kwargs})",
                  flush=True)
            failed: str | None = None
            with compile_scope(args.warm_cache):
                with units()[unit](kwargs), swapped(model, "continue_stream", timing(model.continue_stream)):
                    for index, s in enumerate(shapes):
                        row = Row(names[unit], variant, label(s) + (" (new)" if index else ""))
                        rows.append(row)
                        if failed:
                            row.error, row.note = failed, "skipped after the error above"
                            continue
                        try:
                            before = watch.now()
                            set_mode("compiled")
                            first, row.first_s = timed_call(lambda s=s: run(s), device)
                            for _ in range(args.warmup):
                                run(s)
                            seen = watch.since(before)
                            before = watch.now()
                            out, row.eager_s, row.compiled_s = interleaved(lambda s=s: run(s), device,
                                                                           args.repeats, set_mode)
                            decode = {m: decode_median(m) for m in ("eager", "compiled")}
                            _describe(row, seen, watch.since(before))
                            ref = eager[s][0]
                            row.max_diff = float((out - ref).abs().max())
                            same = int((out == ref).flatten(2).all(-1).sum())
                            total = ref.shape[0] * ref.shape[1]
                            # Rounding can flip a sampled token, which changes that path from there on.
                            row.close = same >= 0.9 * total
                            row.repeatable = bool(torch.equal(first, out))
                            row.note = (f"paths identical {same}/{total}; decode steps "
                                        f"{decode['eager']:.4f} -> {decode['compiled']:.4f} s")
                        except Exception as e:  # an honest evaluation: record and go on
                            failed = row.error = _error_text(e)
                            row.details.append(traceback.format_exc(limit=-3).strip())
                        _print_row_details(row)


def _print_row_details(row: Row) -> None:
    if row.error:
        print(f"     {row.shape}: FAILED {row.error}", flush=True)
    else:
        print(f"     {row.shape}: first call {row.first_s:.2f} s, steady {row.compiled_s:.4f} s "
              f"(eager {row.eager_s:.4f} s), graphs {row.graphs}, recompiles {row.recompiles}, "
              f"graph breaks {row.breaks}, max|diff| {row.max_diff:.2e}"
              + (f"; {row.note}" if row.note else ""), flush=True)
    seen = set()
    for line in row.details:
        if line not in seen:
            seen.add(line)
            print("       " + line.replace("\n", "\n       "), flush=True)


# -------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                        help="autocast dtype of the models (bf16/fp16: CUDA only)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--weights", type=Path,
                        default=Path.home() / ".cache" / "forecast-tuner" / "bench-full-size",
                        help="full-size random-init checkpoints (written there on first use)")
    parser.add_argument("--symbol", default="AAPL", help="bundled sample symbol the windows come from")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--noise", type=float, default=0.10,
                        help="ratios within 1 ± noise count as 'same'")
    parser.add_argument("--warm-cache", action="store_true",
                        help="reuse the on-disk Inductor cache (first calls are then not cold compiles)")
    parser.add_argument("--recompile-limit", type=int, default=None,
                        help="torch._dynamo.config.recompile_limit (default: torch's own)")
    parser.add_argument("--verbose", action="store_true", help="also print Dynamo's own log lines")
    parser.add_argument("--skip-toto", action="store_true")
    parser.add_argument("--skip-kronos", action="store_true")
    parser.add_argument("--toto-context", type=int, default=512,
                        help="context bars per window (the toto family's context_length)")
    parser.add_argument("--toto-windows", type=int, nargs="+", default=[4, 2, 6],
                        help="batch sizes (windows per pass); the first is compiled, the rest are new shapes")
    parser.add_argument("--toto-variants", type=variant_kwargs_name, nargs="+", default=["default", "dynamic"],
                        help=f"torch.compile variants: {', '.join(VARIANTS)}, or joined by '+'")
    parser.add_argument("--kronos-windows", type=int, default=1)
    parser.add_argument("--kronos-horizon", type=int, default=8,
                        help="bars sampled per path (>1 exercises the growing KV cache)")
    parser.add_argument("--kronos-samples", type=int, nargs="+", default=[32, 16, 48],
                        help="sample paths S; the first is compiled, the rest are new shapes")
    parser.add_argument("--kronos-contexts", type=int, nargs="+", default=[256, 224],
                        help="context bars (the engine's max_context choices; kronos_standard's "
                        "context_length is 256); the rest are new shapes at the first S")
    parser.add_argument("--kronos-temperature", type=float, default=0.2)
    parser.add_argument("--kronos-units", nargs="+", choices=["blocks", "step"], default=["blocks", "step"])
    parser.add_argument("--kronos-variants", type=variant_kwargs_name, nargs="+", default=["default", "dynamic"])
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.dtype != "fp32" and device.type != "cuda":
        parser.error(f"--dtype {args.dtype} uses CUDA autocast; pass --device cuda")
    if args.kronos_horizon < 2:
        print("note: --kronos-horizon 1 never calls model.continue_stream (no decode steps)")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.recompile_limit is not None:
        torch._dynamo.config.recompile_limit = args.recompile_limit
    capture = install_capture(args.verbose)
    watch = Watch(capture)
    weights = full_size_weights(args.weights)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"torch {torch.__version__}, device {device} ({name}), dtype {args.dtype}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f}; recompile limit "
          f"{getattr(torch._dynamo.config, 'recompile_limit', None)}; "
          f"{'warm' if args.warm_cache else 'cold (fresh per variant)'} Inductor cache; "
          f"steady = median of {args.repeats} after {args.warmup} warm-up", flush=True)

    rows: list[Row] = []
    start = time.perf_counter()
    for enabled, bench in ((not args.skip_toto, bench_toto), (not args.skip_kronos, bench_kronos)):
        if not enabled:
            continue
        try:
            bench(args, weights, device, watch, rows)
        except Exception as e:  # e.g. loading failed: report it, keep the rest
            print(f"  {bench.__name__} FAILED: {_error_text(e)}\n{traceback.format_exc()}", flush=True)
            rows.append(Row(bench.__name__, "-", "-", error=_error_text(e)))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\n== summary (total {time.perf_counter() - start:.0f} s, load average now {load:.2f}); "
          "eager/compiled s = steady-state medians per call, taken interleaved; ratio = eager / compiled; "
          "1st call = first compiled call at that shape, compile included; graphs/recomp/breaks = "
          "graphs compiled, recompiles and graph breaks at that shape ==")
    print_summary(rows, args.noise)


def variant_kwargs_name(name: str) -> str:
    variant_kwargs(name)  # validate
    return name


if __name__ == "__main__":
    main()
