"""Forms of the pages."""

from django import forms
from django.utils.translation import gettext_lazy as _

from maps.models import HistoryVisibility, Role


class RoomForm(forms.Form):
    name = forms.CharField(label=_("Room name"), max_length=100)
    your_name = forms.CharField(label=_("Your display name"), max_length=40)


class JoinForm(forms.Form):
    name = forms.CharField(label=_("Your display name"), max_length=40)


class InviteForm(forms.Form):
    label = forms.CharField(label=_("Label (only you see it)"), required=False, max_length=60,
                            widget=forms.TextInput(attrs={"placeholder": _("Family, Ski club…")}))
    role = forms.ChoiceField(
        label=_("Role"),
        choices=[(Role.MEMBER, _("Member (shares and views)")),
                 (Role.VIEWER, _("Viewer (only views)"))],
    )
    expires_in_hours = forms.IntegerField(
        label=_("Expires after (hours)"), required=False, min_value=1, max_value=24 * 365
    )
    max_uses = forms.IntegerField(label=_("Use limit"), required=False, min_value=1,
                                  max_value=100_000)


class RetentionForm(forms.Form):
    retention_days = forms.IntegerField(
        label=_("Keep history (days, 0 = live only)"), min_value=0, max_value=3650
    )


class HistoryVisibilityForm(forms.Form):
    history_visibility = forms.ChoiceField(
        label=_("Who may see the room's history"),
        choices=[
            (HistoryVisibility.EVERYONE, _("Everyone in the room, viewers too")),
            (HistoryVisibility.MEMBERS, _("Members, not viewers")),
            (HistoryVisibility.OWN, _("Each member only their own")),
        ],
        widget=forms.RadioSelect,
    )
