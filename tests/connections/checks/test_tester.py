"""ConnectionTester with a scripted probe: step order, deadline, cancellation, redaction.

The exchange behaviour itself is tested against the simulator (tests/api);
here a fake probe stands in so that the tester's own rules can be shown one by
one, without a network.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from ctsd.connections.checks.results import FailureClass, LogLevel, TestResult, TestStatus
from ctsd.connections.model import ApiType, Connection, MarginMode, PositionMode
from ctsd.errors import ExchangeFailure
from ctsd.exchanges.model import (
    AccountModes,
    KeyPermissions,
    MarginAccount,
    OptionsAccount,
)
from tests.connections.checks.scripted import CREDENTIALS, ScriptedProbe, make_tester
from tests.store.test_connection_index import conn


async def events(probe: ScriptedProbe, timeout_s: float = 5.0) -> list[object]:
    return [e async for e in make_tester(probe, timeout_s).run(conn("c1"))]


@pytest.mark.asyncio
async def test_a_healthy_account_passes_every_step_in_order() -> None:
    probe = ScriptedProbe()
    found = await events(probe)
    result = found[-1]
    assert isinstance(result, TestResult) and result.status is TestStatus.SUCCESS
    assert [line.step for line in result.log_lines] == [
        "credentials", "markets", "clock", "balance", "permissions", "api_type", "latency",
    ]  # fmt: skip
    assert found[:-1] == list(result.log_lines)  # streamed exactly as stored
    assert result.balance_total == 100 + 0.5 * 60000
    assert [b.asset for b in result.balances] == ["BTC", "USDT"]  # dust left out, biggest first
    assert result.capabilities == ("read", "trade")
    assert result.clock_skew_s == pytest.approx(0.005) and result.latency_s == 0.002
    assert probe.closed


@pytest.mark.asyncio
async def test_the_first_failure_ends_the_test_with_its_class_and_remedy() -> None:
    bad_key = ExchangeFailure.of(FailureClass.AUTHENTICATION, "binance: bad key")
    probe = ScriptedProbe(balance_error=bad_key)
    result, waited = await make_tester(probe).test(conn("c1"))
    assert result.status is TestStatus.FAILED
    assert result.failure_class is FailureClass.AUTHENTICATION
    assert result.message == "balance: binance: bad key"
    assert result.remedy == FailureClass.AUTHENTICATION.remedy
    assert result.log_lines[-1].step == "balance" and result.log_lines[-1].level is LogLevel.ERROR
    assert waited == 0.25


@pytest.mark.asyncio
async def test_warnings_make_a_warning_result_and_the_api_type_can_fail_it() -> None:
    probe = ScriptedProbe(
        skew_ms=-3000.0, permissions=KeyPermissions(read=True, trade=False, withdraw=True)
    )
    result, _ = await make_tester(probe).test(conn("c1"))
    assert result.status is TestStatus.WARNING
    assert "behind" in result.log_lines[2].message
    assert result.message.count(";") == 2  # clock, cannot trade, can withdraw
    unusable, _ = await make_tester(ScriptedProbe(usable=False)).test(conn("c1"))
    assert unusable.failure_class is FailureClass.PERMISSION


@pytest.mark.asyncio
async def test_an_exchange_that_does_not_report_permissions_is_noted_not_failed() -> None:
    result, _ = await make_tester(ScriptedProbe(permissions=None)).test(conn("c1"))
    assert result.status is TestStatus.SUCCESS and result.capabilities == ("read",)


@pytest.mark.asyncio
async def test_a_hanging_exchange_fails_the_test_at_its_deadline() -> None:
    probe = ScriptedProbe(hang=asyncio.Event())
    result, _ = await make_tester(probe, timeout_s=0.1).test(conn("c1"))
    assert result.failure_class is FailureClass.TIMEOUT and result.status is TestStatus.FAILED
    assert probe.closed


@pytest.mark.asyncio
async def test_leaving_the_stream_cancels_the_test_and_closes_the_probe() -> None:
    probe = ScriptedProbe(hang=asyncio.Event())
    stream = make_tester(probe).run(conn("c1"))
    seen = [await anext(stream) for _ in range(3)]  # credentials, markets, clock
    await stream.aclose()
    assert [getattr(e, "step", "") for e in seen] == ["credentials", "markets", "clock"]
    assert probe.closed


@pytest.mark.asyncio
async def test_credentials_never_reach_a_message_even_when_the_exchange_echoes_them() -> None:
    echoed = f"bybit: apiKey {CREDENTIALS.api_key} sign=abc?secret={CREDENTIALS.secret}"
    probe = ScriptedProbe(balance_error=ExchangeFailure.of(FailureClass.AUTHENTICATION, echoed))
    result, _ = await make_tester(probe).test(conn("c1"))
    text = result.message + "".join(line.message for line in result.log_lines)
    for value in CREDENTIALS.values():
        assert value not in text


@pytest.mark.asyncio
async def test_a_bug_in_a_probe_is_an_internal_error_without_its_text() -> None:
    probe = ScriptedProbe(balance_error=KeyError("private detail"))
    result, _ = await make_tester(probe).test(conn("c1"))
    assert result.failure_class is FailureClass.EXCHANGE_ERROR
    assert "private detail" not in result.message and "internal error" in result.message


@pytest.mark.asyncio
async def test_the_account_uid_is_learned_into_the_result_and_logged_masked() -> None:
    result, _ = await make_tester(ScriptedProbe(uid="100000042")).test(conn("c1"))
    assert result.status is TestStatus.SUCCESS and result.account_uid == "100000042"
    [line] = [line for line in result.log_lines if line.step == "permissions"]
    assert line.message == "key permissions: read, trade; account uid ****0042"


@pytest.mark.asyncio
async def test_an_account_uid_that_cannot_be_read_leaves_key_scoping_and_passes() -> None:
    unreadable = ExchangeFailure.of(FailureClass.EXCHANGE_ERROR, "okx: malformed account uid")
    result, _ = await make_tester(ScriptedProbe(uid=unreadable)).test(conn("c1"))
    assert result.status is TestStatus.SUCCESS and result.account_uid is None
    [line] = [line for line in result.log_lines if line.step == "permissions"]
    assert line.level is LogLevel.INFO and "limits counted per key" in line.message


def perp(position: PositionMode = PositionMode.ONE_WAY,
         margin: MarginMode = MarginMode.CROSS) -> Connection:
    return replace(conn("p1"), api_type=ApiType.PERPETUAL_FUTURES, position_mode=position,
                   margin_mode=margin)


@pytest.mark.asyncio
async def test_a_perpetuals_account_matching_the_connection_passes() -> None:
    probe = ScriptedProbe(modes=AccountModes(False, (("*", "cross"),)))
    result, _ = await make_tester(probe).test(perp())
    assert result.status is TestStatus.SUCCESS
    derivatives = [line.message for line in result.log_lines if line.step == "derivatives"]
    assert derivatives == ["position mode one-way, as the connection says",
                           "margin mode cross, as the connection says"]


@pytest.mark.asyncio
async def test_a_perpetuals_account_in_other_modes_warns_what_a_start_changes() -> None:
    modes = AccountModes(True, (("BTC/USDT:USDT", "isolated"), ("ETH/USDT:USDT", "cross")))
    result, _ = await make_tester(ScriptedProbe(modes=modes)).test(perp())
    assert result.status is TestStatus.WARNING
    assert result.message == (
        "the account differs from the connection: position mode is hedge; an engine start "
        "switches it to one-way; 1 symbols are not cross (BTC/USDT:USDT); an engine start "
        "switches its symbols to cross")
    assert result.remedy.startswith("an engine start sets what the connection says")
    assert "position_mode / margin_mode" in result.remedy


@pytest.mark.asyncio
async def test_modes_kept_per_symbol_or_per_order_are_explained_not_warned() -> None:
    per_symbol = ScriptedProbe(modes=AccountModes(None, (("*", "isolated"),)))
    result, _ = await make_tester(per_symbol).test(perp(PositionMode.HEDGE, MarginMode.ISOLATED))
    assert result.status is TestStatus.SUCCESS
    assert any("keeps the position mode per symbol: an engine start sets hedge" in line.message
               for line in result.log_lines)
    per_order = ScriptedProbe(modes=AccountModes(False, ()))
    result, _ = await make_tester(per_order).test(perp())
    assert result.status is TestStatus.SUCCESS
    assert any("margin mode with every order: engines send cross" in line.message
               for line in result.log_lines)


@pytest.mark.asyncio
async def test_unreadable_modes_warn_but_a_spot_connection_never_asks() -> None:
    refused = ExchangeFailure.of(FailureClass.PERMISSION, "okx: no futures permission")
    result, _ = await make_tester(ScriptedProbe(modes=refused)).test(perp())
    assert result.status is TestStatus.WARNING
    assert "could not be read (okx: no futures permission)" in result.message
    spot, _ = await make_tester(ScriptedProbe(modes=refused)).test(conn("s1"))
    assert spot.status is TestStatus.SUCCESS


@pytest.mark.asyncio
async def test_a_margin_account_that_does_not_lend_fails_with_the_venues_remedy() -> None:
    """OKX's simple mode: the key works, the account cannot borrow until switched."""
    simple = MarginAccount("cross", False, None, "margin ratio", remark="simple mode")
    connection = replace(conn("c1", "okx"), api_type=ApiType.MARGIN)
    result, _ = await make_tester(ScriptedProbe(margin=simple)).test(connection)
    assert result.status is TestStatus.FAILED
    assert result.failure_class is FailureClass.PERMISSION
    assert result.message == "margin: simple mode"
    assert result.remedy == "enable margin trading on the exchange account"


@pytest.mark.asyncio
async def test_options_not_activated_on_the_account_fail_with_the_remedy() -> None:
    inactive = OptionsAccount((), enabled=False, remark="options trading is not activated")
    connection = replace(conn("c1", "okx"), api_type=ApiType.OPTIONS)
    result, _ = await make_tester(ScriptedProbe(options=inactive)).test(connection)
    assert result.failure_class is FailureClass.PERMISSION
    assert result.message == "options: options trading is not activated"
    assert result.remedy == "activate options trading on the exchange account"
    assert [line.step for line in result.log_lines][-2:] == ["options", "options"]
