"""What no log line may contain, and the one function that takes it out of text.

`ctsd.logs.RedactingFilter` runs every record through `KnownSecrets.redact`
before any formatter sees it: the message with its arguments, every extra
field, and the rendered traceback. Two rules, because neither alone suffices:

- **Known values.** The daemon registers each credential it holds in plain
  text (created, updated or unsealed) with its connection id. Every form the
  value can take in a library's debug line is searched for: raw, base64
  (standard and URL-safe, with and without padding), hex (either case) and
  URL-encoded. An API key becomes its hint (`****abcd`, the only form a key
  ever takes in a log), a secret or passphrase `[redacted]`.
- **Sensitive names.** The value after a credential's header or field name
  (`X-MBX-APIKEY`, `OK-ACCESS-PASSPHRASE`, `API-Sign`, `signature=` in a
  query, ...) goes too, so a key the daemon has not registered yet (or a
  signature, which is not a secret but proves one) never shows either.

The registry is process-wide, like the logging it serves: `SECRETS`.
"""

from __future__ import annotations

import base64
import re
import threading
from collections import Counter
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MIN_LENGTH = 6
"""Shorter values are not searched for: they would redact ordinary words."""

KEY_NAMES = (
    "x-mbx-apikey", "x-bapi-api-key", "ok-access-key", "api-key", "apikey", "api_key",
    "x-api-key", "access-key", "accesskey",
)  # fmt: skip
"""Header and field names whose value is an API key: shown as its hint."""
SECRET_NAMES = (
    "x-bapi-sign", "ok-access-sign", "ok-access-passphrase", "api-sign", "signature", "sign",
    "passphrase", "secret", "api_secret", "authorization", "password", "token",
)  # fmt: skip
"""Header and field names whose value is a secret or proves one: `[redacted]`."""

_NAMED = re.compile(
    r"""(?P<name>(?<![\w-])(?:""" + "|".join(re.escape(n) for n in KEY_NAMES + SECRET_NAMES)
    + r"""))(?P<sep>['"]?\s*[:=]\s*(?:b?['"])?)(?P<value>[^'"\s,&}\]]+)""",
    re.IGNORECASE,
)


def key_hint(api_key: str) -> str:
    """`****abcd`: enough to recognise a key, too little to matter; short keys show nothing."""
    return "****" + api_key[-4:] if len(api_key) >= 12 else "****"


def forms(value: str) -> set[str]:
    """The spellings of `value` a log line may carry."""
    raw = value.encode()
    found = {value, raw.hex(), raw.hex().upper(), quote(value, safe=""), quote_plus(value)}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        found |= {text, text.rstrip("=")}
    return {f for f in found if len(f) >= MIN_LENGTH}


class KnownSecrets:
    """Credential values by owner (a connection id), and every form of them by text.

    Why a table and not one regular expression: a daemon with a thousand connections
    holds tens of thousands of forms; an alternation of them costs a scan per form at
    every position of every log line, and recompiling it on each unseal costs more.
    Here a line costs one dictionary probe per character (by the `MIN_LENGTH`
    characters starting there: about 40 µs for an access line); only where a form
    begins so is the text compared, at the lengths of the forms that do. Every
    position counts: a venue may glue a key to the digits before it (Bybit's
    "error sign! origin_string[<timestamp><api key>...]").
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], tuple[str, bool]] = {}
        self._lock = threading.Lock()  # records are logged from worker threads too
        # Changed in place under the lock; a reader on another thread only looks keys up.
        self._forms: dict[str, str] = {}
        """Form -> what is shown instead."""
        self._refs: Counter[str] = Counter()
        """Form -> how many remembered values have it (two connections may share a key)."""
        self._heads: dict[str, Counter[int]] = {}
        self._starts: dict[str, tuple[int, ...]] = {}
        """A form's first `MIN_LENGTH` characters -> the lengths of the forms that begin
        so, longest first (a longer form wins)."""

    def remember(self, owner: str, field: str, value: str, *, is_key: bool) -> None:
        """`value` from now on; it replaces what `owner` had under `field`."""
        if len(value) < MIN_LENGTH:
            return
        with self._lock:
            old = self._values.get((owner, field))
            if old == (value, is_key):
                return  # unsealed again: nothing new to look for
            if old is not None:
                self._drop(*old)
            self._values[(owner, field)] = (value, is_key)
            self._add(value, is_key)

    def forget(self, owner: str) -> None:
        with self._lock:
            for key in [k for k in self._values if k[0] == owner]:
                self._drop(*self._values.pop(key))

    def redact(self, text: str) -> str:
        known, starts = self._forms, self._starts
        if starts:
            text = _replace_known(text, known, starts)
        return _NAMED.sub(_named_value, text)

    def _add(self, value: str, is_key: bool) -> None:
        shown = key_hint(value) if is_key else REDACTED
        for form in forms(value):
            self._refs[form] += 1
            if self._refs[form] == 1:
                self._forms[form] = shown
                self._count_length(form, +1)

    def _drop(self, value: str, is_key: bool) -> None:
        for form in forms(value):
            self._refs[form] -= 1
            if self._refs[form] <= 0:
                del self._refs[form]
                self._forms.pop(form, None)
                self._count_length(form, -1)

    def _count_length(self, form: str, change: int) -> None:
        head = form[:MIN_LENGTH]
        lengths = self._heads.setdefault(head, Counter())
        lengths[len(form)] += change
        if lengths[len(form)] <= 0:
            del lengths[len(form)]
        if lengths:
            self._starts[head] = tuple(sorted(lengths, reverse=True))
        else:
            del self._heads[head]
            self._starts.pop(head, None)


def _replace_known(text: str, known: dict[str, str],
                   starts: dict[str, tuple[int, ...]]) -> str:
    get = starts.get
    hits = [i for i in range(len(text) - MIN_LENGTH + 1) if get(text[i:i + MIN_LENGTH])]
    parts: list[str] = []
    start = 0
    for i in hits:
        if i < start:
            continue  # inside a form already replaced
        for length in starts[text[i:i + MIN_LENGTH]]:
            shown = known.get(text[i:i + length])
            if shown is not None:
                parts += [text[start:i], shown]
                start = i + length
                break
    return "".join(parts) + text[start:] if parts else text


def _named_value(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    if value in (REDACTED, "<redacted>") or value.startswith("****"):
        return match.group(0)
    shown = key_hint(value) if name.lower() in KEY_NAMES else REDACTED
    return f"{name}{match.group('sep')}{shown}"


SECRETS = KnownSecrets()
"""The daemon's registry: filled by the connection layer, read by `ctsd.logs`."""
