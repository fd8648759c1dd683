"""Local stand-ins for the images the sidecar needs, since no registry can be reached here.

One Debian bookworm root filesystem made with debootstrap from the machine's own apt mirror,
with Python 3.11 (and venv), haproxy, redis-server and the machine's CA bundle: it is the
`python:3.11-slim` base of the supervisor's Dockerfile, the socket proxy's image and the
stand-in iti-redis. The tarball is
cached, so only the first run on a machine pays for debootstrap (about a minute).
"""

from __future__ import annotations

import fcntl
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import docker

STAND_IN_IMAGE = "iti-supervisor-stand-in:bookworm"
SUPERVISOR_IMAGE = "iti-worker-supervisor:test"
CACHE = Path("/var/cache/iti-worker-supervisor")
PACKAGES = "python3,python3-venv,haproxy,redis-server,passwd"


def apt_mirror() -> str:
    """The Debian mirror this machine's apt already uses."""
    sources = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for path in sources:
        if not path.is_file() or path.name.endswith(".disabled-by-farm"):
            continue
        text = path.read_text(errors="replace")
        for match in re.finditer(r"^URIs:\s*(\S+)|^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            uri = match.group(1) or match.group(2)
            if uri.rstrip("/").endswith("/debian"):
                return uri
    raise RuntimeError("no Debian mirror found in /etc/apt/sources.list*")


def stand_in_tarball() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / "stand-in-bookworm.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: run the tests through scripts/test")
    root = Path(tempfile.mkdtemp(prefix="stand-in-", dir=CACHE))
    try:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={PACKAGES}",
                "bookworm",
                str(root),
                apt_mirror(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # The machine's own CA bundle, so that pip in the image trusts what the host trusts.
        host_bundle = Path("/etc/ssl/certs/ca-certificates.crt")
        if host_bundle.exists():
            shutil.copy(host_bundle, root / "etc/ssl/certs/ca-certificates.crt")
        for junk in (
            "var/cache/apt/archives",
            "var/lib/apt/lists",
            "usr/share/doc",
            "usr/share/man",
            "usr/share/locale",
        ):
            shutil.rmtree(root / junk, ignore_errors=True)
        root.chmod(0o755)  # mkdtemp made it 0700: it becomes the image's /
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(root), "-cf", str(partial), "."], check=True)
        partial.rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def ensure_stand_in_image(client: docker.DockerClient) -> str:
    try:
        client.images.get(STAND_IN_IMAGE)
    except docker.errors.ImageNotFound:
        repo, tag = STAND_IN_IMAGE.split(":")
        with stand_in_tarball().open("rb") as f:
            client.api.import_image_from_data(f.read(), repository=repo, tag=tag)
    return STAND_IN_IMAGE


def build_supervisor_image(client: docker.DockerClient, repo: Path) -> str:
    """The sidecar image from this repository's Dockerfile, on the stand-in base. Tests in
    other processes wait for one build (about 100 s here) and reuse its cache, rather than
    each paying for it at the same time."""
    base = ensure_stand_in_image(client)
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(client, repo, base)


def _build(client: docker.DockerClient, repo: Path, base: str) -> str:
    try:
        client.images.build(
            path=str(repo),
            tag=SUPERVISOR_IMAGE,
            buildargs={"BASE_IMAGE": base},
            network_mode="host",
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        log = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)
        raise RuntimeError(f"docker build failed: {exc}\n{log[-4000:]}") from None
    return SUPERVISOR_IMAGE


def copy_image(source: docker.DockerClient, target: docker.DockerClient, name: str) -> str:
    """Image `name` of engine `source` loaded into engine `target` (docker save | docker load),
    unless `target` has it: an image built once serves both engines."""
    try:
        target.images.get(name)
    except docker.errors.ImageNotFound:
        for _ in target.api.load_image(source.api.get_image(name), quiet=True):
            pass
    return name
