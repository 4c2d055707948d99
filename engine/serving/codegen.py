"""Regenerate the checked-in gRPC stubs in ``engine/serving/pb`` from ``proto/nbo/v1``.

Run ``python -m engine.serving.codegen`` after editing a ``.proto`` file and commit the result;
``tests/engine/serving/test_codegen.py`` fails while the checked-in stubs are stale. protoc names
the generated modules after the proto package (``nbo.v1``), which is not an importable package
here, so the cross-module imports are rewritten to be package-relative.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from importlib import resources
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
PROTO_PACKAGE_DIR = Path("nbo") / "v1"
PB_DIR = Path(__file__).resolve().parent / "pb"
# Generated suffixes, in the order protoc writes them.
SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
_ABSOLUTE_IMPORT = re.compile(r"^from nbo\.v1 import ", flags=re.MULTILINE)


def proto_files(proto_root: Path = PROTO_ROOT) -> list[Path]:
    """The ``.proto`` files of package ``nbo.v1``, relative to ``proto_root``, sorted.

    Examples
    --------
    >>> [str(p) for p in proto_files()]
    ['nbo/v1/offers.proto']
    """
    found = (proto_root / PROTO_PACKAGE_DIR).glob("*.proto")
    return sorted(p.relative_to(proto_root) for p in found)


def generate(out_dir: Path, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile every proto of ``nbo.v1`` into ``out_dir`` with package-relative imports.

    Parameters
    ----------
    out_dir : Path
        Directory that receives ``<name>_pb2.py``, ``<name>_pb2.pyi`` and ``<name>_pb2_grpc.py``
        for every ``<name>.proto``; created when missing.
    proto_root : Path
        Include root that holds ``nbo/v1/*.proto``.

    Returns
    -------
    list of Path
        The files written, sorted.
    """
    from grpc_tools import protoc  # development dependency: only needed to regenerate

    out_dir.mkdir(parents=True, exist_ok=True)
    protos = proto_files(proto_root)
    well_known = resources.files("grpc_tools") / "_proto"
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "grpc_tools.protoc",
            f"--proto_path={proto_root}",
            f"--proto_path={well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            *(str(p) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {[str(p) for p in protos]}")
        written = []
        for generated in sorted((Path(raw) / PROTO_PACKAGE_DIR).iterdir()):
            if not generated.name.endswith(SUFFIXES):
                continue
            text = _ABSOLUTE_IMPORT.sub("from . import ", generated.read_text())
            target = out_dir / generated.name
            target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=PB_DIR, help="output directory (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.out.resolve() == PB_DIR:
        for stale in PB_DIR.glob("*_pb2*.py*"):
            stale.unlink()
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
