"""Custom-op libraries (tritonforge/repository/op_libraries.py): a config names one by its bare file
name, in-process sessions and serve-repo's ONNX Runtime backend load it, and Triton's C++ ONNX
Runtime backend (../shared/reference-backends, where present) loads it from LD_LIBRARY_PATH."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fixtures_serving import make_config, write_model
from tritonforge.repository import op_libraries
from tritonforge.serving.server import ServeError

EXTENSIONS = "libortextensions.so"


def decode_model(path):
    """RAW uint8 [-1] (an encoded image) -> PIX uint8 [h, w, 3] (BGR): onnxruntime-extensions' DecodeImage."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("DecodeImage", ["RAW"], ["PIX"], domain="com.microsoft.extensions")
    graph = helper.make_graph([node], "decode", [helper.make_tensor_value_info("RAW", TensorProto.UINT8, ["bytes"])],
                              [helper.make_tensor_value_info("PIX", TensorProto.UINT8, ["h", "w", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft.extensions", 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def decode_config(name: str, libraries=(EXTENSIONS,)):
    return make_config(name, "onnxruntime_onnx", [("RAW", "TYPE_UINT8", [-1])], [("PIX", "TYPE_UINT8", [-1, -1, 3])],
                       max_batch_size=0, op_libraries=libraries)


def png(pixels: np.ndarray) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return np.frombuffer(buffer.getvalue(), np.uint8)


IMAGE = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
BGR = IMAGE[:, :, ::-1]


def test_configure_names_the_library_by_its_bare_file_name_once():
    from tritonclient.grpc import model_config_pb2 as mc

    config = op_libraries.configure(mc.ModelConfig(name="m"), ["ortextensions"])
    config = op_libraries.configure(config, ["ortextensions"])
    assert list(config.model_operations.op_library_filename) == [EXTENSIONS]
    assert op_libraries.filenames_of(config) == (EXTENSIONS,)
    assert op_libraries.filenames_of({"model_operations": {"op_library_filename": [EXTENSIONS]}}) == (EXTENSIONS,)


def test_an_unknown_library_is_refused_in_one_line():
    from tritonclient.grpc import model_config_pb2 as mc

    with pytest.raises(op_libraries.OpLibraryError, match=r"^unknown op library 'tokenizers' \(known: ortextensions\)$"):
        op_libraries.configure(mc.ModelConfig(name="m"), ["tokenizers"])
    with pytest.raises(op_libraries.OpLibraryError, match="'libnosuch.so' is not known here"):
        op_libraries.resolve("libnosuch.so")
    with pytest.raises(op_libraries.OpLibraryError, match="does not exist"):
        op_libraries.resolve("/nowhere/libnosuch.so")


def test_in_process_sessions_decode_with_the_installed_library(tmp_path):
    import onnxruntime as ort

    options = op_libraries.session_options_for(decode_config("d"))
    session = ort.InferenceSession(str(decode_model(tmp_path / "d.onnx")), options, providers=["CPUExecutionProvider"])
    assert np.array_equal(session.run(None, {"RAW": png(IMAGE)})[0], BGR)
    assert op_libraries.resolve(EXTENSIONS) == op_libraries.LIBRARIES["ortextensions"].locate()


def test_serve_repo_loads_the_library_a_config_names(tiny_server, tiny_repo, tmp_path):
    """Over HTTP and gRPC, the served DecodeImage answers the PNG's pixels."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    write_model(tiny_repo, decode_config("oplib_decode"), decode_model(tmp_path / "d.onnx"), "model.onnx")
    tiny_server.load("oplib_decode")
    raw = png(IMAGE)
    for module, client in ((httpclient, tiny_server.http_client()), (grpcclient, tiny_server.grpc_client())):
        request = module.InferInput("RAW", [raw.size], "UINT8")
        request.set_data_from_numpy(raw)
        assert np.array_equal(client.infer("oplib_decode", [request]).as_numpy("PIX"), BGR)


def test_serve_repo_refuses_a_library_it_cannot_find(tiny_server, tiny_repo, tmp_path):
    write_model(tiny_repo, decode_config("oplib_missing", ("libnosuch_ops.so",)), decode_model(tmp_path / "d.onnx"), "model.onnx")
    with pytest.raises(ServeError) as info:
        tiny_server.load("oplib_missing")
    message = str(info.value)
    assert "model 'oplib_missing': Failed to load library libnosuch_ops.so of model_operations" in message
    assert "is on no LD_LIBRARY_PATH folder" in message


def test_the_standalone_copy_names_libpython(tmp_path):
    """The wheel's library leaves Python's symbols to the interpreter; the copy for a process
    without Python (tritonserver) lists libpython among its dependencies."""
    import subprocess

    copy = op_libraries.standalone_copy("ortextensions", tmp_path / "lib")
    assert copy.name == EXTENSIONS
    needed = subprocess.run(["readelf", "-d", str(copy)], capture_output=True, text=True).stdout
    assert "libpython3" in needed


def test_triton_cpp_backend_loads_the_library_by_its_bare_name(reference_server, tmp_path):
    """Triton's own ONNX Runtime backend (r24.10, ONNX Runtime 1.19.2) loads the same config: the
    bare name is found on LD_LIBRARY_PATH (fixtures_reference puts the standalone copy there)."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    write_model(reference_server.repo, decode_config("oplib_decode_cpp"), decode_model(tmp_path / "d.onnx"), "model.onnx")
    reference_server.load("oplib_decode_cpp")
    raw = png(IMAGE)
    for module, client in ((httpclient, reference_server.http_client()), (grpcclient, reference_server.grpc_client())):
        request = module.InferInput("RAW", [raw.size], "UINT8")
        request.set_data_from_numpy(raw)
        assert np.array_equal(client.infer("oplib_decode_cpp", [request]).as_numpy("PIX"), BGR)


def test_triton_cpp_backend_refuses_a_library_it_cannot_find(reference_server, tmp_path):
    write_model(reference_server.repo, decode_config("oplib_missing_cpp", ("libnosuch_ops.so",)),
                decode_model(tmp_path / "d.onnx"), "model.onnx")
    with pytest.raises(ServeError, match="Failed to load library libnosuch_ops.so"):
        reference_server.load("oplib_missing_cpp")


def test_the_ngc_image_installs_each_library_under_its_config_name_on_its_library_path():
    """deploy/triton/Dockerfile: the file name configs carry, in a folder on LD_LIBRARY_PATH,
    made loadable outside Python, from the version the project pins."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    dockerfile = (root / "deploy" / "triton" / "Dockerfile").read_text()
    pins = (root / "constraints.txt").read_text()
    lib = op_libraries.LIBRARIES["ortextensions"]
    assert f"/opt/tritonforge/lib/{lib.filename}" in dockerfile
    assert "ENV LD_LIBRARY_PATH=/opt/tritonforge/lib:" in dockerfile
    assert "patchelf --add-needed" in dockerfile
    pinned = next(line for line in pins.splitlines() if line.startswith("onnxruntime-extensions=="))
    installed = dockerfile.split("ARG ORT_EXTENSIONS=")[1].split()[0]
    assert installed.startswith(pinned.rstrip("*").rstrip("."))
