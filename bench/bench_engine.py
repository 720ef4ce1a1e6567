"""Our engine vs a predecessor-style tuning loop, on the same workload, side by side in one run.

Workload: 2 symbols × 3 families × N trials on the bundled data, full-size random-init weights
(Toto-Open-Base-1.0 shapes, 151M; Kronos-small + Kronos-Tokenizer-base shapes), the real
search spaces and the same seeded TPE studies in both arms, so both evaluate the same configs.

(a) ours: ``tuner.engine.experiment.run_experiment`` on a local Ray (model actors, one-pass Toto,
    prefix-shared Kronos, sample banks, batching), including Ray start, weight loads and the
    test-period re-scoring of winners that the predecessor never did;
(b) predecessor-style: Optuna in-process, the model reloaded for every trial, one forecast call
    per window in sequence, upstream's samplers (toto-ts ``TotoForecaster``; kronos-finance
    ``KronosPredictor``, which copies the context once per sample; the ensemble calls it once
    per temperature rung).

Arm (b) is slow (Kronos-small with 128-256 samples takes about a minute per window on 2 cores),
so it runs until ``--predecessor-budget-s`` and its trials per hour come from the trials it
finished. Needs the test-only upstream packages (``bash scripts/setup.sh --test``).

Run: ``.venv/bin/python bench/bench_engine.py --trials 3 --val-windows 10``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from tuner.core.aggregation import aggregate
from tuner.core.config import load_family_config
from tuner.core.data import bundled_data_path, load_dataset
from tuner.core.metrics import score
from tuner.core.models.checkpoint import save_checkpoint
from tuner.core.models.kronos import official_model_config, official_tokenizer_config, random_kronos
from tuner.core.models.toto import TotoConfig, TotoModel, base_toto_config
from tuner.core.models.weights import WeightsSource
from tuner.core.windows import WindowSpec, make_periods
from tuner.engine.experiment import run_experiment
from tuner.engine.experiment_config import ExperimentConfig
from tuner.engine.search import study_seed

FAMILIES = ("toto", "kronos_standard", "kronos_ensemble")
SYMBOLS = ("AAPL", "MSFT")


def full_size_weights(folder: Path) -> Path:
    """Random-init checkpoints at the published shapes (written once, then reused)."""
    if (folder / "toto" / "model.safetensors").exists():
        return folder
    torch.manual_seed(0)
    toto = TotoModel(TotoConfig.from_dict(base_toto_config()))
    save_checkpoint(folder / "toto", base_toto_config(), toto.state_dict(), tiny=True)
    model, tokenizer = random_kronos(official_model_config("small"), official_tokenizer_config("base"))
    save_checkpoint(folder / "kronos", official_model_config("small"), model.state_dict(), tiny=True)
    save_checkpoint(folder / "kronos-tokenizer", official_tokenizer_config("base"), tokenizer.state_dict(),
                    tiny=True)
    return folder


# ------------------------------------------------------------------------------------- ours


def run_ours(weights: Path, trials: int, spec: WindowSpec, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        summary = run_experiment(
            ExperimentConfig(name="bench", symbols=SYMBOLS, families=FAMILIES, trials=trials, seed=seed,
                             windows=spec, weights=WeightsSource.parse(str(weights)), storage=storage),
            echo=lambda line: None, include_dashboard=False,
        )
        wall = time.perf_counter() - start
        table = pd.read_parquet(Path(storage) / "bench" / "trials.parquet")
        tuning = json.loads((Path(storage) / "bench" / "progress.json").read_text())["elapsed_s"]
    done = int((table["status"] == "completed").sum())
    load = sum(a["load_s"] for a in summary["actors"])
    model_work = float(table["actor_s"].sum())
    rpc_and_queue = float(table["wait_s"].sum())
    searched = {(r.symbol, r.family, json.dumps({k: v for k, v in json.loads(r.config).items()
                                                  if k != "samples_per_batch"}, sort_keys=True))
                for r in table.itertuples()}
    return {
        "trials": done, "wall_s": wall, "configs": searched,
        "breakdown": {
            "start-up (Ray, actors, weight loads) + test re-scoring + collation": wall - tuning,
            "  of which weight loads (3 actors in parallel; sum)": load,
            "tuning phase (Tune running trials)": tuning,
            "  sampling + aggregation in actors (sum over trials; up to 4 overlap per actor)": model_work,
            "  Ray RPC + waiting for a busy actor (sum over trials)": rpc_and_queue,
        },
        "sample_banks": summary["sample_banks"], "batching": summary["batching"],
    }


# ------------------------------------------------------------------------------ predecessor


class PredecessorLoop:
    """Optuna in-process; reload per trial; one upstream forecast call per window."""

    def __init__(self, weights: Path, spec: WindowSpec) -> None:
        self.weights = weights
        self.spec = spec
        dataset = load_dataset(bundled_data_path(), symbols=SYMBOLS)
        self.periods = {(s, f): make_periods(dataset.get(s), spec, load_family_config(f).context_length)
                        for s in SYMBOLS for f in FAMILIES}
        self.time = {"load": 0.0, "sampling": 0.0, "aggregation": 0.0, "optuna": 0.0}

    def load(self, family: str):
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if family == "toto":
                from toto.inference.forecaster import TotoForecaster
                from toto.model.toto import Toto

                model = TotoForecaster(Toto.load_from_checkpoint(str(self.weights / "toto")).model)
            else:
                from kronos_finance._vendor.kronos_model import Kronos, KronosTokenizer

                model = (Kronos.from_pretrained(str(self.weights / "kronos")).eval(),
                         KronosTokenizer.from_pretrained(str(self.weights / "kronos-tokenizer")).eval())
        self.time["load"] += time.perf_counter() - start
        return model

    def forecast_window(self, family: str, model, batch, i: int, params: dict) -> float:
        start = time.perf_counter()
        if family == "toto":
            from toto.data.util.dataset import MaskedTimeseries

            series = torch.tensor(batch.close_context[i : i + 1], dtype=torch.float32)
            inputs = MaskedTimeseries(series=series, padding_mask=torch.ones_like(series, dtype=torch.bool),
                                      id_mask=torch.zeros_like(series),
                                      timestamp_seconds=torch.zeros_like(series, dtype=torch.long),
                                      time_interval_seconds=torch.full((1,), 86400))
            n = params["num_samples"]
            with torch.inference_mode():
                out = model.forecast(inputs, prediction_length=1, num_samples=n,
                                     samples_per_batch=min(n, 256))
            samples = out.samples[0, 0, 0].double().numpy()
            sampled = time.perf_counter()
            value = float(aggregate(samples, params["aggregate"]))
        else:
            from kronos_finance._vendor.kronos_model import KronosPredictor

            kronos, tokenizer = model
            predictor = KronosPredictor(kronos, tokenizer, device="cpu", max_context=params["max_context"],
                                        clip=params["clip"])
            ctx = batch.truncated(params["max_context"])
            frame = pd.DataFrame(ctx.context[i], columns=["open", "high", "low", "close", "volume", "amount"])
            x_times = pd.Series(pd.to_datetime(ctx.context_times[i]))
            y_times = pd.Series(pd.to_datetime(ctx.future_times[i]))
            top_k = params["top_k"]
            if family == "kronos_standard":
                pred = predictor.predict(frame, x_times, y_times, pred_len=1, T=params["temperature"],
                                         top_k=top_k, top_p=params["top_p"],
                                         sample_count=params["sample_count"], verbose=False)
                samples = np.array([pred["close"].iloc[-1]])
            else:
                ladder = np.linspace(params["temperature"], params["temp_max"], params["num_samples"])
                samples = np.array([
                    predictor.predict(frame, x_times, y_times, pred_len=1, T=float(t), top_k=top_k,
                                      top_p=params["top_p"], sample_count=1, verbose=False)["close"].iloc[-1]
                    for t in ladder])
            sampled = time.perf_counter()
            value = float(samples.mean() if family == "kronos_standard" else aggregate(samples, params["aggregate"]))
        self.time["sampling"] += sampled - start
        self.time["aggregation"] += time.perf_counter() - sampled
        return value

    def run(self, trials: int, seed: int, budget_s: float) -> dict:
        start = time.perf_counter()
        done, configs, studies = 0, {}, {}
        keys = [(s, f) for s in SYMBOLS for f in FAMILIES]
        for index, key in enumerate(keys):  # the engine's study order and TPE seeds
            studies[key] = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=study_seed(seed, index)))
        for n in range(trials):  # round robin, as the engine's searcher does
            for key in keys:
                if time.perf_counter() - start > budget_s:
                    return {"trials": done, "wall_s": time.perf_counter() - start, "configs": configs,
                            "breakdown": dict(self.time), "stopped_by_budget": True}
                symbol, family = key
                t0 = time.perf_counter()
                trial = studies[key].ask()
                params = load_family_config(family).space.sample_config(trial)
                self.time["optuna"] += time.perf_counter() - t0
                model = self.load(family)  # the predecessor reloaded the model for every trial
                batch = self.periods[key].validation
                point = np.array([self.forecast_window(family, model, batch, i, params) for i in range(len(batch))])
                studies[key].tell(trial, score(point, batch).pct_return_mae)
                configs[(symbol, family, n)] = json.dumps(params, sort_keys=True)
                done += 1
                del model
        return {"trials": done, "wall_s": time.perf_counter() - start, "configs": configs,
                "breakdown": dict(self.time), "stopped_by_budget": False}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per (symbol, family) study")
    parser.add_argument("--val-windows", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--predecessor-budget-s", type=float, default=1200)
    parser.add_argument("--weights", type=Path, default=Path.home() / ".cache" / "forecast-tuner" / "bench-full-size")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    weights = full_size_weights(args.weights)
    spec = WindowSpec(val_windows=args.val_windows, test_windows=args.val_windows)
    print(f"workload: {len(SYMBOLS)} symbols × {len(FAMILIES)} families × {args.trials} trials, "
          f"{args.val_windows} validation windows, full-size random-init weights, "
          f"torch threads {torch.get_num_threads()}", flush=True)

    ours = run_ours(weights, args.trials, spec, args.seed)
    print(f"ours: {ours['trials']} trials in {ours['wall_s']:.1f} s", flush=True)
    old = PredecessorLoop(weights, spec).run(args.trials, args.seed, args.predecessor_budget_s)
    print(f"predecessor-style: {old['trials']} trials in {old['wall_s']:.1f} s"
          + (" (stopped by the time budget)" if old["stopped_by_budget"] else ""), flush=True)

    rate_ours = ours["trials"] / ours["wall_s"] * 3600
    rate_old = old["trials"] / old["wall_s"] * 3600
    print()
    print(f"{'':<22}{'trials':>8}{'wall s':>10}{'trials/hour':>14}")
    print(f"{'ours (Ray engine)':<22}{ours['trials']:>8}{ours['wall_s']:>10.1f}{rate_ours:>14.0f}")
    print(f"{'predecessor-style':<22}{old['trials']:>8}{old['wall_s']:>10.1f}{rate_old:>14.0f}")
    print(f"ratio (trials per hour, ours / predecessor): {rate_ours / rate_old:.1f}x")
    print("\nwhere the time goes, ours:")
    for k, v in ours["breakdown"].items():
        print(f"  {k:<66}{v:>9.1f} s")
    print(f"  sample banks: {ours['sample_banks']}; batching: {ours['batching']}")
    print("where the time goes, predecessor-style:")
    for k, v in old["breakdown"].items():
        print(f"  {k:<66}{v:>9.1f} s")
    same = sum((s, f, p) in ours["configs"] for (s, f, _), p in old["configs"].items())
    print(f"\nsame workload: {same} of the predecessor's {len(old['configs'])} configs were also "
          "evaluated by our engine (same seeded TPE studies)")


if __name__ == "__main__":
    main()
