"""Recompute the usage roll-ups from the usage rows (after a TIME_ZONE change, a bulk load or a restore)."""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from chat.usage import rollup_rebuild


class Command(BaseCommand):
    help = "Recompute the usage roll-ups from the usage rows (one transaction: pages show the old sums until it ends)."

    def handle(self, *args, **options) -> None:
        rows = rollup_rebuild()
        zone = timezone.get_default_timezone_name()
        self.stdout.write(f"{rows} roll-up rows (day, person, model, status), days in {zone}.")
