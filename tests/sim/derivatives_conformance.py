"""What every simulated perpetuals venue must do, through unmodified ccxt: one suite,
one table a venue (the pattern of `tests.sim.conformance`, for derivatives).

Each `tests/sim/test_<venue>.py` with perpetuals subclasses `DerivativesConformance`
(as `TestDerivatives`) and fills in its table: the ccxt client, how the venue
switches margin mode and position mode, which ccxt exception its "already set" and
refusal answers become (`None`: the venue answers success), and which position
fields ccxt leaves empty for it. The expectations are computed from the simulator's
own model (`ctsd.sim.derivatives`, `ctsd.sim.funding`), so a test fails when the
wire and the model disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from ctsd.sim import derivatives, tiers
from ctsd.sim.accounts import Account
from ctsd.sim.clock import ManualClock
from ctsd.sim.funding import FUNDING_INTERVAL_MS
from ctsd.sim.positions import MarginMode, PositionSide
from ctsd.sim.server import SimulatorServer
from tests.sim.conformance import Expect
from tests.sim.conftest import API_KEY, ExchangeFactory
from tests.sim.validators import (
    check_funding_rate_history,
    check_leverage_tier,
    check_liquidation,
    check_position,
)

SYMBOL = "BTC/USDT:USDT"
"""A majors-ladder perpetual (125x)."""
ALT = "SOL/USDT:USDT"
"""A standard-ladder perpetual (50x)."""


def account(server: SimulatorServer) -> Account:
    found = server.sim.accounts.get(API_KEY)
    assert found is not None
    return found


def wallet(server: SimulatorServer) -> Decimal:
    return account(server).derivatives["USDT"]


async def held(ex: Any, symbol: str) -> list[Any]:
    """The open positions `fetch_positions([symbol])` lists (Bybit lists the empty slots
    of a symbol it is asked for, with no contracts)."""
    return [p for p in await ex.fetch_positions([symbol]) if p["contracts"]]


async def raises(expect: Expect | None, call: Any) -> None:
    """`await call` must succeed (`None`) or raise what `expect` says."""
    if expect is None:
        await call
        return
    with pytest.raises(expect.error, match=expect.match) as raised:
        await call
    expect.check(raised)


class DerivativesConformance:
    """The shared derivatives suite; subclasses fill in the table and the hooks."""

    leverage_already_set: ClassVar[Expect | None]
    leverage_refused: ClassVar[Expect]
    """Setting ALT above its 50x maximum."""
    margin_already_set: ClassVar[Expect | None]
    margin_refused: ClassVar[Expect | None]
    """Switching margin mode with a position open; None where the venue sets it per
    order (OKX), so nothing is refused."""
    position_mode_already_set: ClassVar[Expect | None]
    position_mode_refused: ClassVar[Expect]
    reduce_only_refused: ClassVar[Expect]
    position_side_refused: ClassVar[Expect]
    """A hedge-mode order on a one-way account."""
    empty_position_fields: ClassVar[frozenset[str]] = frozenset()
    """Position fields ccxt leaves None for this venue's answer (pinned as None)."""
    fetch_position_error: ClassVar[type[Exception] | None] = None
    """What `fetch_position` raises for a perpetual (Binance: options only)."""
    fill_side_field: ClassVar[str | None] = None
    """The raw own-trade field naming a fill's hedge-mode position side (Binance
    `positionSide`, OKX `posSide`); None where the venue's fills carry none (Bybit)."""
    funding_paid_sign: ClassVar[int] = 1
    """How ccxt signs a funding payment in `fetch_funding_history`: 1 as the wallet
    change (negative: paid), -1 as a fee (Bybit's `execFee`: positive, paid)."""

    def exchange(self, make: ExchangeFactory, server: SimulatorServer, **config: Any) -> Any:
        raise NotImplementedError

    async def set_margin_mode(self, ex: Any, mode: str, symbol: str) -> Any:
        return await ex.set_margin_mode(mode, symbol)

    async def set_position_mode(self, ex: Any, hedged: bool, symbol: str) -> Any:
        return await ex.set_position_mode(hedged, symbol)

    def hedge_params(self, side: str, closing: bool) -> dict[str, Any]:
        """Order params that trade the hedge-mode `side` ('long'/'short')."""
        raise NotImplementedError

    def order_params(self) -> dict[str, Any]:
        """Params every perpetual order carries (OKX: its margin mode)."""
        return {}

    async def fetch_leverage(self, ex: Any, symbol: str) -> Decimal:
        leverage = await ex.fetch_leverage(symbol)
        return Decimal(str(leverage["longLeverage"]))

    async def fetch_tiers(self, ex: Any, symbol: str) -> list[Any]:
        return list(await ex.fetch_market_leverage_tiers(symbol))

    async def funding_history(self, ex: Any, symbol: str) -> list[Any]:
        return list(await ex.fetch_funding_history(symbol))

    async def liquidation_records(self, ex: Any, server: SimulatorServer,
                                  symbol: str) -> list[Any]:
        """What the venue's history shows of a liquidation (at least one record)."""
        raise NotImplementedError

    async def ready(self, make: ExchangeFactory, server: SimulatorServer) -> Any:
        """A loaded client, and the price path frozen at BTC 60,000 and SOL 150.

        Only the market's clock is frozen (the server clock, which signatures are
        checked against, keeps the wall time): expected prices are then exact.
        """
        server.sim.market.clock = ManualClock(server.sim.clock.now_ms())
        ex = self.exchange(make, server)
        await ex.load_markets()
        server.sim.set_price(SYMBOL, Decimal("60000"))
        server.sim.set_price(ALT, Decimal("150"))
        return ex

    async def open(self, ex: Any, symbol: str, side: str, amount: float,
                   params: Mapping[str, Any] | None = None) -> Any:
        amount = float(ex.amount_to_precision(symbol, amount / _contract_size(ex, symbol)))
        return await ex.create_order(symbol, "market", side, amount, None,
                                     {**self.order_params(), **(params or {})})

    # --- settings -----------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_leverage_set_already_set_refused(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await ex.set_leverage(5, SYMBOL)
        settings = account(server).perp.settings
        assert settings.leverage_for(SYMBOL, settings.margin_for(SYMBOL)) == 5
        assert await self.fetch_leverage(ex, SYMBOL) == 5
        await raises(self.leverage_already_set, ex.set_leverage(5, SYMBOL))
        await raises(self.leverage_refused, ex.set_leverage(75, ALT))
        assert settings.leverage_for(ALT) == 10

    @pytest.mark.asyncio
    async def test_margin_mode_set_already_set_refused(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await self.set_margin_mode(ex, "isolated", SYMBOL)
        await raises(self.margin_already_set, self.set_margin_mode(ex, "isolated", SYMBOL))
        await self.open(ex, SYMBOL, "buy", 0.05)
        [position] = account(server).perp.open_positions(SYMBOL)
        assert position.margin_mode is MarginMode.ISOLATED
        [fetched] = await held(ex, SYMBOL)
        assert fetched["marginMode"] in ("isolated", None)
        await raises(self.margin_refused, self.set_margin_mode(ex, "cross", SYMBOL))
        if self.margin_refused is not None:
            settings = account(server).perp.settings
            assert settings.margin_for(SYMBOL) is MarginMode.ISOLATED

    @pytest.mark.asyncio
    async def test_position_mode_set_already_set_refused(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        settings = account(server).perp.settings
        await self.set_position_mode(ex, True, SYMBOL)
        assert settings.is_hedge(SYMBOL)
        await raises(self.position_mode_already_set, self.set_position_mode(ex, True, SYMBOL))
        await self.set_position_mode(ex, False, SYMBOL)
        await self.open(ex, SYMBOL, "buy", 0.05)
        await raises(self.position_mode_refused, self.set_position_mode(ex, True, SYMBOL))
        assert not settings.is_hedge(SYMBOL)

    # --- positions ------------------------------------------------------------------

    @pytest.mark.asyncio
    @pytest.mark.parametrize("mode", ["cross", "isolated"])
    async def test_positions_parse_as_the_model_values_them(
        self, server: SimulatorServer, make_exchange: ExchangeFactory, mode: str,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        if mode == "isolated":
            await self.set_margin_mode(ex, mode, SYMBOL)
        await self.open(ex, SYMBOL, "buy", 5)  # 300,000 notional: a cross liquidation price
        server.sim.set_price(SYMBOL, Decimal("60600"))
        [view] = derivatives.views(account(server), server.sim.market, SYMBOL)
        [position] = await held(ex, SYMBOL)
        check_position(ex, position, SYMBOL, dict.fromkeys(self.empty_position_fields, True))
        entry = view.position.entry_price  # the ask a tick over 60,000: market buys take it
        expected: dict[str, Any] = {
            "side": "long", "entryPrice": float(entry), "markPrice": 60600.0,
            "liquidationPrice": float(view.liquidation_price or 0), "leverage": 10.0,
            "marginMode": mode, "unrealizedPnl": float(5 * (Decimal(60600) - entry)),
            "initialMargin": float(self.ccxt_initial_margin(view)),
            "maintenanceMargin": float(self.ccxt_maintenance(view, position)),
        }
        for name, value in expected.items():
            if name in self.empty_position_fields:
                assert position[name] is None, name
            elif isinstance(value, str):
                assert position[name] == value, name
            else:
                assert position[name] == pytest.approx(value, rel=1e-6), name
        assert position["contracts"] * position["contractSize"] == pytest.approx(5)
        assert 50000 < expected["liquidationPrice"] < 60000
        if self.fetch_position_error is not None:
            with pytest.raises(self.fetch_position_error):
                await ex.fetch_position(SYMBOL)
        else:
            single = await ex.fetch_position(SYMBOL)
            assert (single["side"], single["contracts"]) == ("long", position["contracts"])

    @pytest.mark.asyncio
    @pytest.mark.parametrize("mode", ["cross", "isolated"])
    async def test_hedge_mode_holds_both_sides(
        self, server: SimulatorServer, make_exchange: ExchangeFactory, mode: str,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await raises(self.position_side_refused,
                     self.open(ex, SYMBOL, "buy", 0.01, self.hedge_params("long", False)))
        if mode == "isolated":
            await self.set_margin_mode(ex, mode, SYMBOL)
        await self.set_position_mode(ex, True, SYMBOL)
        await self.open(ex, SYMBOL, "buy", 0.02, self.hedge_params("long", False))
        await self.open(ex, SYMBOL, "sell", 0.01, self.hedge_params("short", False))
        positions = await held(ex, SYMBOL)
        sides = {p["side"]: p["contracts"] * p["contractSize"] for p in positions}
        assert sides == {"long": pytest.approx(0.02), "short": pytest.approx(0.01)}
        assert all(p["hedged"] for p in positions)
        model = account(server).perp
        assert {p.margin_mode.value for p in model.open_positions(SYMBOL)} == {mode}
        await self.open(ex, SYMBOL, "sell", 0.02, self.hedge_params("long", True))
        [short] = await held(ex, SYMBOL)
        assert short["side"] == "short"
        assert model.position(SYMBOL, PositionSide.LONG) is None
        assert model.position(SYMBOL, PositionSide.SHORT) is not None
        if self.fill_side_field is not None:  # fills name the position they traded
            trades = await ex.fetch_my_trades(SYMBOL)
            assert [t["info"][self.fill_side_field].lower() for t in trades] == [
                "long", "short", "long"]

    @pytest.mark.asyncio
    async def test_reduce_only_never_opens(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await self.open(ex, SYMBOL, "buy", 0.05)
        await raises(self.reduce_only_refused,
                     self.open(ex, SYMBOL, "sell", 0.1, {"reduceOnly": True}))
        await raises(self.reduce_only_refused,
                     self.open(ex, SYMBOL, "buy", 0.01, {"reduceOnly": True}))
        await self.open(ex, SYMBOL, "sell", 0.05, {"reduceOnly": True})
        assert await held(ex, SYMBOL) == []

    @pytest.mark.asyncio
    async def test_leverage_tiers_are_the_models(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        for symbol in (SYMBOL, ALT):
            fetched = await self.fetch_tiers(ex, symbol)
            ladder = tiers.tiers(server.sim.market.catalog.instruments[symbol])
            assert len(fetched) == len(ladder)
            for tier, model in zip(fetched, ladder, strict=True):
                check_leverage_tier(ex, tier)
                assert (tier["tier"], tier["maxLeverage"], tier["maintenanceMarginRate"]) == (
                    model.number, float(model.max_leverage), float(model.mmr))
                self.check_tier_bounds(ex, symbol, tier, model)

    def ccxt_initial_margin(self, view: derivatives.PositionView) -> Decimal:
        """The initial margin ccxt reports: the isolated margin, or cross IM at the mark."""
        return view.position.isolated_margin if view.isolated else view.initial_margin

    def ccxt_maintenance(self, view: derivatives.PositionView, position: Any) -> Decimal:
        """The maintenance margin ccxt reports for the position (the venue's own, by default)."""
        return view.maintenance

    def check_tier_bounds(self, ex: Any, symbol: str, tier: Any, model: tiers.Tier) -> None:
        assert (tier["minNotional"], tier["maxNotional"]) == (float(model.floor),
                                                              float(model.cap))

    # --- funding ---------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_funding_rate_and_history_are_the_schedules(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        schedule = server.sim.funding
        server.sim.set_funding_rate(SYMBOL, Decimal("0.000321"))
        rate = await ex.fetch_funding_rate(SYMBOL)
        assert rate["fundingRate"] == pytest.approx(0.000321)
        assert self.next_funding_ms(rate) == schedule.next_time_ms()
        assert schedule.next_time_ms() % FUNDING_INTERVAL_MS == 0
        rates = await ex.fetch_funding_rates([SYMBOL, ALT])
        assert set(rates) == {SYMBOL, ALT}
        history = await ex.fetch_funding_rate_history(SYMBOL, limit=5)
        assert len(history) == 5
        pair = server.sim.market.catalog.instruments[SYMBOL].pair
        for entry in history:
            check_funding_rate_history(ex, entry, SYMBOL)
            assert entry["timestamp"] % FUNDING_INTERVAL_MS == 0
            k = entry["timestamp"] // FUNDING_INTERVAL_MS
            assert entry["fundingRate"] == pytest.approx(float(schedule.rate(pair, k)))
        times = [e["timestamp"] for e in history]
        assert times == sorted(times) and times[-1] < schedule.next_time_ms()

    @pytest.mark.asyncio
    async def test_mark_price_candles_are_the_price_path(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        marks = await ex.fetch_mark_ohlcv(SYMBOL, "1h", limit=5)
        last = await ex.fetch_ohlcv(SYMBOL, "1h", limit=5)
        assert len(marks) == 5
        assert [m[:5] for m in marks] == [c[:5] for c in last]
        assert all(not m[5] for m in marks)

    def next_funding_ms(self, rate: Any) -> int:
        return int(rate["fundingTimestamp"])

    @pytest.mark.asyncio
    async def test_funding_across_a_funding_time_is_booked_once(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await self.open(ex, SYMBOL, "buy", 0.1)
        before = wallet(server)
        k = server.sim.set_funding_rate(SYMBOL, Decimal("0.001"))
        server.sim.advance(FUNDING_INTERVAL_MS / 1000)
        mark = server.sim.funding.mark_at(SYMBOL, k)
        expected = -Decimal("0.1") * mark * Decimal("0.001")
        for _ in range(3):  # every request touches the account; funding stays booked once
            payments = await self.funding_history(ex, SYMBOL)
            assert [p["amount"] * self.funding_paid_sign for p in payments] == [
                pytest.approx(float(expected))]
        assert wallet(server) == before + expected
        # Later, but before the next funding time (the wall clock's hour decides how far
        # that is: a fixed hour crossed 08:00 when run after 23:00).
        until_next_s = (server.sim.funding.next_time_ms() - server.sim.market.now_ms()) / 1000
        server.sim.advance(until_next_s / 2)
        assert len(await self.funding_history(ex, SYMBOL)) == 1

    # --- liquidation ---------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_isolated_position_liquidates_through_its_price(
        self, server: SimulatorServer, make_exchange: ExchangeFactory,
    ) -> None:
        ex = await self.ready(make_exchange, server)
        await self.set_margin_mode(ex, "isolated", ALT)
        await ex.set_leverage(20, ALT, self.isolated_leverage_params())
        await self.open(ex, ALT, "buy", 10)
        [position] = await held(ex, ALT)
        liq = position["liquidationPrice"]
        [view] = derivatives.views(account(server), server.sim.market, ALT)
        entry = view.position.entry_price  # the ask: market buys take it
        margin = 10 * entry / 20
        # qty*E - M - cum over qty*(1 - mmr), M = qty*E / 20, mmr 1 %, cum 0
        assert liq == pytest.approx(float((10 * entry - margin) / Decimal("9.9")), abs=0.01)
        funds = wallet(server)
        server.sim.set_price(ALT, Decimal(str(liq)) + Decimal("0.05"))
        assert len(await held(ex, ALT)) == 1
        server.sim.set_price(ALT, Decimal(str(liq)) - Decimal("0.05"))
        assert await held(ex, ALT) == []
        assert wallet(server) == funds - margin  # the isolated margin, no more
        records = await self.liquidation_records(ex, server, ALT)
        assert records

    def isolated_leverage_params(self) -> dict[str, Any]:
        return {}

    def check_liquidations(self, ex: Any, liquidations: list[Any], symbol: str) -> None:
        assert len(liquidations) == 1
        for entry in liquidations:
            check_liquidation(ex, entry, symbol)


def _contract_size(ex: Any, symbol: str) -> float:
    return float(ex.market(symbol).get("contractSize") or 1)
