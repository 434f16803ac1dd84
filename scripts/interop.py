"""`make interop`: an unmodified Freqtrade against the simulator, venue by venue.

Freqtrade (pinned in the Makefile, in its own virtualenv `.venv-interop`, on the
project's ccxt 4.5.90) gets nothing but a config: keys, and ccxt's URLs pointed at
the simulator through `exchange.ccxt_config.urls` (computed here with
`point_at_simulator` on a fresh ccxt instance). No patching, no plugin. One
simulator process serves every row on loopback; each row has its own account.

Per row (Binance, Bybit and OKX spot and futures, Kraken spot), in order, stopping at
the first failure:

1. `list-markets` lists the row's markets;
2. `test-pairlist` with a VolumePairList picks pairs;
3. `download-data` of two days of 1m and 5m candles (Kraken: of trades, which
   Freqtrade resamples) equals, candle by candle, the simulator's own path
   (`ctsd.sim.market.Market` rebuilt here from the same seed);
4. a dry-run `trade` with `SimChurn` closes trades;
5. a live `trade` closes trades on the simulated account, with stop-loss orders on
   the exchange where Freqtrade supports them.

Each row prints PASS or its first error; the exit code is 0 only if every row passed.
`CTS_INTEROP_ROWS=binance-spot,kraken-spot` picks rows; `CTS_INTEROP_TRADE_S` sets how
long each trading run lasts (default 75 s).

    make interop          # installs .venv-interop if needed, then runs this
    .venv/bin/python scripts/interop.py
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt

from ctsd.sim.ccxt_target import point_at_simulator
from ctsd.sim.clock import SystemClock
from ctsd.sim.market import TIMEFRAMES, Market, MarketCatalog

ROOT = Path(__file__).resolve().parent.parent
FREQTRADE = ROOT / ".venv-interop" / "bin" / "freqtrade"
STRATEGY_DIR = ROOT / "scripts" / "interop"
SEED, MARKETS = 5, 30
PAIRS = ("ETH/USDT", "BTC/USDT")
DOWNLOAD_PAIR = "ETH/USDT"
KRAKEN_SECRET = "c2ltLWludGVyb3Atc2VjcmV0LWZvci1rcmFrZW4tMDAwMQ=="
"""Kraken secrets are base64; one secret serves every venue's account here."""
PASSPHRASE = "interop-pass"
TRADE_S = float(os.environ.get("CTS_INTEROP_TRADE_S", "75"))
STEP_TIMEOUT_S = 600


class StepFailed(Exception):
    """A step's first error, as the row prints it."""


@dataclass(frozen=True)
class Row:
    venue: str
    mode: str
    """`spot` or `futures`."""
    ccxt_class: str
    """The ccxt class Freqtrade instantiates (`binance`, `bybit`, `okx`, `kraken`)."""
    stop_on_exchange: bool
    stoploss_type: str = "market"
    trade_s: float = TRADE_S
    """Kraken's ccxt spaces private calls 3 s apart: its rounds take twice as long."""

    @property
    def name(self) -> str:
        return f"{self.venue}-{self.mode}"

    @property
    def pairs(self) -> list[str]:
        suffix = ":USDT" if self.mode == "futures" else ""
        return [p + suffix for p in PAIRS]


ROWS = (
    Row("binance", "spot", "binance", True, "limit"),
    Row("binance", "futures", "binance", True, "market"),
    Row("bybit", "spot", "bybit", False),
    Row("bybit", "futures", "bybit", True, "market"),
    Row("okx", "spot", "okx", True, "market"),
    Row("okx", "futures", "okx", True, "market"),
    Row("kraken", "spot", "kraken", True, "market", 2 * TRADE_S),
)


# --- the simulator ------------------------------------------------------------------


