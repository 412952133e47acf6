from __future__ import annotations

from pathlib import Path

from streamrec.serve.protos import PROTO_FILE, ensure_stubs


def test_stubs_are_generated_when_missing_and_regenerated_when_the_proto_changes(tmp_path: Path) -> None:
    proto, stubs = tmp_path / "recommender.proto", tmp_path / "pkg" / "_proto"
    proto.write_text(PROTO_FILE.read_text())
    assert ensure_stubs(proto, stubs) is True
    assert (stubs / "recommender_pb2.py").is_file() and (stubs / "recommender_pb2_grpc.py").is_file()
    assert ensure_stubs(proto, stubs) is False  # fresh: nothing to do
    proto.write_text(PROTO_FILE.read_text().replace("bool cold_start = 4;", "bool cold_start = 4;\n  string note = 5;"))
    assert ensure_stubs(proto, stubs) is True
    assert "note" in (stubs / "recommender_pb2.py").read_text()


def test_the_service_keeps_its_public_name() -> None:
    from streamrec.serve.servicer import pb2

    service = pb2.DESCRIPTOR.services_by_name["Recommender"]
    assert service.full_name == "streamrec.v1.Recommender"
    assert [m.name for m in service.methods] == ["Recommend", "RecommendForSequence", "SimilarItems", "RecommendStream"]
