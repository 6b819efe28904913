"""Names, labels, annotations and ports shared by the operator's parts (and documented in docs/operator.md)."""

from __future__ import annotations

from newapi_operator.api.v1alpha1 import API_VERSION, GROUP, VERSION

__all__ = ["API_VERSION", "GROUP", "VERSION"]

#: Prefix of every annotation and finalizer the operator (and Kopf on its behalf) writes.
PREFIX = "newapi.openova.io"
#: The only finalizer: on CustomerKeys, so a key is revoked at the gateway before it goes.
FINALIZER = f"{PREFIX}/finalizer"
#: Server-side apply field manager of every child object.
FIELD_MANAGER = "newapi-operator"
#: ``reportingComponent`` / ``source.component`` of our Events.
COMPONENT = "newapi-operator"

LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
GATEWAY_APP = "newapi-gateway"
MANAGED_BY = "newapi-operator"
#: Label selector of everything the operator creates.
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

#: CustomerKey Secret annotations: which spec.rotation the key belongs to, and the key it replaces.
ANNOTATION_ROTATION = f"{PREFIX}/rotation"
ANNOTATION_PREVIOUS_KEY_ID = f"{PREFIX}/previous-key-id"
#: Label on a CustomerKey's Secret naming the CustomerKey (the portal may select on it).
LABEL_CUSTOMER_KEY = f"{PREFIX}/customer-key"

#: Gateway ports (container and Service).
GATEWAY_PORT = 8080
ADMIN_PORT = 8081
SERVICE_PORT = 80
#: Where the admin token Secret is mounted in the gateway pod.
ADMIN_TOKEN_DIR = "/var/run/newapi/admin"
#: Writable scratch space of the gateway (read-only root filesystem).
STATE_DIR = "/var/lib/newapi"

#: Key of the admin token in ``<instance>-admin`` (docs/admin-api.md).
ADMIN_TOKEN_KEY = "token"
#: Keys of a CustomerKey's Secret ``<name>-key``.
KEY_SECRET_KEY = "key"
KEY_SECRET_KEY_ID = "keyId"


def routes_name(instance: str) -> str:
    return f"{instance}-routes"


def upstream_name(instance: str) -> str:
    return f"{instance}-upstream"


def admin_secret_name(instance: str) -> str:
    return f"{instance}-admin"


def gateway_role_name(instance: str) -> str:
    return f"{instance}-gateway"


def admin_ingress_name(instance: str) -> str:
    return f"{instance}-admin"


def key_secret_name(customer_key: str) -> str:
    return f"{customer_key}-key"


def labels(instance: str, component: str = "gateway") -> dict[str, str]:
    """The labels every child of an instance carries."""
    return {
        LABEL_NAME: GATEWAY_APP,
        LABEL_INSTANCE: instance,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
    }


def selector_labels(instance: str) -> dict[str, str]:
    """The (immutable) pod selector of an instance's Deployment, Service, PDB and NetworkPolicy."""
    return {LABEL_NAME: GATEWAY_APP, LABEL_INSTANCE: instance}