@contextmanager
def simulator(work: Path) -> Iterator[str]:
    """`ctsd sim` in a child process on a free loopback port; yields its base URL."""
    accounts = [{
        "api_key": f"interop-{row.name}", "secret": KRAKEN_SECRET, "passphrase": PASSPHRASE,
        "balances": {"spot": {"USDT": "100000", "BTC": "1", "ETH": "20"},
                     "derivatives": {"USDT": "100000"}},
        "permissions": ["read", "trade"],
    } for row in ROWS]
    accounts_file = work / "accounts.json"
    accounts_file.write_text(json.dumps({"accounts": accounts}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctsd", "sim", "--port", "0", "--seed", str(SEED),
         "--markets", str(MARKETS), "--accounts", str(accounts_file)],
        stdout=subprocess.PIPE, stderr=(work / "sim.log").open("w"), text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"(http://127\.0\.0\.1:\d+)", line)
        if not found:
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- Freqtrade's config ----------------------------------------------------------------


def simulated_urls(row: Row, base_url: str) -> dict[str, Any]:
    """ccxt's `urls.api` for the row's exchange, every host replaced by the simulator."""
    options = {"defaultType": "future" if row.venue == "binance" else "swap"} if (
        row.mode == "futures") else {}
    exchange = getattr(ccxt, row.ccxt_class)({"options": options})
    point_at_simulator(exchange, base_url)
    return {"api": exchange.urls["api"]}


def config(row: Row, base_url: str, work: Path, *, dry_run: bool,
           pairlist: list[dict[str, Any]] | None = None) -> Path:
    futures = row.mode == "futures"
    urls = simulated_urls(row, base_url)
    body: dict[str, Any] = {
        "bot_name": f"interop-{row.name}", "max_open_trades": 1, "stake_currency": "USDT",
        "stake_amount": 50, "tradable_balance_ratio": 0.99, "dry_run": dry_run,
        "dry_run_wallet": 10_000, "cancel_open_orders_on_exit": True,
        "trading_mode": "futures" if futures else "spot",
        "margin_mode": "isolated" if futures else "", "timeframe": "1m",
        "unfilledtimeout": {"entry": 1, "exit": 1, "unit": "minutes"},
        "entry_pricing": {"price_side": "other", "use_order_book": True,
                          "order_book_top": 1, "price_last_balance": 0.0,
                          "check_depth_of_market": {"enabled": False}},
        "exit_pricing": {"price_side": "other", "use_order_book": True,
                         "order_book_top": 1},
        "order_types": {"entry": "market", "exit": "market",
                        "stoploss": row.stoploss_type,
                        "stoploss_on_exchange": row.stop_on_exchange and not dry_run,
                        "stoploss_on_exchange_interval": 10},
        "exchange": {
            "name": row.ccxt_class, "key": f"interop-{row.name}", "secret": KRAKEN_SECRET,
            "password": PASSPHRASE, "ccxt_config": {"urls": urls, "enableRateLimit": True},
            "pair_whitelist": row.pairs, "pair_blacklist": [], "enable_ws": False,
            "only_from_ccxt": True, "markets_refresh_interval": 60,
        },
        "pairlists": pairlist or [{"method": "StaticPairList"}],
        "initial_state": "running", "internals": {"process_throttle_secs": 2},
        "dataformat_ohlcv": "json", "dataformat_trades": "json",
        "user_data_dir": str(work / "user_data"),
        "db_url": f"sqlite:///{database(work, dry_run)}",
    }
    (work / "user_data").mkdir(exist_ok=True)
    path = work / f"config-{'dry' if dry_run else 'live'}.json"
    path.write_text(json.dumps(body, indent=1))
    return path


# --- running Freqtrade -------------------------------------------------------------------


