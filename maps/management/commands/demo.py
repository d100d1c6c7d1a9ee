from django.conf import settings
from django.core.management.base import BaseCommand

from maps.models import Role
from maps.ops.demo import OWNER_LINK_MINUTES, TRACK, WALKER_NAME, demo_room
from maps.services import invite_create, signin_link_create


class Command(BaseCommand):
    help = ("Make the demo room (with its walker) when there is none; print a one-time "
            "owner sign-in link, its invite link, and where to open the service.")

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, **options):
        base = f"http://{options['host']}:{options['port']}"
        room, owner = demo_room()
        invite = room.invites.filter(revoked=False, role=Role.MEMBER).first()
        if invite is None or not invite.is_usable():
            invite = invite_create(room=room)
        _link, token = signin_link_create(member=owner, minutes=OWNER_LINK_MINUTES,
                                          by_command=True)
        walker = ("walks in it a few seconds after the server starts"
                  if settings.GEOSHARE["DEMO_WALKER"] else "is off (GEOSHARE_DEMO_WALKER=0)")
        track = TRACK.relative_to(settings.BASE_DIR)
        self.stdout.write(
            f"\ngeoshare is starting on {base}/\n"
            f"  open '{room.name}' as its owner (one-time link, {OWNER_LINK_MINUTES} min):\n"
            f"                         {base}/signin/{token}/\n"
            f"  join '{room.name}':  {base}{invite.path()}\n"
            f"  '{WALKER_NAME}' {walker}\n"
            f"  create a room:         {base}/\n"
            f"  play a track into it:  .venv/bin/python manage.py replay_gpx {room.public_id}"
            f" {track} --member Walker --speed 20\n"
        )
