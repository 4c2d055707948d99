"""The checked-in stubs in engine/serving/pb must be exactly what the .proto generates."""

from __future__ import annotations

from pathlib import Path

from engine.serving import codegen


def test_checked_in_stubs_match_the_proto(tmp_path: Path) -> None:
    written = codegen.generate(tmp_path)
    fresh = {p.name: p.read_text() for p in written}
    checked_in = {p.name: p.read_text() for p in codegen.PB_DIR.glob("*_pb2*.py*")}
    assert sorted(fresh) == sorted(checked_in), "generated file set differs from engine/serving/pb"
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert not stale, f"stale stubs {stale}: run `python -m engine.serving.codegen` and commit"


def test_generated_imports_are_package_relative() -> None:
    grpc_module = (codegen.PB_DIR / "offers_pb2_grpc.py").read_text()
    assert "from . import offers_pb2" in grpc_module
    assert "from nbo.v1" not in grpc_module


def test_stubs_import_and_carry_every_rpc() -> None:
    from engine.serving.pb import offers_pb2

    services = offers_pb2.DESCRIPTOR.services_by_name
    assert sorted(m.name for m in services["OfferService"].methods) == [
        "Activate",
        "Decide",
        "DecideBatch",
        "Reward",
        "RewardBatch",
    ]
    assert sorted(m.name for m in services["AdminService"].methods) == [
        "GetModelInfo",
        "ListModels",
        "PromoteModel",
        "RollbackModel",
        "SetMode",
        "Snapshot",
    ]
