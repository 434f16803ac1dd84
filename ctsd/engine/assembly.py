"""One engine, put together from a stored record, its validated config and the resources
its connection opened: the broker for its mode and market, and its perpetuals session.

Why a function of its own: the manager builds engines this way, and so do the
benchmarks and the tests that drive an engine cycle by cycle; there is one
place that decides which broker a (mode, market) pair trades through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ctsd.clock import Clock
from ctsd.engine.backend import EngineResources
from ctsd.engine.brokers.base import Broker
from ctsd.engine.brokers.live import LiveBroker, reconcile_phase
from ctsd.engine.brokers.live_margin import LiveMarginBroker
from ctsd.engine.brokers.live_perp import DEFAULT_FUNDING_POLL_S, LivePerpBroker
from ctsd.engine.brokers.paper import PaperBroker, PaperOptionBroker
from ctsd.engine.brokers.paper_margin import PaperMarginBroker
from ctsd.engine.brokers.paper_perp import PaperPerpBroker
from ctsd.engine.config import EngineConfig, TradingMode, ValidatedConfig
from ctsd.engine.engine import Engine
from ctsd.engine.lease_ports import Lease
from ctsd.engine.margin_session import MarginSession
from ctsd.engine.option_session import OptionSession
from ctsd.engine.perp_session import FUNDING_TERMS_S, PerpSession
from ctsd.engine.status import EngineStatus
from ctsd.engine.store_ports import EngineRecord, EngineStore
from ctsd.errors import FailedPrecondition
from ctsd.strategies.model import MarketKind

T = TypeVar("T")


def assemble_engine(
    record: EngineRecord, validated: ValidatedConfig, resources: EngineResources,
    store: EngineStore, clock: Clock, publish: Callable[[EngineStatus], None], *,
    funding_poll_s: float = DEFAULT_FUNDING_POLL_S, lease: Lease | None = None,
) -> Engine:
    config = validated.config
    perp = None
    if resources.kind is MarketKind.PERPETUAL:
        perp_market = _offered(resources.perp_market, record, "no perpetuals market data")
        account = _live_only(resources.perp_account, config, record, "perpetuals")
        perp = PerpSession(config, resources.modes, perp_market, account,
                           record.connection_id,
                           terms_s=FUNDING_TERMS_S if resources.events is not None else None)
    margin: MarginSession | None = None
    options: OptionSession | None = None
    if resources.kind is MarketKind.MARGIN:
        margin_market = _offered(resources.margin_market, record, "no margin lending terms")
        lender = _live_only(resources.margin_account, config, record, "margin")
        margin = MarginSession(config, resources.modes.margin_mode, margin_market, lender,
                               record.connection_id)
        broker = _margin_broker(record, config, resources, margin, clock, funding_poll_s)
    elif resources.kind is MarketKind.OPTION:
        options, broker = _options(record, config, resources, clock)
    else:
        broker = _broker(record, config, resources, perp, clock, funding_poll_s)
    return Engine(record, validated, broker, resources.market_data, store, clock, publish,
                  resources.events, perp, margin, options, lease)


def _offered(found: T | None, record: EngineRecord, lacking: str) -> T:
    """What the engine's market needs of the connection; refused when it offers `lacking`."""
    if found is None:
        raise FailedPrecondition(f"connections/{record.connection_id} offers {lacking}")
    return found


def _live_only(account: T | None, config: EngineConfig, record: EngineRecord,
               market: str) -> T | None:
    """The venue account a LIVE engine trades `market` through (refused without one);
    None on PAPER, whose account is simulated."""
    if config.mode is not TradingMode.LIVE:
        return None
    if account is None:
        raise FailedPrecondition(
            f"connections/{record.connection_id} cannot trade {market} live")
    return account


def _options(record: EngineRecord, config: EngineConfig, resources: EngineResources,
             clock: Clock) -> tuple[OptionSession, Broker]:
    """Options: the contracts' session, and PAPER's account of contracts or LIVE orders."""
    option_market = _offered(resources.option_market, record, "no option contracts' terms")
    if config.mode is TradingMode.LIVE:
        if resources.orders is None:
            raise FailedPrecondition("LIVE trading needs an order client")
        if resources.option_account is None:
            raise FailedPrecondition(
                f"connections/{record.connection_id} cannot read option positions")
        live = LiveBroker(resources.orders, config.symbols, clock, check_before_place=False)
        return OptionSession(config, option_market, record.connection_id,
                             account=resources.option_account), live
    paper = PaperOptionBroker(config.paper, clock)
    return OptionSession(config, option_market, record.connection_id,
                         paper.settle), paper


def _margin_broker(record: EngineRecord, config: EngineConfig, resources: EngineResources,
                   margin: MarginSession, clock: Clock, poll_s: float) -> Broker:
    if config.mode is TradingMode.LIVE:
        if resources.orders is None or margin.account is None:
            raise FailedPrecondition("LIVE trading needs an order client")
        return LiveMarginBroker(resources.orders, margin.account, config.symbols, clock,
                                poll_s=poll_s, policy=config.on_position_mismatch,
                                check_before_place=False, updates=resources.order_updates,
                                reconcile_phase=reconcile_phase(record.connection_id))
    return PaperMarginBroker(config.paper, clock, margin.market, config.symbols,
                             config.leverage)


def _broker(record: EngineRecord, config: EngineConfig, resources: EngineResources,
            perp: PerpSession | None, clock: Clock, funding_poll_s: float) -> Broker:
    if config.mode is TradingMode.LIVE:
        if resources.orders is None:
            raise FailedPrecondition("LIVE trading needs an order client")
        # Client order ids carry a round number the session never reuses (reserved
        # after reconciliation found any order a crash left unrecorded,
        # `ctsd.engine.rounds`), so a first attempt's id is new to the venue: asking
        # for it first would only add a round trip between market data and the order.
        # Retries still ask, and reconciliation resolves whatever a crash left.
        # On a WebSocket connection fills and order states arrive by the private stream
        # (spot, margin and perpetuals, see `ctsd.wiring.engine_exchange`), REST
        # reconciling, each engine's periodic reconciliation at its own phase.
        phase = reconcile_phase(record.connection_id)
        if perp is not None and perp.account is not None:
            return LivePerpBroker(resources.orders, perp.account, config.symbols, clock,
                                  funding_poll_s=funding_poll_s, check_before_place=False,
                                  updates=resources.order_updates,
                                  positions=resources.position_updates, reconcile_phase=phase)
        return LiveBroker(resources.orders, config.symbols, clock, check_before_place=False,
                          updates=resources.order_updates, reconcile_phase=phase)
    if perp is not None and resources.perp_market is not None:
        return PaperPerpBroker(config.paper, clock, resources.modes, config.leverage,
                               resources.perp_market, config.symbols)
    return PaperBroker(config.paper, clock)
