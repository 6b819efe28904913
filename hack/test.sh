#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls it).
# On a fresh machine it: installs the PostgreSQL and Redis server packages when missing,
# creates a fresh virtualenv, installs the project with the committed constraints, then runs
# ruff, mypy and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv=${NEWAPI_VENV:-"$root/.venv"}
python=${PYTHON:-python3}

need_apt=()
# kubectl (with its built-in kustomize) builds config/ in the tests and drives the local API server.
if ! command -v kubectl >/dev/null 2>&1; then need_apt+=(kubectl); fi
if ! command -v redis-server >/dev/null 2>&1; then need_apt+=(redis-server); fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_apt+=(postgresql)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing server packages: ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}"
fi

if [ "${NEWAPI_REUSE_VENV:-0}" != 1 ] || [ ! -x "$venv/bin/python" ]; then
  echo "==> fresh virtualenv at $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -c constraints.txt ".[test]"
else
  "$venv/bin/pip" install -q --no-deps --force-reinstall .
fi

export PATH="$venv/bin:$PATH"

echo "==> ruff"
ruff check .
echo "==> mypy"
# mypy checks the import packages under their import names (the folders are mapped by the build).
rm -rf .mypy-src && mkdir -p .mypy-src
ln -s ../operator .mypy-src/newapi_operator
ln -s ../gateway .mypy-src/newapi_gateway
(cd .mypy-src && mypy --config-file ../pyproject.toml -p newapi_operator -p newapi_gateway)
echo "==> pytest"
pytest "$@"
