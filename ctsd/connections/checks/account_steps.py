"""The steps of a connection test that depend on its api type: margin and options.

A margin connection's key must be allowed to borrow (where the venue has such a
permission), and its account must lend: the test reads the margin account
(margin level, what is owed and its interest) and says what is missing. An
options connection's key must be allowed to trade options; the test lists the
option contracts (underlyings, settle assets, the next expiry) and reads the
options account. Each failure names its class and a remedy; what an engine start
will change (Bybit's spot-margin switch) or what merely stops an engine from
trading yet (an empty wallet) is a warning, because the key works.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from ctsd.connections.checks.probe import ExchangeProbe
from ctsd.connections.checks.results import FailureClass
from ctsd.connections.checks.run import StepFailed, TestRun
from ctsd.exchanges.model import Debt, KeyPermissions, MarginAccount
from ctsd.exchanges.spec import ApiType

MARGIN_PERMISSION_REMEDY = ("enable margin (borrowing) on the key, e.g. Binance's \"Enable "
                            "Margin Loan, Repay & Transfer\"; or change the connection's api type")
OPTIONS_PERMISSION_REMEDY = ("enable options trading on the key (Binance \"Enable European "
                             "Options\", Bybit \"Options\"); or change the connection's api type")


def permission_lines(run: TestRun, permissions: KeyPermissions) -> list[str]:
    """The granted names of the api type's own permission, and a failure where the key
    lacks it (raises StepFailed after recording it)."""
    api_type = run.conn.api_type
    flag, name, remedy = {
        ApiType.MARGIN: (permissions.margin, "margin", MARGIN_PERMISSION_REMEDY),
        ApiType.OPTIONS: (permissions.options, "options", OPTIONS_PERMISSION_REMEDY),
    }.get(api_type, (None, "", ""))
    if not name:
        return []
    if flag is None:
        run.info(f"{run.conn.exchange} has no {name} permission of its own: the key's trade "
                 "permission covers it")
        return []
    if not flag:
        run.fail(FailureClass.PERMISSION,
                 f"the key may not trade {name} (the {name} permission is off)", remedy)
        raise StepFailed
    return [name]


async def margin_step(run: TestRun, probe: ExchangeProbe) -> None:
    run.step = "margin"
    wanted = run.conn.margin_mode.value
    async with run.calling():
        account = await probe.margin_account(wanted)
    if account is None:
        run.fail(FailureClass.EXCHANGE_ERROR, f"{run.conn.exchange} lends on no margin here",
                 "change the connection's api type")
        raise StepFailed
    run.info(f"{account.mode} margin account: {_level(account)}; {_debts(account.debts)}"
             f"{_equity(account)}")
    if account.mode != wanted:
        run.warn(f"{run.conn.exchange} lends on spot margin {account.mode} only; the "
                 f"connection says {wanted}",
                 f"set the connection's margin_mode to {account.mode}")
    if not account.enabled:
        if account.engine_enables:
            run.warn(f"{account.remark}: an engine start switches it on",
                     "nothing to do, or switch it on yourself")
        else:
            run.fail(FailureClass.PERMISSION, account.remark or "the account may not borrow",
                     "enable margin trading on the exchange account")
            raise StepFailed
    if account.equity is not None and account.equity <= 0 and not account.owes:
        run.warn(f"the {account.mode} margin account holds nothing: engines have no collateral",
                 "transfer collateral to the margin account")


async def options_step(run: TestRun, probe: ExchangeProbe) -> None:
    run.step = "options"
    async with run.calling():
        chain = await probe.option_chain()
        account = await probe.options_account()
    if chain.contracts == 0 or account is None:
        run.fail(FailureClass.EXCHANGE_ERROR, f"{run.conn.exchange} lists no options here",
                 "check the api type and testnet setting of the connection")
        raise StepFailed
    expiry = (datetime.fromtimestamp(chain.next_expiry_ms / 1000, UTC).strftime(
        "%Y-%m-%d %H:%M UTC") if chain.next_expiry_ms else "unknown")
    run.info(f"{chain.contracts} option contracts on {', '.join(chain.underlyings)}, settled "
             f"in {', '.join(chain.settles)}; next expiry {expiry}")
    if not account.enabled:
        run.fail(FailureClass.PERMISSION, account.remark or "options trading is not activated",
                 "activate options trading on the exchange account")
        raise StepFailed
    held = [h for h in account.balances if h.total > 0]
    if not held:
        run.warn(f"the options account holds no {', '.join(chain.settles)}: engines cannot pay "
                 "premiums", "transfer funds to the options account")
        return
    run.info("options account: " + ", ".join(
        f"{_number(h.total)} {h.asset} equity ({_number(h.free)} available)" for h in held))


def _level(account: MarginAccount) -> str:
    if account.level is not None:
        return f"{account.level_name} {_number(account.level)}"
    return "nothing owed" if not account.owes else f"{account.level_name} not reported"


def _debts(debts: tuple[Debt, ...]) -> str:
    if not debts:
        return "nothing borrowed"
    return "borrowed " + ", ".join(
        f"{_number(d.borrowed)} {d.asset} (interest {_number(d.interest)})" for d in debts)


def _equity(account: MarginAccount) -> str:
    if account.equity is None:
        return ""
    return f"; net worth {_number(account.equity)} {account.equity_asset}"


def _number(value: Decimal) -> str:
    """Up to 8 places, no trailing zeros, thousands grouped."""
    text = f"{value.quantize(Decimal('0.00000001')).normalize():,f}"
    return text if "." not in text else text.rstrip("0").rstrip(".")
