"""Re-seal every credential secret under the first key of ENCRYPTION_KEYS, in batches, while the app serves.

Resumable: each run selects only rows still holding a ciphertext under another key.
Rows another process has locked (a refresh storing its tokens) are skipped and
retried. When it reports done, older keys may be removed from ENCRYPTION_KEYS.
"""

from __future__ import annotations

import threading

from django.core.management.base import BaseCommand, CommandError

from tokens import keyring, lifecycle, mfa
from tokens.models import Credential

# How long to keep coming back for rows that stay locked, in pauses of LOCKED_PAUSE seconds.
LOCKED_PAUSE = 0.5
LOCKED_PATIENCE = 120


class Command(BaseCommand):
    help = "Re-seal every credential secret under the first key of ENCRYPTION_KEYS."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--batch-size", type=int, default=200, help="Rows per transaction (default 200).")

    def handle(self, *args, batch_size: int, **options) -> None:
        key_id = keyring.current_key_id()
        resealed, pauses = 0, 0
        broken: set = set()
        while True:
            done, unopenable = lifecycle.credentials_reseal(batch_size=batch_size, skip=broken)
            resealed, broken = resealed + done, broken | unopenable
            if done or unopenable:
                self.stdout.write(f"re-sealed {resealed} credentials so far")
                continue
            remaining = Credential.objects.sealed_with_old_key(key_id).exclude(pk__in=broken).count()
            if not remaining:
                break
            # Everything left is locked by a refresh or an edit in flight: come back shortly.
            pauses += 1
            if pauses * LOCKED_PAUSE > LOCKED_PATIENCE:
                raise CommandError(f"{remaining} credentials stayed locked; run the command again to finish.")
            threading.Event().wait(LOCKED_PAUSE)
        two_factor, two_factor_broken = mfa.authenticators_reseal()
        self.stdout.write(f"re-sealed {two_factor} two-factor secrets")
        if two_factor_broken:
            raise CommandError(
                f"{two_factor_broken} two-factor secrets could not be opened with any key in ENCRYPTION_KEYS; "
                "keep the old keys until their owners set up two-factor again."
            )
        if broken:
            ids = ", ".join(sorted(str(pk) for pk in broken))
            raise CommandError(
                f"Re-sealed {resealed}, but {len(broken)} could not be opened with any key in ENCRYPTION_KEYS "
                f"(their owners must enter them again): {ids}. Keep the old keys until they are dealt with."
            )
        self.stdout.write(
            self.style.SUCCESS(f"Done: re-sealed {resealed} credentials; every secret is sealed under {key_id}.")
        )
