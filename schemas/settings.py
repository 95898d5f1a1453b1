"""The machinery of NIGHTREC_* settings, shared by the job's and the API's config tables.

A table of `Setting` rows names every setting once; `resolve` turns flags (highest), the
environment, then values from a file into parsed, range-checked values. Nothing here reads
os.environ: the caller passes the environment in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the flag or variable."""


@dataclass(frozen=True)
class Setting:
    """One row of a settings table: field name, parser, help and range check.

    The default is the field's default in the config dataclass the table belongs to; the
    variable is NIGHTREC_<NAME> and the flag --<name-with-dashes>.
    """

    name: str
    type: Callable[[str], Any]
    help: str
    check: Callable[[Any], bool] | None = None

    @property
    def env(self) -> str:
        return "NIGHTREC_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def positive(value: Any) -> bool:
    return value > 0


def non_negative(value: Any) -> bool:
    return value >= 0


def fraction(value: Any) -> bool:
    return 0.0 <= value <= 1.0


def port(value: Any) -> bool:
    return 0 <= value <= 65535


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def choice(*options: str) -> Callable[[str], str]:
    """Return a parser accepting only the given strings."""

    def parse(text: str) -> str:
        if text not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return text

    return parse


def redact_url(url: str) -> str:
    """Hide the password of a URL such as redis://:secret@host:6379/0."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


_KINDS: dict[Any, str] = {int: "an integer", float: "a number", parse_bool: "true or false"}


def resolve(
    table: tuple[Setting, ...],
    flags: Mapping[str, Any] | None,
    env: Mapping[str, str] | None,
    file_values: Mapping[str, Any] | None = None,
    file_name: str = "",
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """Return the parsed value of every setting given by a flag, a variable or the file.

    Settings given nowhere are left out (the dataclass default applies). A setting named in
    `optional` given as "" means "not set" (None).
    """
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    names = {s.name for s in table}
    for source, keys in (("", given), (f"{file_name}: ", file_values or {})):
        unknown = sorted(set(keys) - names)
        if unknown:
            raise ConfigError(f"{source}unknown setting {unknown[0]!r}")
    env, file_values = env or {}, file_values or {}
    values: dict[str, Any] = {}
    for setting in table:
        if setting.name in given:
            raw, source = given[setting.name], setting.flag
        elif setting.env in env:
            raw, source = env[setting.env], setting.env
        elif setting.name in file_values:
            raw, source = file_values[setting.name], f"{file_name}: {setting.name}"
        else:
            continue
        empty = raw == "" and setting.name in optional
        values[setting.name] = None if empty else parse(setting, raw, source)
    return values


def parse(setting: Setting, raw: Any, source: str) -> Any:
    """Parse one raw value (a string, or a typed value from a file or a caller)."""
    try:
        if isinstance(raw, str):
            value = setting.type(raw.strip() if setting.type in (int, float) else raw)
        elif setting.type is float and isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif setting.type in (int, parse_bool) and type(raw) is (
            int if setting.type is int else bool
        ):
            value = raw
        elif isinstance(raw, tuple | list) and not isinstance(raw, str):
            value = setting.type(",".join(map(str, raw)))
        else:
            raise ValueError(f"expected {_KINDS.get(setting.type, 'a string')}, got {raw!r}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if setting.check and not setting.check(value):
        raise ConfigError(f"{source}: {value!r} is out of range ({setting.help})")
    return value
