"""`OrderCalls`: a LIVE engine's orders through an exchange client.

Place and cancel (in the ORDER lane, ahead of tests and polling), read and list
orders, by the venue's id or by the client order id the engine chose (the
lookups the venue declares in `ClientOrderIds`), and an order's own fills.
Amounts are base units both ways: what the venue counts in contracts is converted
here (`answers.in_base`). A perpetual order carries its hedge leg, reduce-only and
margin mode as the venue's `DerivativesProfile` names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ctsd.errors import ExchangeFailure, OrderRejection
from ctsd.exchanges import answers
from ctsd.exchanges.ccxt_calls import CcxtCalls
from ctsd.exchanges.ccxt_errors import malformed
from ctsd.exchanges.model import Order, Trade
from ctsd.exchanges.spec import ApiType
from ctsd.ratelimit import Lane


class OrderCalls(CcxtCalls):
    """The order calls of `ExchangeClient`."""

    def _in_base(self, order: Order) -> Order:
        return answers.in_base(order, self.contract_size(order.symbol))

    async def create_order(
        self, symbol: str, side: str, order_type: str, amount: Decimal,
        price: Decimal | None = None, *, client_id: str | None = None,
        reduce_only: bool = False, leg: str | None = None, margin_mode: str | None = None,
        extra_params: Mapping[str, Any] | None = None,
    ) -> Order:
        """`amount` in base units. Perpetuals: `leg` ("long"/"short") is the hedge-mode
        position the order trades, `margin_mode` goes where the venue takes it per order.
        `extra_params`: what the market's orders add as the venue names it (spot margin's
        borrowing, an option's trade mode)."""
        params: dict[str, Any] = dict(extra_params or {})
        if client_id:
            params[self._profile.client_order_ids.create] = client_id
        if self.target.api_type is ApiType.PERPETUAL_FUTURES:
            params.update(self._perpetual_params(reduce_only, leg, margin_mode))
        elif reduce_only:
            params["reduceOnly"] = True
        raw = await self._run(lambda: self._exchange.create_order(  # markets loaded by now
            symbol, order_type, side, float(amount / self.contract_size(symbol)),
            None if price is None else float(price), params), Lane.ORDER, signed=True)
        placed = self._in_base(answers.order(raw, symbol))
        # Some venues acknowledge with the id alone: fill in what we asked for.
        return replace(placed, side=placed.side or side, type=placed.type or order_type,
                       amount=placed.amount or amount,
                       price=placed.price if placed.price is not None else price)

    def _perpetual_params(self, reduce_only: bool, leg: str | None,
                          margin_mode: str | None) -> dict[str, Any]:
        venue = self._profile.derivatives
        if venue is None:
            return {"reduceOnly": True} if reduce_only else {}
        params: dict[str, Any] = {}
        if leg is not None:
            params[venue.hedge_param] = venue.hedge_values[leg]
        if reduce_only and (leg is None or venue.reduce_only_in_hedge):
            params["reduceOnly"] = True
        if margin_mode is not None and venue.order_margin_param:
            params[venue.order_margin_param] = margin_mode
        return params

    async def cancel_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.cancel_order(order_id, symbol),
                              Lane.ORDER, signed=True)
        return self._in_base(answers.order(raw, symbol, order_id))

    async def fetch_order(self, order_id: str, symbol: str) -> Order:
        raw = await self._run(lambda: self._exchange.fetch_order(order_id, symbol), signed=True)
        return self._in_base(answers.order(raw, symbol, order_id))

    async def fetch_order_trades(self, order_id: str, symbol: str) -> list[Trade]:
        """An order's own fills as the venue's fill history lists them, each with its fee:
        for venues whose order answer carries no fee (Binance's order query)."""
        param = self._profile.own_fills_order_param
        raw = await self._run(lambda: self._exchange.fetch_my_trades(
            symbol, None, None, {param: order_id} if param else {}), signed=True)
        return [t for t in answers.trades(raw, self.contract_size(symbol))
                if t.order_id == order_id]

    async def fetch_order_by_client_id(self, client_id: str, symbol: str) -> Order | None:
        """The order placed under `client_id`, any status; None when the venue has none.

        Asks each of the venue's declared lookups in turn (`ClientOrderIds.lookups`).
        """
        for method in self._profile.client_order_ids.lookups:
            found = await self._lookup(method, client_id, symbol)
            if found is not None:
                return found
        return None

    async def _lookup(self, method: str, client_id: str, symbol: str) -> Order | None:
        call = getattr(self._exchange, method)
        params = {self._profile.client_order_ids.lookup: client_id}
        if method != "fetch_order":  # a list the venue filtered by the id
            raw = await self._run(lambda: call(symbol, None, None, params), signed=True)
            found = next((o for o in answers.orders(raw) if o.client_id == client_id), None)
            return None if found is None else self._in_base(found)
        try:
            raw = await self._run(lambda: call(None, symbol, params), signed=True)
        except ExchangeFailure as exc:
            if exc.rejection is OrderRejection.ORDER_NOT_FOUND:
                return None
            raise
        return self._in_base(answers.order(raw, symbol))

    async def cancel_order_by_client_id(self, client_id: str, symbol: str) -> Order:
        """Cancels the open order placed under `client_id`, and answers it as it now stands.

        Binance's cancel answer is the order as it stands (status, amounts, executed
        quote), so it is the answer; a second request would only sit between a LIVE
        engine's cancel and the order its cycle places next. Cancel answers carry the id
        alone on Bybit and OKX and a count on Kraken, so there the order is read again for
        its status and fills. Fees come as `ExchangeOrders` completes them. An
        ORDER_NOT_FOUND rejection when nothing open goes by that id (unknown, or already
        filled or canceled).
        """
        params = {self._profile.client_order_ids.lookup: client_id}
        raw = await self._run(lambda: self._exchange.cancel_order(None, symbol, params),
                              Lane.ORDER, signed=True)
        if _whole_order(raw):  # its clientOrderId is the cancel request's own on Binance
            return replace(self._in_base(answers.order(raw, symbol)), client_id=client_id)
        found = await self.fetch_order_by_client_id(client_id, symbol)
        if found is None:
            raise malformed(f"{self.target.exchange} canceled {client_id} but no longer "
                            "finds it")
        return found

    async def fetch_open_orders(self, symbol: str | None = None) -> list[Order]:
        raw = await self._run(lambda: self._exchange.fetch_open_orders(symbol), signed=True)
        return [self._in_base(o) for o in answers.orders(raw)]


def _whole_order(raw: Any) -> bool:
    """Whether a cancel answer says everything a read of the order would: its id, a
    status and both amounts (ccxt leaves them None when the venue did not send them)."""
    return isinstance(raw, Mapping) and all(
        raw.get(key) not in (None, "") for key in ("id", "status", "amount", "filled"))
