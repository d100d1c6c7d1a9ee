from django.apps import AppConfig


class MapsConfig(AppConfig):
    name = "maps"
    verbose_name = "geoshare maps"

    def ready(self):
        # The admin is SimpleAdminConfig (no autodiscovery): register ours here.
        from maps import admin  # noqa: F401
