"""Rebuild the sample data bundled in ``tuner/sample_data/`` from its public sources.

Sources (downloaded as wheels from PyPI, never installed):

* ``bokeh-sampledata`` (``bokeh_sampledata/_data/stocks.csv.gz``): Quandl WIKI daily OHLCV of
  AAPL, MSFT, IBM, GOOG, 2000-2013, public domain.
* ``gym-anytrading`` 2.0.0 (MIT): ``STOCKS_GOOGL.csv`` daily and ``FOREX_EURUSD_1H_ASK.csv`` hourly.

Prices are split/dividend adjusted with each source's adjusted close, so a split is not a return.

Usage: python scripts/build_sample_data.py [--out tuner/sample_data]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pandas as pd

PRICE = ["open", "high", "low", "close"]


def download(package: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(into), package],
                   check=True)
    name = package.split("=")[0].replace("-", "_")
    return next(into.glob(f"{name}-*.whl"))


def adjusted(frame: pd.DataFrame, adj: str = "Adj Close") -> pd.DataFrame:
    factor = frame[adj] / frame["Close"]
    out = pd.DataFrame({"timestamp": pd.to_datetime(frame["Date"]).dt.strftime("%Y-%m-%d")})
    for col in PRICE:
        out[col] = (frame[col.capitalize()] * factor).round(4)
    out["volume"] = frame["Volume"].astype("int64")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "tuner" / "sample_data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bokeh = zipfile.ZipFile(download("bokeh-sampledata", tmp))
        with bokeh.open("bokeh_sampledata/_data/stocks.csv.gz") as f:
            stocks = pd.read_csv(f, compression="gzip")
        for ticker in ["AAPL", "MSFT", "IBM", "GOOG"]:
            adjusted(stocks[stocks["Ticker"] == ticker]).to_csv(args.out / f"{ticker}.csv", index=False)
        gym = zipfile.ZipFile(download("gym-anytrading==2.0.0", tmp))
        with gym.open("gym_anytrading/datasets/data/STOCKS_GOOGL.csv") as f:
            adjusted(pd.read_csv(f)).to_csv(args.out / "GOOGL.csv", index=False)
        with gym.open("gym_anytrading/datasets/data/FOREX_EURUSD_1H_ASK.csv") as f:
            fx = pd.read_csv(f)
        out = pd.DataFrame({"timestamp": pd.to_datetime(fx["Time"], format="%d.%m.%Y %H:%M:%S.%f")
                            .dt.strftime("%Y-%m-%d %H:%M")})
        for col in PRICE:
            out[col] = fx[col.capitalize()].round(5)
        out["volume"] = fx["Volume"].round(0).astype("int64")
        out.to_csv(args.out / "EURUSD.csv", index=False)
    for file in sorted(args.out.glob("*.csv")):
        print(f"{file}: {sum(1 for _ in file.open()) - 1} bars, {file.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
