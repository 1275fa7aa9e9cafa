"""Writes out/CapyDeploy.zip in Decky's plugin layout (run by `make plugin-zip` after the frontend build).

    CapyDeploy/
      plugin.json  package.json  main.py  LICENSE  README.md
      dist/                      the built panel (pnpm run build)
      py_modules/                our package and the wheels Decky's process lacks (backend/entrypoint.sh)
      <contents of defaults/>    flattened into the plugin folder, as Decky's own packaging does

Never src/, tests/ or node_modules/. The Python runtime comes from backend/entrypoint.sh, the same
script Decky's official builder runs in backend/Dockerfile, so both builds ship the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIRED_FILES = ("plugin.json", "package.json", "main.py", "LICENSE")
OPTIONAL_FILES = ("README.md",)
# Decky's process already imports these; shipping them would be dead weight (and is a build bug).
PROVIDED = {"aiohttp", "yarl", "multidict", "attrs", "certifi", "frozenlist", "aiosignal", "idna", "propcache"}
NEVER_SHIPPED = ("__pycache__", ".pyc")


def _files_under(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(part in NEVER_SHIPPED or part.endswith(".pyc") for part in path.parts):
            yield path


def build_runtime(work: Path, python: str) -> Path:
    """Run backend/entrypoint.sh into `work`; returns the py_modules folder it wrote."""
    env = {**os.environ, "PYTHON": python}
    subprocess.run(["sh", str(ROOT / "backend" / "entrypoint.sh"), str(work)], check=True, env=env)
    py_modules = work / "py_modules"
    if not (py_modules / "capydeploy" / "__init__.py").is_file():
        raise SystemExit(f"plugin_zip: the entrypoint wrote no capydeploy package into {py_modules}")
    shipped = {entry.name.split("-")[0].lower() for entry in py_modules.iterdir()}
    if leaked := shipped & PROVIDED:
        raise SystemExit(f"plugin_zip: {sorted(leaked)} are provided by Decky and must not be shipped")
    return py_modules


def collect(dist: Path, py_modules: Path) -> list[tuple[Path, str]]:
    """(source file, path inside the plugin folder), in a stable order."""
    entries: list[tuple[Path, str]] = []
    for name in REQUIRED_FILES:
        path = ROOT / name
        if not path.is_file():
            raise SystemExit(f"plugin_zip: {name} is missing")
        entries.append((path, name))
    for name in OPTIONAL_FILES:
        path = ROOT / name
        if path.is_file():
            entries.append((path, name))
        else:
            print(f"plugin_zip: warning: {name} is missing; the store requires it", file=sys.stderr)
    if not (dist / "index.js").is_file():
        raise SystemExit(f"plugin_zip: {dist / 'index.js'} is missing: run `pnpm run build` first")
    entries += [(path, f"dist/{path.relative_to(dist).as_posix()}") for path in _files_under(dist)]
    defaults = ROOT / "defaults"
    if defaults.is_dir():
        entries += [(path, path.relative_to(defaults).as_posix()) for path in _files_under(defaults)]
    entries += [(path, f"py_modules/{path.relative_to(py_modules).as_posix()}") for path in _files_under(py_modules)]
    seen: set[str] = set()
    for _, name in entries:
        if name in seen:
            raise SystemExit(f"plugin_zip: two files would land at {name}")
        seen.add(name)
    return entries


def write_zip(entries: list[tuple[Path, str]], top: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.gmtime(int(os.environ.get("SOURCE_DATE_EPOCH", time.time())))[:6]
    stamp = max(stamp, (1980, 1, 1, 0, 0, 0))
    temp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(temp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for source, name in entries:
            info = zipfile.ZipInfo(f"{top}/{name}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            mode = 0o755 if os.access(source, os.X_OK) and source.suffix in ("", ".sh", ".so") else 0o644
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, source.read_bytes())
    temp.replace(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="the built frontend (default: dist/)")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "CapyDeploy.zip", help="the zip to write")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs pip (default: this one)")
    args = parser.parse_args(argv)

    top = json.loads((ROOT / "plugin.json").read_text(encoding="utf-8"))["name"]
    with tempfile.TemporaryDirectory(prefix="capydeploy-zip-") as work:
        py_modules = build_runtime(Path(work), args.python)
        entries = collect(args.dist, py_modules)
        write_zip(entries, top, args.out)

    with zipfile.ZipFile(args.out) as archive:
        names = archive.namelist()
    top_level = sorted({name.split("/")[1] for name in names})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024 / 1024:.1f} MiB, {len(names)} files)")
    print(f"{top}/: {', '.join(top_level)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
