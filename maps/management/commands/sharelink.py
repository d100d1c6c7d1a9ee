"""``manage.py sharelink ROOM MEMBER_ID [--minutes N] [--json]``: make a watch-me link."""

import orjson
from django.core.management.base import BaseCommand, CommandError

from maps.management.commands._common import get_room, public_url
from maps.models import Member
from maps.services import NotAllowed, watch_link_create
from maps.storage.selectors import to_ms


class Command(BaseCommand):
    help = ("Make a watch-me link to a member's marker; print its URL and when it expires "
            "at the latest (epoch ms; a link without --minutes ends with the share).")

    def add_arguments(self, parser):
        parser.add_argument("room", help="the room's public id")
        parser.add_argument("member", type=int, help="the member's id")
        parser.add_argument("--minutes", type=int, default=None,
                            help="how long it works, 15 to 10080 (default: until the "
                                 "member's share ends)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        room = get_room(options["room"])
        member = Member.objects.filter(room=room, pk=options["member"]).first()
        if member is None:
            raise CommandError(f"no member {options['member']} in room {room.public_id}")
        try:
            link, token = watch_link_create(member=member, minutes=options["minutes"])
        except (ValueError, NotAllowed) as exc:
            raise CommandError(str(exc)) from exc
        url = public_url(f"/w/{token}/")
        expires = to_ms(link.expires_at)
        bound = link.bound_to_share
        if options["json"]:
            self.stdout.write(orjson.dumps({"url": url, "expires": expires,
                                            "ends_with_share": bound}).decode())
        else:
            ends = "when the share ends, at the latest " if bound else ""
            self.stdout.write(f"{url}\nexpires: {ends}{expires}")
