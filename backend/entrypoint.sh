#!/bin/sh
# Builds the plugin's Python runtime: OUT/py_modules holding our package and the wheels Decky's
# process does not already provide, as CPython 3.11 manylinux x86_64 builds whatever machine runs it.
#
#   sh backend/entrypoint.sh [OUT]      OUT defaults to $CAPYDEPLOY_OUT, else backend/out
#
# Decky's builder runs it in backend/Dockerfile's image with this folder mounted at /backend and
# copies /backend/out into the plugin's bin/ (main.py looks in bin/py_modules too);
# scripts/plugin_zip.py runs it directly and puts OUT/py_modules at the plugin's py_modules/.
set -eu

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
OUT=${1:-${CAPYDEPLOY_OUT:-$HERE/out}}
PYTHON=${PYTHON:-python3}

# What the Agent imports at run time, pinned to the versions the tests run with (keep in step
# with backend/pyproject.toml). pip adds their dependencies: pydantic-core, annotated-types,
# typing-inspection, typing-extensions, ifaddr. typing-extensions is kept even though Decky's
# process usually has it: a module the loader already imported wins anyway, and a loader build
# without it would otherwise leave pydantic unimportable.
REQUIREMENTS="websockets==17.4 pydantic==2.14.4 vdf==3.4 zeroconf==0.154.0"
# Already imported by Decky Loader's process (a vendored copy would be ignored): never shipped.
# The hub-only dependencies (tqdm, platformdirs) are not needed on the device.
PROVIDED="aiohttp aiohappyeyeballs aiosignal async_timeout attrs certifi frozenlist idna multidict propcache yarl"

WHEELS=$(mktemp -d)
trap 'rm -rf "$WHEELS"' EXIT INT TERM

echo "entrypoint: downloading wheels for CPython 3.11 manylinux x86_64"
"$PYTHON" -m pip download --quiet --disable-pip-version-check \
    --only-binary=:all: \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --dest "$WHEELS" $REQUIREMENTS

rm -rf "$OUT/py_modules"
mkdir -p "$OUT/py_modules"

for wheel in "$WHEELS"/*.whl; do
    name=$(basename "$wheel" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    skip=no
    for provided in $PROVIDED; do
        if [ "$name" = "$provided" ]; then skip=yes; fi
    done
    if [ "$skip" = yes ]; then
        echo "entrypoint: skipping $name (Decky provides it)"
        continue
    fi
    echo "entrypoint: unpacking $(basename "$wheel")"
    "$PYTHON" -m zipfile -e "$wheel" "$OUT/py_modules"
done

# Our package, without caches.
"$PYTHON" - "$HERE/capydeploy" "$OUT/py_modules/capydeploy" <<'PY'
import shutil
import sys

shutil.copytree(sys.argv[1], sys.argv[2], ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
PY

# Wheels' console scripts are of no use inside Decky; caches never ship.
rm -rf "$OUT/py_modules/bin"
find "$OUT/py_modules" -name __pycache__ -type d -prune -exec rm -rf {} +

echo "entrypoint: wrote $OUT/py_modules"
