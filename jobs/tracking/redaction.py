"""Credentials never reach MLflow, the console or a log: keys that name a secret, and secrets in
URLs (``user:password@``, signed-URL query parameters), are replaced before anything is shown
or logged."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***redacted***"
# A key is a credential when one of its words (split on . _ - and camelCase) is one of these,
# or two neighbouring words form one of the pairs: fs.s3a.secret.key, AWS_SECRET_ACCESS_KEY,
# HF_TOKEN, spark.ssl.keyPassword, fs.azure.account.key... but not max_tokens.
_SECRET_WORDS = frozenset({
    "secret", "password", "passwd", "pwd", "token", "credential", "credentials", "apikey",
    "sas", "signature", "authorization", "auth", "privatekey",
})
_SECRET_PAIRS = frozenset({
    ("access", "key"), ("private", "key"), ("api", "key"), ("account", "key"),
    ("storage", "key"), ("session", "key"), ("client", "secret"), ("encryption", "key"),
    ("shared", "key"), ("signing", "key"),
})
_KEY_WORDS = re.compile(r"[._\-\s/:]+|(?<=[a-z0-9])(?=[A-Z])")
# user:password@ in URLs.
_URL_USERINFO = re.compile(r"(?<=://)([^/@\s:]+):([^/@\s]+)@")
# Credentials in URL query strings: signed URLs (Azure SAS sig=, S3/GCS X-*-Signature=), tokens.
_URL_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"x-goog-signature|x-goog-credential|token|access_token|api_key|apikey|password|secret)=)"
    r"[^&#\s'\"]+"
)


def is_secret_key(key: str) -> bool:
    """True when a config/env key names a credential."""
    words = [w.lower() for w in _KEY_WORDS.split(str(key)) if w]
    return any(w in _SECRET_WORDS for w in words) or any(
        pair in _SECRET_PAIRS for pair in zip(words, words[1:], strict=False)
    )


def redact_text(text: str) -> str:
    """``text`` with credentials in URLs replaced: ``user:password@`` and secret query
    parameters (``?sig=...``). For free text such as error messages, which name URLs.

    Example:
        >>> redact_text("http://me:hunter2@mlflow:5000 failed")
        'http://me:***redacted***@mlflow:5000 failed'
    """
    text = _URL_USERINFO.sub(rf"\1:{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(rf"\1{REDACTED}", text)


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with credential-looking values replaced, recursively (mappings and lists)."""
    return {key: REDACTED if is_secret_key(key) else _redact_value(value)
            for key, value in mapping.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
