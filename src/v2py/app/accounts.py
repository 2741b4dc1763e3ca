"""The users of a VLESS or Trojan inbound (4.34's ``Validator`` of those packages), as
connections look them up and as the API's AlterInbound changes them
(:class:`~v2py.app.commander.services.AccountTable`)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["KeyedAccounts"]


class _User(Protocol):
    @property
    def email(self) -> str: ...


U = TypeVar("U", bound=_User)


class KeyedAccounts(Generic[U]):
    """Users by their secret (``key(user)``: a VLESS id, a Trojan password's key): a
    later user with the same secret takes it over; an email, when given, is unique
    case-insensitively; removing an email frees its user's secret. ``parse`` makes a
    user of an API account message's bytes, a level and an email (raising ValueError
    with 4.34's reason)."""

    def __init__(
        self,
        users: Iterable[U],
        *,
        key: Callable[[U], Hashable],
        parse: Callable[[bytes, int, str], U],
        account_type: str,
        error_prefix: str,
    ) -> None:
        self.by_key: dict[Hashable, U] = {}
        self._by_email: dict[str, U] = {}
        self._key = key
        self._parse = parse
        self.account_type = account_type
        self.error_prefix = error_prefix
        for user in users:
            self.add(user)

    def parse_account(self, account: bytes, level: int, email: str) -> U:
        return self._parse(account, level, email)

    def add(self, user: object) -> None:
        new: U = user  # type: ignore[assignment]  # (AccountTable passes what parse made)
        if new.email:
            lowered = new.email.lower()
            if lowered in self._by_email:
                raise ValueError(f"User {new.email} already exists.")
            self._by_email[lowered] = new
        self.by_key[self._key(new)] = new

    def remove(self, email: str) -> None:
        if not email:
            raise ValueError("Email must not be empty.")
        user = self._by_email.pop(email.lower(), None)
        if user is None:
            raise ValueError(f"User {email} not found.")
        self.by_key.pop(self._key(user), None)
