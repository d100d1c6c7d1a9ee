import orjson
from django.core.management.base import BaseCommand, CommandError

from maps.management.commands._common import get_room
from maps.models import Role
from maps.services import member_create


class Command(BaseCommand):
    help = "Add a member with a device key to a room; print the member id and the key once."

    def add_arguments(self, parser):
        parser.add_argument("room", help="the room's public id")
        parser.add_argument("name")
        parser.add_argument("--role", choices=[Role.MEMBER, Role.VIEWER], default=Role.MEMBER)
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options):
        room = get_room(options["room"])
        try:
            member, key = member_create(room=room, name=options["name"], role=options["role"])
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(orjson.dumps({"member": member.pk, "key": key}).decode())
        else:
            self.stdout.write(f"member: {member.pk}\nkey: {key}  (shown once; only its hash is stored)")
