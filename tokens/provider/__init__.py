"""The OpenAI-compatible protocol: list, check and streamed chat calls, one error taxonomy.

The only importer of the HTTP clients for provider calls. chat and the API import from here.
"""

from __future__ import annotations

from tokens.provider.endpoint import AZURE_KIND, Bearer, PastedURL, is_azure_host, normalise_base_url
from tokens.provider.errors import ProviderError, plain_text, quoting
from tokens.provider.listing import list_models, model_ids
from tokens.provider.stream import Completion, Delta, stream_chat
from tokens.provider.usage import normalise_usage

__all__ = [
    "AZURE_KIND",
    "Bearer",
    "Completion",
    "Delta",
    "PastedURL",
    "ProviderError",
    "is_azure_host",
    "list_models",
    "model_ids",
    "normalise_base_url",
    "normalise_usage",
    "plain_text",
    "quoting",
    "stream_chat",
]
