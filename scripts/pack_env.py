#!/usr/bin/env python3
"""Build Candid's wheel and a packed Python environment for ``spark-submit --archives``.

Spark's documented way to give executors a Python environment (Python Package Management,
"Using Virtualenv"): install the packages into a fresh virtualenv, pack it with venv-pack, and
submit with ``--archives <env>.tar.gz#environment`` and
``spark.pyspark.python=./environment/bin/python`` (what ``candid submit-args`` prints when
``spark.archive`` is set).

    python scripts/pack_env.py --name gpu --extras gpu        # make dist: CUDA vLLM, for GPUs
    python scripts/pack_env.py --name executor --exclude pyspark,delta-spark,mlflow

The second is what the cluster test ships (tests/e2e/test_cluster.py): the wheel and only what
its executors import, without the engine, MLflow (driver only) or pyspark (Spark puts its own
pyspark first on the workers' PYTHONPATH, so the archive's copy is never imported there): about
180 MiB, installed and packed in about 40 s on 2 cores with pip's cache warm.

Both are written to build/dist/ with a stamp of their inputs: a second run with unchanged
sources and options packs nothing. venv-pack links ``bin/python`` to the interpreter that made
the environment: every node needs the same Python at the same path (docs/CLUSTER.md).
"""

from __future__ import annotations

import argparse
import email
import hashlib
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIST = REPO / "build" / "dist"
# What goes into the wheel: a change to any of these packs the environment again.
SOURCES = ("jobs", "udfs", "conf/spark/getGpusResources.sh", "pyproject.toml")


def log(text: str) -> None:
    print(f"[pack-env] {text}", file=sys.stderr, flush=True)


def sources_hash(options: list[str]) -> str:
    """A hash of the wheel's sources, this script and the packing options."""
    digest = hashlib.sha256("\0".join([sys.version, *options]).encode())
    files = [Path(__file__)]
    for name in SOURCES:
        path = REPO / name
        files += sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in
                        p.parts) if path.is_dir() else [path]
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def run(*command: str | Path) -> None:
    # Without PYTHONPATH: a repository on it (the tests put it there) holds candid_vlm.egg-info,
    # and pip would take candid-vlm as installed already and leave it out of the new environment.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(c) for c in command], check=True, cwd=REPO, env=env)


def build_wheel(out: Path) -> Path:
    """The candid-vlm wheel (no dependencies built), into ``out``."""
    for old in out.glob("candid_vlm-*.whl"):
        old.unlink()
    # setuptools builds in the repository's build/lib and never empties it: a module deleted
    # from the sources would still be in the wheel.
    build = REPO / "build"
    for stale in [build / "lib", *build.glob("bdist.*"), *build.glob("scripts-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
        "-w", out, REPO)
    (wheel,) = out.glob("candid_vlm-*.whl")
    return wheel


def requirements(wheel: Path, extras: list[str], exclude: set[str]) -> list[str]:
    """The wheel's own Requires-Dist for ``extras`` on this interpreter, minus ``exclude``."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    wanted = []
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) in exclude:
            continue
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras or [""]):
            requirement.marker = None
            wanted.append(str(requirement))
    return wanted


def install(venv: Path, wheel: Path, extras: list[str], exclude: set[str]) -> None:
    """A fresh virtualenv with the wheel and its requirements (all of them, or all but
    ``exclude``, which pip cannot leave out by itself)."""
    run(sys.executable, "-m", "venv", "--clear", venv)
    pip = [venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    if not exclude:
        target = f"{wheel}[{','.join(extras)}]" if extras else str(wheel)
        run(*pip, target)
        return
    run(*pip, "--no-deps", wheel)
    # Without --no-warn-conflicts pip reports the left-out requirements as conflicts.
    run(*pip, "--no-warn-conflicts", *requirements(wheel, extras, exclude))


def check_installed(venv: Path) -> None:
    """Candid's packages import from the new environment itself, not from anywhere else."""
    probe = "import jobs, udfs.runner.spark_udf; print(jobs.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([str(venv / "bin" / "python"), "-c", probe], check=True, cwd="/",
                           env=env, capture_output=True, text=True).stdout.strip()
    if not Path(found).resolve().is_relative_to(venv.resolve()):
        raise SystemExit(f"pack-env: jobs imports from {found}, not from {venv}")


def pack(venv: Path, archive: Path) -> None:
    import venv_pack

    venv_pack.pack(prefix=str(venv), output=str(archive), force=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="gpu", help="archive name: candid-env-NAME.tar.gz")
    parser.add_argument("--extras", default="", help="wheel extras, e.g. gpu")
    parser.add_argument("--exclude", default="", help="requirements left out, e.g. pyspark")
    parser.add_argument("--out", type=Path, default=DIST, help="output folder")
    args = parser.parse_args(argv)
    extras = [e for e in args.extras.split(",") if e]
    exclude = {e.strip().lower().replace("_", "-") for e in args.exclude.split(",") if e}
    archive = args.out / f"candid-env-{args.name}.tar.gz"
    stamp = archive.with_name(archive.name + ".inputs")
    inputs = sources_hash([args.name, *extras, "--", *sorted(exclude)])
    if archive.is_file() and stamp.is_file() and stamp.read_text().strip() == inputs:
        log(f"{archive} is up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    wheel = build_wheel(args.out)
    log(f"wheel {wheel.name} ({time.monotonic() - started:.0f}s)")
    venv = args.out / f"venv-{args.name}"
    installed = time.monotonic()
    install(venv, wheel, extras, exclude)
    check_installed(venv)
    log(f"installed into {venv} ({time.monotonic() - installed:.0f}s)")
    packed = time.monotonic()
    pack(venv, archive)
    size = archive.stat().st_size / 2**20
    log(f"packed {archive} ({size:.0f} MiB, {time.monotonic() - packed:.0f}s)")
    stamp.write_text(inputs + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
