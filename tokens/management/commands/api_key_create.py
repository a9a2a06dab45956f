"""Create a personal API key from the command line (scripts, benchmarks); prints the key, once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from tokens.api_keys import api_key_create


class Command(BaseCommand):
    help = "Create a personal API key for a user and print it (it is stored only as a hash)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")
        parser.add_argument("--models", default="", help="Comma-separated model allowlist; empty allows all.")

    def handle(self, *args, username: str, name: str, models: str, **options) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}.")
        allowed = [m.strip() for m in models.split(",") if m.strip()]
        _row, key = api_key_create(user=user, name=name, allowed_models=allowed)
        self.stdout.write(key)
