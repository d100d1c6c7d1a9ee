"""One-time sign-in links: "Open on another device"."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from maps.models import (
    Member,
    SignInLink,
    hash_key,
    new_invite_token,
)
from maps.services.errors import SignInUnusable

# "Open on another device": how long a sign-in link works, and how many at a time.
SIGNIN_MINUTES = 10


MAX_SIGNIN_LINKS = 5


def signin_link_create(*, member: Member, minutes: int = SIGNIN_MINUTES,
                       by_command: bool = False) -> tuple[SignInLink, str]:
    """Make a one-time link that signs another browser in as ``member``.

    Returns ``(link, token)``; the token (192 random bits) is shown once, only its
    SHA-256 is stored. Works ``minutes`` minutes (1 to 1,440) and once.
    ``by_command``: a command on the server made it (``manage.py demo``), not a
    browser of the member, and the sign-in page says so. Raises
    ``ValueError`` for a duration out of range or past :data:`MAX_SIGNIN_LINKS`
    usable links (counted with the member's row locked, so requests at once cannot
    pass it).
    """
    if not 1 <= minutes <= 1440:
        raise ValueError("a sign-in link lasts 1 to 1,440 minutes")
    now = timezone.now()
    with transaction.atomic():
        # The member row locked, so that two requests cannot both make the last link.
        Member.objects.select_for_update().filter(pk=member.pk).first()
        usable = [link for link in member.signin_links.all() if link.is_usable(now)]
        if len(usable) >= MAX_SIGNIN_LINKS:
            raise ValueError(f"at most {MAX_SIGNIN_LINKS} sign-in links at a time: "
                             "revoke one")
        token = new_invite_token()
        link = SignInLink.objects.create(member=member, token_hash=hash_key(token),
                                         expires_at=now + timedelta(minutes=minutes),
                                         by_command=by_command)
    return link, token


def signin_link_redeem(*, token: str) -> Member:
    """Use a sign-in link: return its member (room loaded), and the link never works again.

    The use is written down (``used_at``, an aware UTC datetime) in the same
    transaction that checks the link.

    Raises :class:`SignInUnusable` for an unknown, used, expired or revoked token.
    """
    now = timezone.now()
    with transaction.atomic():
        # Locked: two browsers opening the same link at once must not both get in.
        link = (SignInLink.objects.select_for_update()
                .select_related("member__room").filter(token_hash=hash_key(token)).first())
        if link is None or not link.is_usable(now):
            raise SignInUnusable("this sign-in link is used, expired or revoked")
        link.used_at = now
        link.save(update_fields=["used_at"])
    return link.member


def signin_link_revoke(*, link: SignInLink) -> None:
    """Revoke a sign-in link that has not been used yet (a used one stays used).

    Raises nothing.
    """
    SignInLink.objects.filter(pk=link.pk).update(revoked=True)
