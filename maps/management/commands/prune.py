from django.core.management.base import BaseCommand

from maps.services import positions_prune


class Command(BaseCommand):
    help = "Delete positions older than their room's retention. Safe to run from cron."

    def handle(self, *args, **options):
        deleted = positions_prune()
        self.stdout.write(f"deleted {deleted} positions")
