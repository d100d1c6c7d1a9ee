import orjson
from django.core.management.base import BaseCommand

from maps.management.commands._common import public_url
from maps.services import invite_create, room_create


class Command(BaseCommand):
    help = "Create a room; print its id and a member invite URL."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--owner", default="Owner", help="the owner's display name")
        parser.add_argument("--retention-days", type=int, default=None,
                            help="days of history to keep (0: live only)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        room, _owner = room_create(name=options["name"], owner_name=options["owner"],
                                   retention_days=options["retention_days"])
        invite = invite_create(room=room)
        url = public_url(invite.path())
        if options["json"]:
            self.stdout.write(orjson.dumps({"room": room.public_id, "invite_url": url}).decode())
        else:
            self.stdout.write(f"room: {room.public_id}\ninvite: {url}")
