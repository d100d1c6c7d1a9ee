from django.core.management.base import BaseCommand

from maps.models import Role, Room
from maps.services import invite_create, room_create


class Command(BaseCommand):
    help = "Create a demo room when there is none; print where to open the service."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options):
        base = f"http://{options['host']}:{options['port']}"
        room = Room.objects.order_by("created").first()
        if room is None:
            room, _owner = room_create(name="Demo room", owner_name="Demo owner")
        invite = room.invites.filter(revoked=False, role=Role.MEMBER).first()
        if invite is None or not invite.is_usable():
            invite = invite_create(room=room)
        self.stdout.write(
            f"\ngeoshare is starting on {base}/\n"
            f"  create a room:         {base}/\n"
            f"  join '{room.name}':  {base}{invite.path()}\n"
            f"  play a track into it:  .venv/bin/python manage.py replay_gpx {room.public_id}"
            " ../shared/data/gpx/cerknicko-jezero.gpx --member Walker --speed 20\n"
        )
