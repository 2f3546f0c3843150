"""What the images import: the code each image runs parses as Python 3.10 (NGC 24.10) and every third-party module
it imports is installed by that image's requirements file."""

from __future__ import annotations

import deploy_helpers
import pytest
from deploy_helpers import (
    CLIENT_LAZY_EXEMPT,
    REQUIREMENTS,
    ROOT,
    SERVER_LAZY_EXEMPT,
    check_provided,
    check_py310,
    import_closure,
    python_backend_models,
)


def test_python_backend_models_work_in_the_server_image():
    entries = python_backend_models()
    assert entries, "model_repository/ has no Python-backend model.py"
    files, third = import_closure(entries)
    assert any(f.is_relative_to(ROOT / "src" / "facedeid") for f in files), "expected the models to import facedeid"
    check_py310(files)
    check_provided(third, REQUIREMENTS["server"], {"triton_python_backend_utils", "c_python_backend_utils"},
                   lazy_exempt=SERVER_LAZY_EXEMPT)


def test_export_runs_in_the_export_image():
    entry = ROOT / "export" / "to_trt.py"
    assert entry.is_file(), "export/to_trt.py is what the export image runs"
    files, third = import_closure([entry])
    check_py310(files)
    check_provided(third, REQUIREMENTS["export"], {"tensorrt"})


def test_evaluation_runs_in_the_client_image():
    """The client image runs eval/*.py and client/*.py (docker/Dockerfile.client copies both folders)."""
    entries = sorted([*(ROOT / "eval").glob("*.py"), *(ROOT / "client").glob("*.py")])
    assert ROOT / "eval" / "triton_eval.py" in entries
    _, third = import_closure(entries)
    check_provided(third, REQUIREMENTS["client"], set(), lazy_exempt=CLIENT_LAZY_EXEMPT)


def test_import_closure_finds_what_is_missing(tmp_path, monkeypatch):
    """The image checks above can fail: missing packages and 3.11-only code are reported."""
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "__init__.py").write_text("import numpy\ndef f():\n    import lazy_only_pkg\n")
    script = tmp_path / "entry.py"
    script.write_text("import pkg\nimport definitely_not_installed_pkg\nfrom typing import Self\n"
                      "try:\n    import optional_pkg\nexcept ImportError:\n    optional_pkg = None\n"
                      "def main():\n    import cv2\n")
    monkeypatch.setattr(deploy_helpers, "ROOT", tmp_path)
    files, third = import_closure([script])
    assert set(files) == {script, tmp_path / "src" / "pkg" / "__init__.py"}
    assert third.keys() == {"numpy", "definitely_not_installed_pkg", "cv2", "lazy_only_pkg"}
    assert third["lazy_only_pkg"] == [("src/pkg/__init__.py", True)] and third["cv2"] == [("entry.py", False)]
    with pytest.raises(AssertionError, match="definitely_not_installed_pkg"):
        check_provided(third, REQUIREMENTS["server"], set())
    del third["definitely_not_installed_pkg"]
    with pytest.raises(AssertionError, match="lazy_only_pkg"):
        check_provided(third, REQUIREMENTS["server"], set())
    check_provided(third, REQUIREMENTS["server"], set(), lazy_exempt={"lazy_only_pkg": "test"})
    with pytest.raises(AssertionError, match="Self"):
        check_py310(files)