def freqtrade(args: list[str], log: Path, timeout: float = STEP_TIMEOUT_S) -> str:
    """Run a Freqtrade command; its output, or StepFailed with its first error."""
    with log.open("a") as out:
        out.write(f"\n$ freqtrade {' '.join(args)}\n")
        out.flush()
        proc = subprocess.run([str(FREQTRADE), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
        out.write(proc.stdout)
    if proc.returncode != 0:
        raise StepFailed(first_error(proc.stdout) or f"exit code {proc.returncode}")
    return proc.stdout


def json_line(output: str) -> list[str]:
    """The JSON list a `--print-json` command printed among its log lines."""
    for line in reversed(output.splitlines()):
        if line.startswith("["):
            return list(json.loads(line))
    raise StepFailed(first_error(output) or "printed no JSON list")


def first_error(output: str) -> str | None:
    for line in output.splitlines():
        if " - ERROR - " in line or "Traceback" in line or line.startswith(
                ("ccxt.", "freqtrade.")):
            return line.strip()[:300]
    return None


def trade_for(config_path: Path, log: Path, seconds: float) -> str:
    """Run `freqtrade trade` for `seconds`, then stop it as a user does (SIGINT)."""
    logfile = log.with_suffix(".trade.log")
    proc = subprocess.Popen(
        [str(FREQTRADE), "trade", "-c", str(config_path), "--strategy", "SimChurn",
         "--strategy-path", str(STRATEGY_DIR), "--logfile", str(logfile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = logfile.read_text() if logfile.exists() else ""
    with log.open("a") as out:
        out.write(text)
    return text


# --- steps -------------------------------------------------------------------------------


def list_markets(row: Row, url: str, work: Path) -> None:
    cfg = config(row, url, work, dry_run=True)
    flag = "--print-json"
    out = freqtrade(["list-markets", "-c", str(cfg), flag, "--trading-mode", _mode(row)],
                    work / "freqtrade.log")
    listed = set(json_line(out))
    if not set(row.pairs) <= listed:
        raise StepFailed(f"list-markets lacks {set(row.pairs) - listed}")


def test_pairlist(row: Row, url: str, work: Path) -> None:
    volume: list[dict[str, Any]] = [{"method": "VolumePairList", "number_assets": 5,
                                     "sort_key": "quoteVolume", "min_value": 0,
                                     "refresh_period": 1800}]
    if row.venue == "okx" and row.mode == "futures":  # its swap tickers carry no quoteVolume
        volume[0] |= {"lookback_timeframe": "1h", "lookback_period": 24, "refresh_period": 3600}
    cfg = config(row, url, work, dry_run=True, pairlist=volume)
    out = freqtrade(["test-pairlist", "-c", str(cfg), "--print-json"], work / "freqtrade.log")
    picked = json_line(out)
    if len(picked) != 5:
        raise StepFailed(f"VolumePairList picked {picked}")


def download_data(row: Row, url: str, work: Path) -> None:
    cfg = config(row, url, work, dry_run=True)
    pair = DOWNLOAD_PAIR + (":USDT" if row.mode == "futures" else "")
    args = ["download-data", "-c", str(cfg), "--pairs", pair, "--timeframes", "1m", "5m",
            "--days", "2", "--trading-mode", _mode(row)]
    if row.venue == "kraken":
        args.append("--dl-trades")
    freqtrade(args, work / "freqtrade.log", timeout=1200)
    market = Market(MarketCatalog(SEED, MARKETS), SystemClock())
    for timeframe in ("1m", "5m"):
        compare_candles(market, row, pair, timeframe, work / "user_data" / "data" / row.ccxt_class)


def compare_candles(market: Market, row: Row, pair: str, timeframe: str, data: Path) -> None:
    """Freqtrade's file, candle by candle, against the simulator's path."""
    name = pair.replace("/", "_").replace(":", "_")
    suffix = "-futures" if row.mode == "futures" else ""
    folder = data / "futures" if row.mode == "futures" else data
    path = folder / f"{name}-{timeframe}{suffix}.json"
    if not path.exists():
        raise StepFailed(f"download-data wrote no {path.name}")
    rows = json.loads(path.read_text())
    tf = TIMEFRAMES[timeframe]
    minimum = 2 * 86_400_000 // tf.ms - 2
    if len(rows) < minimum:
        raise StepFailed(f"{timeframe}: {len(rows)} candles, expected two days ({minimum}+)")
    now = market.now_ms()
    closed = [r for r in rows if r[0] + tf.ms <= now]
    ours = {c.open_ms: c for c in market.candles(pair, tf, start_ms=closed[0][0],
                                                 limit=len(closed) + 5)}
    for stamp, o, h, low, c, v in (r[:6] for r in closed):
        mine = ours.get(stamp)
        if mine is None:
            raise StepFailed(f"{timeframe}: candle {stamp} is not on the simulator's path")
        theirs = (o, h, low, c, v)
        expected = tuple(float(x) for x in (mine.open, mine.high, mine.low, mine.close,
                                            mine.volume))
        if any(abs(a - b) > 1e-9 * max(abs(b), 1.0) for a, b in zip(theirs, expected,
                                                                  strict=True)):
            raise StepFailed(f"{timeframe}: candle {stamp} is {theirs}, the path says "
                             f"{expected}")


def dry_run(row: Row, url: str, work: Path) -> str:
    cfg = config(row, url, work, dry_run=True)
    return _trade_and_check(row, cfg, work, live=False)


def live(row: Row, url: str, work: Path) -> str:
    cfg = config(row, url, work, dry_run=False)
    return _trade_and_check(row, cfg, work, live=True)


def database(work: Path, dry_run: bool) -> Path:
    return work / f"trades-{'dry' if dry_run else 'live'}.sqlite"


def _trade_and_check(row: Row, cfg: Path, work: Path, *, live: bool) -> str:
    text = trade_for(cfg, work / "freqtrade.log", row.trade_s)
    closed, stops = trades_in(database(work, not live))
    if closed < 1:
        raise StepFailed(first_error(text) or "no trade closed")
    if live and row.stop_on_exchange and stops < 1:
        raise StepFailed("no stop-loss order was placed on the exchange")
    error = first_error(text)
    return f"{closed} trades closed, {stops} stop-loss orders" + (
        f"; first error logged: {error}" if error else "")


def trades_in(db: Path) -> tuple[int, int]:
    """(closed trades, stop-loss orders placed) in Freqtrade's database."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db) as conn:
        closed = conn.execute("SELECT COUNT(*) FROM trades WHERE is_open = 0").fetchone()[0]
        stops = conn.execute(
            "SELECT COUNT(*) FROM orders WHERE ft_order_side = 'stoploss'").fetchone()[0]
    return int(closed), int(stops)


def _mode(row: Row) -> str:
    return "futures" if row.mode == "futures" else "spot"


STEPS: tuple[tuple[str, Callable[[Row, str, Path], str | None]], ...] = (
    ("list-markets", list_markets), ("test-pairlist", test_pairlist),
    ("download-data", download_data), ("dry-run", dry_run), ("live", live),
)


def run_row(row: Row, url: str, work: Path) -> str:
    row_dir = work / row.name
    row_dir.mkdir()
    for name, step in STEPS:
        started = time.monotonic()
        try:
            detail = step(row, url, row_dir)
        except StepFailed as exc:
            return f"FAIL at {name}: {exc}"
        except subprocess.TimeoutExpired:
            return f"FAIL at {name}: timed out"
        except Exception as exc:  # the harness reports a row, then goes on to the next
            return f"FAIL at {name}: {exc!r}"
        note = f"; {detail}" if detail else ""
        print(f"  {row.name} {name}: ok ({time.monotonic() - started:.0f} s{note})", flush=True)
    return "PASS"


def main() -> int:
    if not FREQTRADE.exists():
        print("interop: Freqtrade is not installed; run `make interop`", file=sys.stderr)
        return 2
    wanted = {n for n in os.environ.get("CTS_INTEROP_ROWS", "").split(",") if n}
    rows = [r for r in ROWS if not wanted or r.name in wanted]
    work = Path(tempfile.mkdtemp(prefix="cts-interop-"))
    results: dict[str, str] = {}
    try:
        with simulator(work) as url:
            for row in rows:
                print(f"{row.name}: running", flush=True)
                results[row.name] = run_row(row, url, work)
            with urllib.request.urlopen(f"{url}/admin/stats", timeout=10) as answer:
                unserved = json.loads(answer.read())["unserved"]
        for path, count in sorted(unserved.items()):
            print(f"  the simulator does not serve {path} (asked {count} times)")
    finally:
        keep = any(r != "PASS" for r in results.values())
        if keep:
            print(f"logs kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\nFreqtrade interop matrix (list-markets, test-pairlist, download-data, dry-run, "
          "live)")
    for name, result in results.items():
        print(f"{name:17} {result}")
    return 0 if all(r == "PASS" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
