"""The distribution's version.

``newapi_operator`` is deliberately an implicit namespace package (no ``__init__.py`` in the
``operator/`` folder): run from the repository root, Python puts the current directory first on
``sys.path``, and a regular package in a folder called ``operator`` would then shadow the standard
library's ``operator`` module. A namespace portion never wins over a regular module, so the
standard library stays intact wherever Python is started.
"""

__version__ = "0.1.0"
