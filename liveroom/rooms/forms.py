import unicodedata

from django import forms
from django.utils.translation import gettext_lazy as _

from liveroom.rooms.models import Member


def is_invisible(char: str) -> bool:
    # Control (Cc), format (Cf: bidi overrides, zero-width), unassigned, surrogate, private use.
    return unicodedata.category(char) in {"Cc", "Cf", "Cn", "Cs", "Co"}


class JoinForm(forms.Form):
    name = forms.CharField(
        max_length=Member.NAME_MAX_LENGTH,
        strip=True,
        error_messages={
            "required": _("Please enter a name."),
            "max_length": _(
                "Please use at most %(limit_value)d characters (this has %(show_value)d)."
            ),
        },
        widget=forms.TextInput(attrs={"autocomplete": "nickname", "autofocus": True}),
    )

    def clean_name(self) -> str:
        name = unicodedata.normalize("NFC", self.cleaned_data["name"])
        if any(is_invisible(char) for char in name):
            raise forms.ValidationError(
                _("Names cannot contain control characters or invisible formatting characters."),
                code="invisible",
            )
        return name
