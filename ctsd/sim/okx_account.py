"""OKX v5 own fills, order history and fee rates.

- `trade/fills` (3 days) and `trade/fills-history` (3 months, `instType` required):
  newest first, `limit` 1..100 (default 100), `after`/`before` by `billId` (older /
  newer than), `begin`/`end` by time. Fees are negative (a charge) in `feeCcy`: a spot
  buy pays in the base currency, a sell in the quote, a swap in USDT; `execType` T/M.
- `trade/orders-history` (7 days) and `orders-history-archive` (3 months):
  `instType` required, filled and canceled orders, newest first, `after`/`before` by
  `ordId`, `state`, `ordType`.
- `account/trade-fee`: the Lv1 rates, negative as OKX prints them (`makerU`/`takerU`
  for USDT-margined swaps).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ctsd.sim import okx_wire as render
from ctsd.sim.accounts import SPOT_WALLET, Account, Fill, Permission
from ctsd.sim.market import Instrument, InstrumentKind
from ctsd.sim.okx_order_wire import pos_side
from ctsd.sim.ratelimit import RateRule
from ctsd.sim.wire import plain

if TYPE_CHECKING:
    from ctsd.sim.okx import Call, OkxSim

DAY_MS = 86_400_000
PAGE_MAX = 100
_T = TypeVar("_T")


class OkxAccount:
    def __init__(self, state: OkxSim) -> None:
        self.state = state

    def rows(self) -> list[tuple[Any, ...]]:
        read = Permission.READ
        return [
            ("GET", "trade/fills", read, self.fills, RateRule(60, 2), "UID"),
            ("GET", "trade/fills-history", read, self.fills_history, RateRule(10, 2), "UID"),
            ("GET", "trade/orders-history", read, self.orders_history, RateRule(40, 2), "UID"),
            ("GET", "trade/orders-history-archive", read, self.orders_archive,
             RateRule(20, 2), "UID"),
            ("GET", "account/trade-fee", read, self.trade_fee, RateRule(5, 2), "UID"),
        ]

    # --- fills ------------------------------------------------------------------------

    async def fills(self, call: Call) -> Any:
        return self._fills(call, 3 * DAY_MS, type_required=False)

    async def fills_history(self, call: Call) -> Any:
        return self._fills(call, 90 * DAY_MS, type_required=True)

    def _fills(self, call: Call, keep_ms: int, *, type_required: bool) -> Any:
        inst_type = call.require("instType") if type_required else call.params.get("instType")
        inst_id, ord_id = call.params.get("instId"), call.params.get("ordId")
        oldest = self.state.sim.clock.now_ms() - keep_ms
        catalog = self.state.sim.market.catalog.instruments
        fills = [f for f in reversed(call.owner().fills) if f.time_ms >= oldest
                 and inst_type in (None, "", _fill_type(f, catalog[f.symbol]))
                 and inst_id in (None, "", render.inst_id(catalog[f.symbol]))
                 and ord_id in (None, "", str(f.order_id))]
        page = _page(call, fills, lambda f: f.trade_id, lambda f: f.time_ms)
        return render.ok([self._fill(f, call.owner()) for f in page])

    def _fill(self, f: Fill, account: Account) -> dict[str, Any]:
        inst = self.state.sim.market.catalog.instruments[f.symbol]
        order_fees = self.state.fees(inst.kind)
        rate = order_fees.maker if f.maker else order_fees.taker
        swap = inst.kind is InstrumentKind.LINEAR
        return {
            "instType": _fill_type(f, inst), "instId": render.inst_id(inst),
            "tradeId": str(f.trade_id), "ordId": str(f.order_id), "clOrdId": f.client_id,
            "billId": str(f.trade_id), "subType": "1" if f.side.value == "buy" else "2",
            "tag": "", "fillPx": plain(f.price), "fillSz": render.size(inst, f.qty),
            "fillIdxPx": plain(f.price), "fillPnl": plain(f.realized_pnl),
            "fillPxVol": "", "fillPxUsd": "", "fillMarkVol": "", "fillFwdPx": "",
            "fillMarkPx": plain(f.price) if swap else "", "side": f.side.value,
            "posSide": pos_side(account.orders[f.order_id]) if swap else "",
            "execType": "M" if f.maker else "T",
            "feeCcy": f.fee_asset, "fee": plain(-f.fee), "feeRate": plain(-rate),
            "ts": str(f.time_ms), "fillTime": str(f.time_ms),
        }

    # --- orders -------------------------------------------------------------------------

    async def orders_history(self, call: Call) -> Any:
        return self._orders(call, 7 * DAY_MS)

    async def orders_archive(self, call: Call) -> Any:
        return self._orders(call, 90 * DAY_MS)

    def _orders(self, call: Call, keep_ms: int) -> Any:
        inst_type = call.require("instType")
        inst_id, state = call.params.get("instId"), call.params.get("state")
        ord_type = call.params.get("ordType")
        oldest = self.state.sim.clock.now_ms() - keep_ms
        account = call.owner()
        rendered = [self.state.render_order(account, o)
                    for o in sorted(account.orders.values(), key=lambda o: -o.id)
                    if not o.status.is_open and not o.untriggered and o.updated_ms >= oldest]
        chosen = [r for r in rendered if r["instType"] == inst_type
                  and inst_id in (None, "", r["instId"]) and state in (None, "", r["state"])
                  and ord_type in (None, "", r["ordType"])]
        page = _page(call, chosen, lambda r: int(r["ordId"]), lambda r: int(r["uTime"]))
        return render.ok(page)

    # --- fee rates -------------------------------------------------------------------------

    async def trade_fee(self, call: Call) -> Any:
        inst_type = call.require("instType")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            raise render.bad_param("instType")
        kind = InstrumentKind.LINEAR if inst_type == "SWAP" else InstrumentKind.SPOT
        fees = self.state.fees(kind)
        maker, taker = plain(-fees.maker), plain(-fees.taker)
        usdt = inst_type == "SWAP"
        return render.ok([{
            "category": "1", "delivery": "", "exercise": "", "instType": inst_type,
            "level": "Lv1", "maker": "" if usdt else maker, "taker": "" if usdt else taker,
            "makerU": maker if usdt else "", "takerU": taker if usdt else "",
            "makerUSDC": "", "takerUSDC": "", "ruleType": "normal", "fiat": [],
            "ts": str(self.state.sim.clock.now_ms()),
        }])


def _page(call: Call, items: Sequence[_T], id_of: Callable[[_T], int],
          time_of: Callable[[_T], int]) -> list[_T]:
    """OKX's paging over a newest-first list: `after` (older than id), `before` (newer than
    id), `begin`/`end` (ms, inclusive), `limit` (1..100, default 100)."""
    def number(name: str) -> int | None:
        raw = call.params.get(name)
        if not raw:
            return None
        if not raw.isdigit():
            raise render.bad_param(name)
        return int(raw)

    after, before = number("after"), number("before")
    begin, end, limit = number("begin"), number("end"), number("limit") or PAGE_MAX
    chosen = [i for i in items
              if (after is None or id_of(i) < after) and (before is None or id_of(i) > before)
              and (begin is None or time_of(i) >= begin) and (end is None or time_of(i) <= end)]
    if before is not None and after is None:  # the page nearest to `before`
        return chosen[-min(limit, PAGE_MAX):]
    return chosen[:min(limit, PAGE_MAX)]


def _fill_type(f: Fill, inst: Instrument) -> str:
    """A fill of a margin order (its position wallet, `ctsd.sim.okx_margin`) is MARGIN."""
    return "MARGIN" if f.wallet != SPOT_WALLET else render.inst_type(inst)
