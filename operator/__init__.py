"""newapi-operator control plane: the v1alpha1 API, compliance rules, CRDs and the Kopf operator."""

__version__ = "0.1.0"
