"""Fingerprints used by the reuse checks must depend on content only."""

import json

from dasd_utils.hashing import adapter_sha256, file_sha256


def _adapter(folder, modules, weights=b"\x00\x01weights"):
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": 16, "target_modules": modules}))
    (folder / "adapter_model.safetensors").write_bytes(weights)
    return folder


def test_adapter_fingerprint_ignores_target_module_order(tmp_path):
    # PEFT saves target_modules from a set: its order changes between processes.
    a = _adapter(tmp_path / "a", ["q_proj", "k_proj", "v_proj"])
    b = _adapter(tmp_path / "b", ["v_proj", "q_proj", "k_proj"])
    assert adapter_sha256(a) == adapter_sha256(b)


def test_adapter_fingerprint_changes_with_weights_or_modules(tmp_path):
    base = adapter_sha256(_adapter(tmp_path / "a", ["q_proj", "k_proj"]))
    assert adapter_sha256(_adapter(tmp_path / "b", ["q_proj", "k_proj"], weights=b"other")) != base
    assert adapter_sha256(_adapter(tmp_path / "c", ["q_proj"])) != base


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 3_000_000)
    assert file_sha256(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
