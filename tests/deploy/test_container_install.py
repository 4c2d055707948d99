"""The Dockerfile's install step and CMD, run without a container runtime.

What it does: copies the tracked source files into a clean directory (as `COPY . /src` does),
creates a fresh virtual environment, runs deploy/install.sh (the Dockerfile's RUN step) with
`--no-deps --no-build-isolation --no-index`, and starts the Dockerfile's CMD from that venv on a
free loopback port. The dependencies come from the test's own environment through a .pth file
(the slim image would download them from PyPI; here nothing is downloaded). Then it checks
deploy/healthcheck.py (the HEALTHCHECK) reports SERVING, sends SIGTERM and expects a clean exit.

What it proves: the package installs non-editable from a clean tree (packaging metadata, package
data such as .pyi and .proto files, the `nbo` entry point and its command plugins), the CMD's
flags are accepted, the server reaches SERVING and stops gracefully, and the health probe works.
What it does not prove: the image builds (python:3.11-slim, useradd, the pip resolve of the
dependencies from PyPI), the non-root user and volume permissions, or Docker's HEALTHCHECK timing.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TOKEN = "deploy-test-token"
PURELIB = "import sysconfig; print(sysconfig.get_paths()['purelib'])"


def _dockerfile() -> tuple[list[str], list[str]]:
    """The Dockerfile's RUN commands (continuations joined) and its CMD as an argument list."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    runs, cmd = [], None
    for line in text.splitlines():
        if line.startswith("RUN "):
            runs.append(line[4:].strip())
        elif line.startswith("CMD "):
            cmd = json.loads(line[4:])
    assert cmd is not None, "Dockerfile has no exec-form CMD"
    return runs, cmd


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_dockerfile_install_and_cmd_reach_serving_and_stop_on_sigterm(tmp_path: Path) -> None:
    runs, cmd = _dockerfile()
    install = shlex.split(runs[0].split("&&")[0])
    assert install == ["sh", "/src/deploy/install.sh", "/src", "/opt/nbo"], install

    src = tmp_path / "src"  # COPY . /src: the files git does not ignore, as .dockerignore does
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = REPO / name.decode()
        if path.is_file():
            target = src / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    venv = tmp_path / "opt-nbo"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [str(venv / "bin/python"), "-c", PURELIB],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # Dependencies (and pip, setuptools) from this interpreter's environment, after the venv's own.
    (site / "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = dict(os.environ, PYTHONNOUSERSITE="1", PIP_NO_INDEX="1")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [
            "sh",
            str(src / "deploy/install.sh"),
            str(src),
            str(venv),
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().startswith("nbo ")
    where = subprocess.run(
        [str(venv / "bin/python"), "-c", "import engine; print(engine.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    ).stdout
    assert where.startswith(str(site)), f"engine imported from {where}, not the new venv"

    port = _free_port()
    data = tmp_path / "var-lib-nbo"
    paths = {
        "/opt/nbo": str(venv),
        "/var/lib/nbo": str(data),
        "/etc/nbo/campaign.toml": str(src / "examples/renewal.toml"),
    }
    args = []
    for arg in cmd:
        for image_path, here in paths.items():
            arg = arg.replace(image_path, here) if arg.startswith(image_path) else arg
        args.append(arg)
    args[args.index("--host") + 1] = "127.0.0.1"  # the container's 0.0.0.0, kept on loopback
    args[args.index("--port") + 1] = str(port)
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=dict(env, NBO_ADMIN_TOKEN=TOKEN),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("nbo serve: listening on port "), line + proc.stderr.read()[-2000:]
        probe = [str(venv / "bin/python"), str(src / "deploy/healthcheck.py"), f"127.0.0.1:{port}"]
        for _ in range(240):
            health = subprocess.run(probe, capture_output=True, text=True, env=env, timeout=30)
            if health.returncode == 0:
                break
        assert health.returncode == 0 and "SERVING" in health.stdout, health.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        logs = proc.stderr.read() if proc.stderr else ""
        assert '"msg":"stopped"' in logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
