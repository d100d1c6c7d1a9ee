"""The app's configuration, and where its layers are wired together at start-up.

The imports in :meth:`MapsConfig.ready` are function-level because Django allows
models to be imported only once the app registry is ready (Django's documented place
for start-up work); they run down the layers, never up.
"""

from django.apps import AppConfig


class MapsConfig(AppConfig):
    name = "maps"
    verbose_name = "geoshare maps"

    def ready(self) -> None:
        """Register the admin, and the callbacks that let a lower layer report upwards.

        - the history writer's commits go to the one publisher
          (:func:`maps.services.publish.install`);
        - the publisher's ``keys.forget`` reaches this process's key cache at once, and
          the key cache's forgetting reaches the OwnTracks friends answers;
        - the hub gives the metrics their gauge functions (on import of
          :mod:`maps.realtime.hub`).
        """
        from maps import admin  # noqa: F401  (SimpleAdminConfig: no autodiscovery)
        from maps.access import keycache
        from maps.ingest import friends
        from maps.realtime import hub  # noqa: F401  (registers the metrics' gauges)
        from maps.services import publish

        publish.install()
        publish.on_forget(keycache.forget)
        keycache.on_forget(friends.keys_forgotten)
