"""The run directory's manifest: one reader and writer for every stage."""

import json

import pytest

from transcoders.run import COMPLETE, CheckpointError, Manifest, coder_dir, has_manifest


def test_manifest_round_trips_in_file_order_and_leaves_unset_fields_out(tmp_path):
    manifest = Manifest(
        format=1, config={"model": "m"}, train_tokens=64,
        architectures={"sae": {"status": COMPLETE}, "transcoder": {"status": "training"}},
    )
    manifest.write(tmp_path)
    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert list(on_disk) == ["format", "config", "train_tokens", "architectures"]
    assert Manifest.read(tmp_path) == manifest
    assert manifest.unfinished(["sae", "transcoder", "skip-transcoder"]) == [
        "skip-transcoder", "transcoder"
    ]


def test_a_folder_without_manifest_is_a_plain_sparsify_folder(tmp_path):
    assert Manifest.read(tmp_path) is None and not has_manifest(tmp_path)
    assert coder_dir(tmp_path, "sae", "layers.6.mlp") == tmp_path / "sae" / "layers.6.mlp"


@pytest.mark.parametrize("text, message", [
    ("{", "is not valid JSON"),
    ("[]", "is not a transcoders manifest"),
    ('{"architectures": {"sae": 3}}', "is not a transcoders manifest"),
    ('{"config": "m"}', "is not a transcoders manifest"),
])
def test_a_damaged_manifest_is_one_error_naming_the_file(tmp_path, text, message):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CheckpointError, match=message) as err:
        Manifest.read(tmp_path)
    assert str(tmp_path / "manifest.json") in str(err.value)


def test_nan_is_refused_rather_than_written_as_non_json(tmp_path):
    with pytest.raises(ValueError):
        Manifest(architectures={"sae": {"fvu": float("nan")}}).write(tmp_path)
    assert not (tmp_path / "manifest.json").exists()
