"""A model field whose value is sealed at rest and bound to its row and owner.

Reading the attribute gives a `Secret`, which never prints its value; code that
needs the plaintext calls `.reveal()`. Assigning a plain string queues it for
sealing, which happens in `pre_save` once the row's identity is known.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from tokens import keyring


class Ciphertext(str):
    """A sealed value as stored in the database."""


class Secret:
    __slots__ = ("_aad", "_plain", "_sealed")

    def __init__(self, *, sealed: str = "", plain: str | None = None, aad: str = "") -> None:
        self._sealed = sealed
        self._plain = plain
        self._aad = aad

    def __bool__(self) -> bool:
        return bool(self._sealed or self._plain)

    def __repr__(self) -> str:
        return "<Secret: set>" if self else "<Secret: empty>"

    __str__ = __repr__

    @property
    def key_id(self) -> str:
        return keyring.key_id_of(self._sealed) if self._sealed else ""

    def reveal(self) -> str:
        if self._plain is None:
            self._plain = keyring.open_sealed(self._sealed, aad=self._aad) if self._sealed else ""
        return self._plain


class _SealedDescriptor:
    def __init__(self, field: SealedField) -> None:
        self.field = field

    def __get__(self, instance: models.Model | None, owner: type) -> Any:
        if instance is None:
            return self
        if self.field.attname not in instance.__dict__:  # deferred (.only()): read it, as DeferredAttribute does
            instance.refresh_from_db(fields=[self.field.attname])
        state = instance.__dict__.get(self.field.attname, "")
        if isinstance(state, Ciphertext):
            return Secret(sealed=state, aad=self.field.aad(instance))
        return Secret(plain=state or "")

    def __set__(self, instance: models.Model, value: Any) -> None:
        if isinstance(value, Secret):
            # Reloading a row (refresh_from_db) keeps its ciphertext sealed, so one that cannot be opened can still
            # be loaded and marked; a secret from another row is opened here and sealed again for this one.
            same_row = value._plain is None and value._aad == self.field.aad(instance)
            value = Ciphertext(value._sealed) if same_row else value.reveal()
        instance.__dict__[self.field.attname] = value if value is not None else ""


class SealedField(models.TextField):
    """Text sealed with AES-256-GCM; associated data binds model, row, owner and field."""

    def __init__(self, *args: Any, owner_field: str = "user_id", **kwargs: Any) -> None:
        self.owner_field = owner_field
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        kwargs["editable"] = False
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("editable", None)
        if self.owner_field != "user_id":
            kwargs["owner_field"] = self.owner_field
        return name, path, args, kwargs

    def contribute_to_class(self, cls: type[models.Model], name: str, private_only: bool = False) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, self.attname, _SealedDescriptor(self))

    def aad(self, instance: models.Model) -> str:
        owner = getattr(instance, self.owner_field)
        return f"{instance._meta.label_lower}:{instance.pk}:{owner}:{self.name}"

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str:
        return Ciphertext(value) if value else ""

    def pre_save(self, model_instance: models.Model, add: bool) -> str:
        state = model_instance.__dict__.get(self.attname, "")
        if state and not isinstance(state, Ciphertext):
            state = Ciphertext(keyring.seal(state, aad=self.aad(model_instance)))
            model_instance.__dict__[self.attname] = state
        return state

    def get_prep_value(self, value: Any) -> str:
        if isinstance(value, Secret):
            raise TypeError("Secrets are sealed in pre_save; do not filter on them.")
        return super().get_prep_value(value)
