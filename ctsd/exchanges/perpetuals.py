"""Perpetual futures through one `ExchangeClient`: settings, positions, tiers, funding,
fills and liquidations, the venues' differences read from `DerivativesProfile`.

Every request goes through the client (its lane, the shared rate limiter, the
one error translation). Settings are idempotent: the venue's "already set"
answer (Binance -4046/-4059, Bybit 110025/110043; OKX and Binance leverage
simply answer success) is success, reported as ALREADY_SET; any other refusal
that carries the venue's error code (open positions or orders, a leverage too
high for the position) is raised as `ExchangeRejected` (FailedPrecondition)
with the venue's words, never retried; a network failure stays temporary.
Amounts are base units throughout (contracts times contract size on OKX).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from ctsd.errors import ExchangeFailure, ExchangeRejected, FailureClass
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_errors import error_codes, malformed
from ctsd.exchanges.client import ExchangeClient
from ctsd.exchanges.model import (
    AccountModes,
    FundingRecord,
    FundingTerms,
    LeverageTier,
    Position,
    Trade,
)
from ctsd.exchanges.profile import DerivativesProfile
from ctsd.ratelimit import Lane

CHANGED, ALREADY_SET, PER_ORDER = "changed", "already set", "sent with every order"
_REFUSALS = (FailureClass.EXCHANGE_ERROR, FailureClass.PERMISSION)


class PerpetualClient:
    """The perpetuals calls of one connection's client (which the caller owns)."""

    def __init__(self, client: ExchangeClient) -> None:
        venue = client.profile.derivatives
        if venue is None:
            raise ExchangeRejected(FailureClass.EXCHANGE_ERROR,
                                   f"{client.target.exchange} has no perpetuals here")
        self.client = client
        self.venue: DerivativesProfile = venue
        self._exchange = client.target.exchange

    # --- settings ---------------------------------------------------------------------

    async def set_position_mode(self, hedge: bool, symbol: str) -> str:
        args: tuple[Any, ...] = (hedge, symbol) if self.venue.position_mode_scope == "symbol" \
            else (hedge,)
        return await self._setting("position_mode", "hedge" if hedge else "one-way",
                                   lambda: self.client.call("set_position_mode", *args,
                                                            lane=Lane.ORDER, signed=True))

    async def set_margin_mode(self, mode: str, symbol: str) -> str:
        if self.venue.margin_mode_scope == "order":
            return PER_ORDER
        args: tuple[Any, ...] = (mode, symbol) if self.venue.margin_mode_scope == "symbol" \
            else (mode,)
        return await self._setting("margin_mode", mode, lambda: self.client.call(
            "set_margin_mode", *args, lane=Lane.ORDER, signed=True))

    async def set_leverage(self, leverage: int, symbol: str, mode: str, hedge: bool) -> str:
        params: dict[str, Any] = {}
        if self.venue.leverage_margin_param:
            params[self.venue.leverage_margin_param] = mode
        legs: Sequence[dict[str, Any]] = [params]
        if self.venue.leverage_per_leg and hedge and mode == "isolated":
            legs = [{**params, self.venue.hedge_param: self.venue.hedge_values[side]}
                    for side in ("long", "short")]
        outcomes = []
        for params_of_leg in legs:
            def call(leg: dict[str, Any] = params_of_leg) -> Awaitable[Any]:
                return self.client.call("set_leverage", leverage, symbol, leg, lane=Lane.ORDER,
                                        signed=True)
            outcomes.append(await self._setting("leverage", f"{leverage}x", call))
        return CHANGED if CHANGED in outcomes else ALREADY_SET

    async def _setting(self, name: str, value: str,
                       call: Callable[[], Awaitable[Any]]) -> str:
        try:
            await call()
        except ExchangeFailure as exc:
            codes = set(error_codes(exc.detail)) | ({exc.code} if exc.code else set())
            if codes & self.venue.unchanged.get(name, frozenset()):
                return ALREADY_SET
            if exc.failure in _REFUSALS and codes:
                raise ExchangeRejected(
                    exc.failure, f"{self._exchange} refused {name.replace('_', ' ')} "
                    f"{value}: {exc.detail}", code=exc.code) from exc
            raise
        return CHANGED

    # --- reading the account ------------------------------------------------------------

    async def modes(self) -> AccountModes:
        """The account's position mode and margin mode(s), where the venue keeps them
        account-wide or reports them for every symbol at once (a connection test)."""
        hedge = None
        if self.venue.position_mode_scope == "account":
            hedge = await self.position_mode(None)
        margins: tuple[tuple[str, str], ...] = ()
        if self.venue.margin_mode_scope == "account":
            await self.client.load_markets()
            listed = self.client.contract_symbols()  # the venue asks for one; any will do
            raw = await self.client.call("fetch_margin_mode", listed[0] if listed else None,
                                         signed=True)
            margins = (("*", _margin_name(raw)),)
        elif self.venue.margin_mode_scope == "symbol":
            raw = await self.client.call("fetch_margin_modes", None, {"subType": "linear"},
                                         signed=True)
            if not isinstance(raw, Mapping):
                raise malformed(f"{self._exchange} margin modes are not an object")
            margins = tuple(sorted((str(s), _margin_name(m)) for s, m in raw.items()))
        return AccountModes(hedge, margins)

    async def position_mode(self, symbol: str | None) -> bool | None:
        """Whether the account (or `symbol`, where the mode is per symbol) is in hedge mode;
        None when a per-symbol venue is asked for the account."""
        if self.venue.position_mode_scope == "symbol":
            if symbol is None:
                return None
            raw = await self.client.call("fetch_positions", [symbol], signed=True)
            rows = [r for r in raw or [] if isinstance(r, Mapping) and r.get("symbol") == symbol]
            return any(bool(r.get("hedged")) for r in rows)
        raw = await self.client.call("fetch_position_mode", symbol, signed=True)
        if not isinstance(raw, Mapping) or not isinstance(raw.get("hedged"), bool):
            raise malformed(f"{self._exchange} position mode has no hedged flag")
        return bool(raw["hedged"])

    async def positions(self, symbols: Sequence[str]) -> tuple[Position, ...]:
        raw = await self.client.call("fetch_positions", list(symbols), signed=True)
        if not isinstance(raw, list):
            raise malformed(f"{self._exchange} positions are not a list")
        found = []
        for row in raw:
            if not isinstance(row, Mapping) or row.get("symbol") not in symbols:
                continue
            contracts = answers.decimal(row.get("contracts"))
            if not contracts:
                continue  # Bybit lists the empty slots of the symbols asked for
            found.append(self._position(row, contracts))
        return tuple(found)

    def _position(self, row: Mapping[str, Any], contracts: Decimal) -> Position:
        return answers.position_row(row, contracts, self.client.contract_size(str(row["symbol"])),
                            self._exchange)

    async def funding_payments(self, symbol: str, since_ms: int) -> tuple[FundingRecord, ...]:
        raw = await self.client.call("fetch_funding_history", symbol, since_ms, signed=True)
        return tuple(r for r in _records(raw, self._exchange, self.venue.funding_sign)
                     if r.symbol == symbol and r.timestamp_ms >= since_ms)

    async def trades(self, symbol: str, since_ms: int) -> tuple[Trade, ...]:
        raw = await self.client.call("fetch_my_trades", symbol, since_ms, signed=True)
        return tuple(t for t in answers.trades(raw, self.client.contract_size(symbol))
                     if t.timestamp_ms >= since_ms)

    async def liquidations(self, symbol: str, since_ms: int) -> int:
        if self.venue.liquidations is not None:
            method, params = self.venue.liquidations
            raw = await self.client.call(method, dict(params), signed=True)
            rows = raw.get("data") if isinstance(raw, Mapping) else None
            if not isinstance(rows, list):
                raise malformed(f"{self._exchange} liquidation bills are not a list")
            market_id = self.client.market(symbol).get("id")
            orders = {str(r.get("ordId") or r.get("billId")) for r in rows  # a bill per part
                      if isinstance(r, Mapping) and r.get("instId") == market_id
                      and int(r.get("ts") or 0) >= since_ms}
            return len(orders)
        raw = await self.client.call("fetch_my_liquidations", symbol, since_ms, signed=True)
        if not isinstance(raw, list):
            raise malformed(f"{self._exchange} liquidations are not a list")
        return sum(1 for r in raw if isinstance(r, Mapping)
                   and int(r.get("timestamp") or 0) >= since_ms)

    # --- public facts --------------------------------------------------------------------

    async def tiers(self, symbol: str) -> tuple[LeverageTier, ...]:
        raw = await self.client.call("fetch_market_leverage_tiers", symbol)
        if not isinstance(raw, list) or not raw:
            raise malformed(f"{self._exchange} leverage tiers of {symbol} are empty")
        scale = Decimal(1)
        if self.venue.tiers_in_contracts:  # bounds in contracts: valued at the last price
            scale = self.client.contract_size(symbol) * (
                await self.client.fetch_ticker(symbol)).last
        found = []
        for row in raw:
            row = row if isinstance(row, Mapping) else {}
            values = [answers.decimal(row.get(k)) for k in (
                "minNotional", "maxNotional", "maxLeverage", "maintenanceMarginRate")]
            floor, cap, leverage, mmr = values
            if floor is None or cap is None or not leverage or mmr is None:
                raise malformed(f"{self._exchange} leverage tier of {symbol} is incomplete")
            found.append(LeverageTier(floor * scale, cap * scale, leverage, mmr))
        return tuple(sorted(found, key=lambda t: t.floor))

    async def funding(self, symbol: str) -> FundingTerms:
        raw = await self.client.call("fetch_funding_rate", symbol)
        if not isinstance(raw, Mapping):
            raise malformed(f"{self._exchange} funding rate of {symbol} is not an object")
        rate, due = answers.decimal(raw.get("fundingRate")), raw.get("fundingTimestamp")
        if rate is None or not isinstance(due, int | float):
            raise malformed(f"{self._exchange} funding rate of {symbol} is incomplete")
        return FundingTerms(rate, int(due), answers.decimal(raw.get("markPrice")) or None)

    async def funding_rates(self, symbol: str, since_ms: int) -> tuple[FundingRecord, ...]:
        raw = await self.client.call("fetch_funding_rate_history", symbol, since_ms)
        if not isinstance(raw, list):
            raise malformed(f"{self._exchange} funding rate history is not a list")
        found = []
        for row in raw:
            rate = answers.decimal(row.get("fundingRate")) if isinstance(row, Mapping) else None
            stamp = row.get("timestamp") if isinstance(row, Mapping) else None
            if rate is None or not isinstance(stamp, int):
                raise malformed(f"{self._exchange} funding rate history row is incomplete")
            found.append(FundingRecord(f"{symbol}:{stamp}", symbol, Decimal(0), "", stamp, rate))
        return tuple(r for r in found if r.timestamp_ms >= since_ms)


def _margin_name(raw: Any) -> str:
    mode = raw.get("marginMode") if isinstance(raw, Mapping) else None
    if mode not in ("cross", "isolated"):
        raise malformed(f"margin mode {mode!r} is neither cross nor isolated")
    return str(mode)


def _records(raw: Any, exchange: str, sign: int) -> list[FundingRecord]:
    if not isinstance(raw, list):
        raise malformed(f"{exchange} funding history is not a list")
    found = []
    for row in raw:
        row = row if isinstance(row, Mapping) else {}
        amount, stamp = answers.decimal(row.get("amount")), row.get("timestamp")
        if amount is None or not isinstance(stamp, int) or not row.get("id"):
            raise malformed(f"{exchange} funding payment is incomplete")
        found.append(FundingRecord(str(row["id"]), str(row.get("symbol") or ""), amount * sign,
                                   str(row.get("code") or ""), stamp))
    return found
