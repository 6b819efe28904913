"""Object metadata validation, as the API server applies to every kind.

Names (RFC 1123 subdomain/label, RBAC path segments), label keys and values, annotation keys,
finalizers, owner references, and the update rules (immutable name/namespace/uid, no new
finalizers on an object being deleted). Pure functions returning :class:`FieldError` lists.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import FieldError
from .resources import ResourceType

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"

SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    f"validation is '{_DNS1123_SUBDOMAIN}')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    f"start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex used for "
    f"validation is '{_DNS1123_LABEL}')"
)
DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name', or 'abc-123', "
    f"regex used for validation is '{_DNS1035_LABEL}')"
)
QUALIFIED_MSG = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
    f"with an alphanumeric character (e.g. 'MyName', or 'my.name', or '123-abc', regex used for "
    f"validation is '{_QUALIFIED_NAME}')"
)


def _q(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def dns_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(SUBDOMAIN_MSG)
    return errors


def dns_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(LABEL_MSG)
    return errors


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1035_LABEL, value):
        errors.append(DNS1035_MSG)
    return errors


def path_segment_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    for bad in ("/", "%"):
        if bad in value:
            return [f"may not contain '{bad}'"]
    return []


def label_key_errors(key: str) -> list[str]:
    """Errors of a qualified name (label key, annotation key, finalizer): ``[prefix/]name``."""
    errors: list[str] = []
    prefix, slash, name = key.rpartition("/")
    if slash and not prefix:
        errors.append("prefix part must be non-empty")
    elif slash:
        errors += [f"prefix part {e}" for e in dns_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errors.append("name part must be no more than 63 characters")
        if not re.fullmatch(_QUALIFIED_NAME, name):
            errors.append(QUALIFIED_MSG)
    if key.count("/") > 1:
        errors.append(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an optional "
            "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        )
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if value and not re.fullmatch(_QUALIFIED_NAME, value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            f"and must start and end with an alphanumeric character (regex used for validation is "
            f"'(({_QUALIFIED_NAME})?)')"
        )
    return errors


#: Kinds whose names are RFC 1123 labels / RFC 1035 labels / path segments rather than subdomains.
_LABEL_NAMED = {("", "namespaces")}
_DNS1035_NAMED = {("", "services")}
_PATH_SEGMENT_NAMED = {
    ("rbac.authorization.k8s.io", "roles"),
    ("rbac.authorization.k8s.io", "rolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
}


def name_errors(rtype: ResourceType, name: str) -> list[str]:
    key = (rtype.group, rtype.plural)
    if key in _LABEL_NAMED:
        return dns_label_errors(name)
    if key in _DNS1035_NAMED:
        return dns1035_label_errors(name)
    if key in _PATH_SEGMENT_NAMED:
        return path_segment_errors(name)
    return dns_subdomain_errors(name)


def validate_metadata(rtype: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    """Metadata rules every object must satisfy on create and update."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [FieldError("metadata", "FieldValueRequired", "Required value")]
    errors: list[FieldError] = []
    name = meta.get("name")
    if not name:
        errors.append(FieldError("metadata.name", "FieldValueRequired",
                                 "Required value: name or generateName is required"))
    elif not isinstance(name, str):
        errors.append(FieldError("metadata.name", "FieldValueInvalid", f"Invalid value: {name!r}: must be a string"))
    else:
        for message in name_errors(rtype, name):
            errors.append(FieldError("metadata.name", "FieldValueInvalid", f"Invalid value: {_q(name)}: {message}"))
    errors += _map_errors(meta, "labels", label_key_errors, label_value_errors)
    errors += _map_errors(meta, "annotations", label_key_errors, None)
    finalizers = meta.get("finalizers")
    if finalizers is not None:
        if not isinstance(finalizers, list):
            errors.append(FieldError("metadata.finalizers", "FieldValueTypeInvalid", "Invalid value: must be a list"))
        else:
            for i, fin in enumerate(finalizers):
                path = f"metadata.finalizers[{i}]"
                if not isinstance(fin, str):
                    errors.append(FieldError(path, "FieldValueTypeInvalid",
                                             f"Invalid value: {fin!r}: must be a string"))
                    continue
                for message in label_key_errors(fin):
                    errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_q(fin)}: {message}"))
    errors += _owner_reference_errors(meta.get("ownerReferences"))
    return errors


def _map_errors(
    meta: dict[str, Any],
    field: str,
    key_check: Any,
    value_check: Any,
) -> list[FieldError]:
    value = meta.get(field)
    if value is None:
        return []
    path = f"metadata.{field}"
    if not isinstance(value, dict):
        return [FieldError(path, "FieldValueTypeInvalid",
                           "Invalid value: must be a map of string keys to string values")]
    errors: list[FieldError] = []
    for k, v in value.items():
        for message in key_check(k):
            errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_q(k)}: {message}"))
        if not isinstance(v, str):
            errors.append(FieldError(f"{path}.{k}", "FieldValueTypeInvalid", f"Invalid value: {v!r}: must be a string"))
        elif value_check is not None:
            for message in value_check(v):
                errors.append(FieldError(path, "FieldValueInvalid", f"Invalid value: {_q(v)}: {message}"))
    return errors


def _owner_reference_errors(refs: Any) -> list[FieldError]:
    if refs is None:
        return []
    if not isinstance(refs, list):
        return [FieldError("metadata.ownerReferences", "FieldValueTypeInvalid", "Invalid value: must be a list")]
    errors: list[FieldError] = []
    controllers = 0
    for i, ref in enumerate(refs):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            errors.append(FieldError(path, "FieldValueTypeInvalid", "Invalid value: must be an object"))
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                errors.append(FieldError(f"{path}.{key}", "FieldValueRequired",
                                         f"Required value: {key} must not be empty"))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errors.append(FieldError(
            "metadata.ownerReferences", "FieldValueInvalid",
            "Invalid value: Only one reference can have Controller set to true",
        ))
    return errors


def validate_metadata_update(old: dict[str, Any], new: dict[str, Any]) -> list[FieldError]:
    """Update-only rules: immutable identity fields and finalizers of an object being deleted."""
    errors: list[FieldError] = []
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    for key in ("name", "namespace", "uid"):
        if new_meta.get(key) not in (None, "") and new_meta.get(key) != old_meta.get(key):
            errors.append(FieldError(
                f"metadata.{key}", "FieldValueInvalid", f"Invalid value: {_q(new_meta.get(key))}: field is immutable"
            ))
    if old_meta.get("deletionTimestamp"):
        added = set(new_meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
        if added:
            errors.append(FieldError(
                "metadata.finalizers", "FieldValueForbidden",
                f"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers "
                f"{sorted(added)!r}",
            ))
    return errors
