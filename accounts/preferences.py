"""Each person's language and time zone: remembered on the user, applied to every request and email.

Language: a signed-in user's saved choice wins over the cookie and Accept-Language that
LocaleMiddleware looked at, so a choice follows the person to a new browser; on the first visit the
browser's language is saved. Time zone: the saved zone, else the browser's guess that base.js keeps in
the `tz` cookie (saved on the first signed-in visit), else UTC.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

from asgiref.sync import iscoroutinefunction, sync_to_async
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django.utils.decorators import sync_and_async_middleware
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import i18n

from accounts.models import User

TZ_COOKIE = "tz"


@cache
def zone_names() -> list[str]:
    """IANA zone names (Area/Location), sorted; legacy aliases such as "US/Pacific" left out."""
    legacy = ("Etc/", "SystemV/", "US/", "posix/", "right/")
    names = zoneinfo.available_timezones()
    return sorted(name for name in names if name == "UTC" or ("/" in name and not name.startswith(legacy)))


@cache
def _zone_set() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_or_none(name: str) -> zoneinfo.ZoneInfo | None:
    """The zone for an IANA name, or None for an empty, unknown or malformed one."""
    if not name or name not in _zone_set():
        return None
    return zoneinfo.ZoneInfo(name)


def _activate(request: HttpRequest, user: User | None) -> None:
    language = translation.get_language()  # LocaleMiddleware's pick, usually the saved choice via the cookie
    if (
        user is not None
        and user.language
        and user.language != language
        and translation.check_for_language(user.language)
    ):
        translation.activate(user.language)
        request.LANGUAGE_CODE = language = translation.get_language()
    guess = zone_or_none(request.COOKIES.get(TZ_COOKIE, ""))
    if user is not None and (not user.language or (not user.timezone and guess)):
        # First visit: what the browser asked for is remembered (emails and background work use it) until the
        # person picks otherwise with the switcher or on /settings/profile/.
        user.language = user.language or language
        user.timezone = user.timezone or (guess.key if guess else "")
        User.objects.filter(pk=user.pk).update(language=user.language, timezone=user.timezone)
    zone = (zone_or_none(user.timezone) if user is not None else None) or guess
    timezone.activate(zone) if zone else timezone.deactivate()


def _remember_language(request: HttpRequest, response: HttpResponse, user: User | None) -> HttpResponse:
    """Keep the language cookie in step with the saved choice, so pages before log-in match it too."""
    if user is not None and user.language and request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) != user.language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            user.language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            secure=settings.LANGUAGE_COOKIE_SECURE,
        )
    return response


def _signed_in_user(request: HttpRequest) -> User | None:
    """request.user once loaded (it is cached on the request, so LoginRequiredMiddleware does not load it again)."""
    return request.user if request.user.is_authenticated else None


@sync_and_async_middleware
def preferences_middleware(get_response: Callable) -> Callable:
    """Activate the reader's language and time zone; goes after AuthenticationMiddleware.

    Under ASGI the user is loaded in one thread hop (it would be loaded anyway, by LoginRequiredMiddleware);
    the activation happens there and asgiref carries it back to the request's context.
    """
    if iscoroutinefunction(get_response):

        async def middleware_async(request: HttpRequest) -> HttpResponse:
            user = await sync_to_async(_load_and_activate)(request)
            try:
                response = await get_response(request)
            finally:
                timezone.deactivate()
            return _remember_language(request, response, user)

        return middleware_async

    def middleware(request: HttpRequest) -> HttpResponse:
        user = _load_and_activate(request)
        try:
            response = get_response(request)
        finally:
            timezone.deactivate()
        return _remember_language(request, response, user)

    return middleware


def _load_and_activate(request: HttpRequest) -> User | None:
    user = _signed_in_user(request)
    _activate(request, user)
    return user


@contextmanager
def user_locale(user: User | None) -> Iterator[None]:
    """Run a block (an email, a background task's messages) in user's language and time zone."""
    language = (user and user.language) or translation.get_language()
    zone = (user and zone_or_none(user.timezone)) or timezone.get_current_timezone()
    with translation.override(language), timezone.override(zone):
        yield


@login_not_required
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's set_language (form field `language`), also remembered on a signed-in user."""
    response = i18n.set_language(request)
    language = request.POST.get("language", "")
    if request.method == "POST" and request.user.is_authenticated and language in dict(settings.LANGUAGES):
        User.objects.filter(pk=request.user.pk).update(language=language)
    return response


def _zone_label(name: str, now) -> str:
    """ "Asia/Shanghai (UTC+08:00)": the IANA name people search for, and today's offset to choose by."""
    offset = now.astimezone(zoneinfo.ZoneInfo(name)).strftime("%z")
    return f"{name.replace('_', ' ')} (UTC{offset[:3]}:{offset[3:]})"


class ProfileForm(forms.ModelForm):
    timezone = forms.ChoiceField(label=gettext_lazy("Time zone"), choices=())
    language = forms.ChoiceField(label=gettext_lazy("Language"), choices=())

    class Meta:
        model = User
        fields = ("timezone", "language")

    def __init__(self, *args, guess: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        now = timezone.now()
        zones, languages = self.fields["timezone"], self.fields["language"]
        assert isinstance(zones, forms.ChoiceField) and isinstance(languages, forms.ChoiceField)
        zones.choices = [(name, _zone_label(name, now)) for name in zone_names()]
        zones.help_text = _("Every time in BYOK Chat and its emails is shown in this zone.")
        if not self.instance.timezone:
            self.initial["timezone"] = guess if zone_or_none(guess) else "UTC"
        info = translation.get_language_info
        languages.choices = [(code, info(code)["name_local"]) for code, _name in settings.LANGUAGES]
        self.initial.setdefault("language", self.instance.language or translation.get_language())


def profile(request: HttpRequest) -> HttpResponse:
    """The person's time zone (field `timezone`, an IANA name) and language."""
    guess = request.COOKIES.get(TZ_COOKIE, "")
    form = ProfileForm(request.POST or None, instance=request.user, guess=guess)
    if request.method == "POST" and form.is_valid():
        form.save()
        with translation.override(form.instance.language):
            messages.success(request, _("Saved. Times are now shown in %(zone)s.") % {"zone": form.instance.timezone})
        return redirect("profile")  # the middleware sets the language cookie from the saved choice
    ctx = {"form": form, "now": timezone.now()}
    return render(request, "accounts/profile.html", ctx, status=400 if form.errors else 200)
