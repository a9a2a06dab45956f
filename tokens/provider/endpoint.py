"""Where and how to call a provider: the bearer, its URLs and headers, and base URLs as people paste them.

Azure OpenAI (learn.microsoft.com, "Azure OpenAI in Azure AI Foundry Models REST API"): keys go in an
`api-key` header; classic deployments live at
`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`, the v1 API at
`{endpoint}/openai/v1/chat/completions` with the deployment name as `model`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from django.utils.translation import gettext as _

AZURE_HOSTS = re.compile(r"\.(openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com)$")
# Endpoints people paste when the docs show a full request: cut back to the API's base.
_ENDPOINT_SUFFIXES = re.compile(r"/(chat/completions|completions|models|responses|embeddings)/?$")
# Ollama's native endpoints (its docs' curl examples): its OpenAI-compatible API is /v1 on the same host.
_OLLAMA_NATIVE = re.compile(r"/api/(chat|generate|tags|show|ps|embed|embeddings)$")
# /v1 pasted twice (a base that ended in /v1 and an endpoint copied after it).
_REPEATED_V1 = re.compile(r"(/v1){2,}$")
_AZURE_DEPLOYMENT = re.compile(r"^(?P<root>.*?)/openai/deployments/(?P<deployment>[^/]+)")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$|^(preview|latest|v1)$")
AZURE_KIND = "azure_openai"


@dataclass(frozen=True)
class Bearer:
    """What a provider call needs for one credential.

    base_url: the API base without a trailing slash (for Azure classic, the resource endpoint).
    api_version: set means Azure classic routing with `?api-version=`.
    stream_options: False once the provider refused the field for this credential.
    """

    credential_id: str
    base_url: str
    token: str
    guarded: bool
    kind: str = "api_key"
    api_version: str = ""
    stream_options: bool = True

    def __repr__(self) -> str:
        return f"Bearer(credential_id={self.credential_id!r}, base_url={self.base_url!r}, token=<hidden>)"

    def headers(self) -> dict[str, str]:
        if self.kind == AZURE_KIND:
            return {"api-key": self.token}
        return {"Authorization": f"Bearer {self.token}"}

    def chat_url(self, model: str) -> str:
        if self.api_version:
            deployment = quote(model, safe="")
            return f"{self.base_url}/openai/deployments/{deployment}/chat/completions?api-version={self.api_version}"
        return f"{self.base_url}/chat/completions"

    def models_url(self) -> str:
        if self.api_version:
            return f"{self.base_url}/openai/models?api-version={self.api_version}"
        return f"{self.base_url}/models"


@dataclass(frozen=True)
class PastedURL:
    """A base URL as typed, normalised: base_url, Azure api_version, and a deployment named in it."""

    base_url: str
    api_version: str = ""
    deployment: str = ""
    is_azure: bool = False


def is_azure_host(url: str) -> bool:
    return bool(AZURE_HOSTS.search((urlsplit(url).hostname or "").lower()))


def normalise_base_url(url: str, *, kind: str = "api_key", api_version: str = "") -> PastedURL:
    """Turn what people paste into an API base: drop a pasted endpoint path, query and trailing slash;
    add /v1 to a bare host; turn Ollama's native /api/chat (and its siblings) into /v1, a doubled /v1 into one;
    split an Azure URL into resource endpoint, api-version and deployment.

    Raises ValueError with a message for the person when the api-version is malformed.
    """
    parts = urlsplit(url.strip())
    path = _ENDPOINT_SUFFIXES.sub("", parts.path.rstrip("/")).rstrip("/")
    query = parse_qs(parts.query)
    # Azure by kind, by host name, or by its URL shapes (custom domains and private endpoints exist).
    shaped = "api-version" in query or "/openai/deployments/" in path
    is_azure = kind == AZURE_KIND or is_azure_host(url) or shaped
    if not is_azure:
        path = _REPEATED_V1.sub("/v1", _OLLAMA_NATIVE.sub("/v1", path))
        path = path or "/v1"  # Ollama, vLLM, LM Studio, llama.cpp and LiteLLM all serve under /v1
        return PastedURL(urlunsplit((parts.scheme, parts.netloc, path, "", "")))
    version = (api_version or (query.get("api-version") or [""])[0]).strip()
    if version and not _API_VERSION.match(version):
        raise ValueError(
            _("“%(version)s” is not an Azure api-version; it looks like 2024-10-21.") % {"version": version}
        )
    deployment = ""
    match = _AZURE_DEPLOYMENT.match(path)
    if match:
        path, deployment = match["root"], match["deployment"]
    path = re.sub(r"/openai(/v1)?$", "", path)
    root = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    if version in ("", "v1", "preview", "latest"):
        return PastedURL(f"{root}/openai/v1", "", deployment, True)
    return PastedURL(root, version, deployment, True)
