"""The newapi.openova.io API: models (``v1alpha1``) and compliance rules (``compliance``)."""
