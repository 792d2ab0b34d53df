"""Hostile whole-model files and the upload sandbox (issue 20, item 3).

Each hostile file is built here and first shown to be live (plain torch runs its payload, which
creates a marker file); then the CLI and the upload path must refuse it, name the culprit, exit 2
and leave no marker.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import socket
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from audits.errors import ModelLoadError, UnsafeModelError
from audits.uploads import ModelUploads, UploadedFile
from models.architectures import DigitsCNN, DigitsViT, TabularMLP
from models.archive_inspection import inspect_export_archive
from models.operator_allowlist import export_target_refusal, operator_refusal
from models.sandbox import SandboxLimits, bwrap_available, run_confined, validate_in_sandbox
from models.torchscript_ops import load_torchscript
from tests.conftest import write_card

ROOT = Path(__file__).resolve().parents[1]


class _OpensMarker:
    """Unpickling this creates the marker file: what an attacker's payload would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class FileWriter(nn.Module):
    """A DigitsCNN whose forward also writes a file through torch.from_file(..., shared=True)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.net = DigitsCNN(in_channels=1, n_classes=10, width=4)
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        written = torch.from_file(self.marker, shared=True, size=4)
        return self.net(x) + written.sum() * 0


class WritesOnLoad(nn.Module):
    """A model whose __setstate__ (run by torch.jit.load itself) writes a file."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10]

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        # Used, so the compiler keeps it: 4 bytes written to the marker file.
        self.training = bool(torch.from_file(self.marker, shared=True, size=4).numel() == 4) and state[1]


class SlowLoop(nn.Module):
    """Allowed operators only, but a dry run that never ends."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(x.shape[0], 10)
        for _ in range(1_000_000_000):
            out = out + 0.0
        return out


class HugeAllocation(nn.Module):
    """Allowed operators only, but 16 GiB of activations on the dry run."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.ones(1 << 32)
        return torch.zeros(x.shape[0], 10) + big[0]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "AUDITS_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600, check=False)


def _cli_run(card_path: Path, out: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "audits", "run", "--model", str(card_path), "--out", str(out), "--samples", "4", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=600, check=False)


def _export(folder: Path) -> Path:
    torch.manual_seed(0)
    net = DigitsCNN(in_channels=1, n_classes=10, width=4).eval()
    path = folder / "model.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(2, 1, 8, 8),)), str(path))
    return path


def _rewrite(path: Path, change) -> Path:
    """A copy of the archive at ``path`` with every entry passed through ``change(name, bytes) -> bytes``."""
    out = path.with_name("hostile_" + path.name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info)))
    return out


def _pickle_flagged_pt2(folder: Path, marker: Path) -> tuple[Path, str]:
    """A real torch.export archive whose weights config marks its first weight as pickled, that weight's file a payload."""
    path = _export(folder)
    with zipfile.ZipFile(path) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("_weights_config.json"))
        config = json.loads(archive.read(config_name))
    fqn = next(iter(config["config"]))
    config["config"][fqn]["use_pickle"] = True
    payload_file = config["config"][fqn]["path_name"]

    def change(name: str, data: bytes) -> bytes:
        if name == config_name:
            return json.dumps(config).encode()
        if name.endswith(f"/data/weights/{payload_file}"):
            return pickle.dumps(_OpensMarker(marker), protocol=2)
        return data

    return _rewrite(path, change), fqn


def _image_card(bundle: dict, name: str, fmt: str, weights: Path) -> Path:
    card = {**bundle["card"], "name": name, "format": fmt, "weights": weights.name}
    card.pop("architecture")
    return write_card(weights.parent, card)


def _upload(store: ModelUploads, bundle: dict, card_path: Path, weights: Path) -> None:
    folder = bundle["dir"]
    store.register_model(
        UploadedFile("card.yaml", card_path.read_bytes()),
        UploadedFile(weights.name, weights.read_bytes()),
        UploadedFile("eval.npz", (folder / "eval.npz").read_bytes()),
        UploadedFile("attrs.csv", (folder / "attrs.csv").read_bytes()),
    )


def _assert_nothing_registered(store: ModelUploads) -> None:
    assert store.model_card_paths() == {}
    assert not any((store.root / ".incoming").glob("*/*"))


# --- .pt2 -----------------------------------------------------------------------------------


def test_pickle_flagged_pt2_runs_its_payload_in_torch_but_is_refused_by_the_cli_and_uploads(tmp_path, image_bundle):
    marker = tmp_path / "pt2-payload-ran"
    hostile, fqn = _pickle_flagged_pt2(image_bundle["dir"], marker)
    card_path = _image_card(image_bundle, "hostile-pt2", "torch_export", hostile)

    # The file is live: torch.export.load alone runs the payload.
    live = _python("import sys, torch\ntry:\n    torch.export.load(sys.argv[1])\nexcept Exception:\n    pass", str(hostile))
    assert marker.exists(), live.stderr[-2000:]
    marker.unlink()

    result = _cli_run(card_path, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"marks {fqn!r}" in result.stderr and "as pickled" in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out" / "report.json").exists()

    store = ModelUploads(tmp_path / "store")
    with pytest.raises(UnsafeModelError, match="as pickled"):
        _upload(store, image_bundle, card_path, hostile)
    assert not marker.exists()
    _assert_nothing_registered(store)


def test_pt2_sample_inputs_that_unpickle_arbitrary_objects_are_refused(tmp_path):
    marker = tmp_path / "sample-inputs-payload-ran"
    payload = io.BytesIO()
    torch.save(_OpensMarker(marker), payload)
    hostile = _rewrite(_export(tmp_path), lambda name, data: payload.getvalue() if "/data/sample_inputs/" in name else data)
    with pytest.raises(UnsafeModelError, match=r"sample inputs .*model\.pt.* names .*open"):
        inspect_export_archive(hostile)
    assert not marker.exists()


def _with_entry(path: Path, relative: str, data: bytes, name: str) -> Path:
    """A copy of the archive at ``path`` with one more entry under its root folder."""
    out = path.with_name(name)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        dst.writestr(f"{src.namelist()[0].split('/')[0]}/{relative}", data)
    return out


def test_pt2_pickle_content_native_code_and_foreign_targets_are_refused(tmp_path):
    path = _export(tmp_path)
    inspect_export_archive(path)  # what torch.export.save writes passes

    bare = _with_entry(path, "extra/notes", pickle.dumps(_OpensMarker(tmp_path / "m"), protocol=0), "notes.pt2")
    with pytest.raises(UnsafeModelError, match=r"extra/notes' is a pickle stream"):
        inspect_export_archive(bare)

    native = _with_entry(path, "data/aotinductor/model/model.so", b"\x7fELF", "native.pt2")
    with pytest.raises(UnsafeModelError, match=r"aotinductor/model/model\.so' is compiled native code"):
        inspect_export_archive(native)

    program = _rewrite(
        path, lambda name, data: data.replace(b'"torch.ops.aten.relu.default"', b'"torch.serialization.os.system"') if name.endswith(".json") else data
    )
    with pytest.raises(UnsafeModelError, match=r"calls torch\.serialization\.os\.system"):
        inspect_export_archive(program)


@pytest.mark.parametrize(
    ("build", "example"),
    [
        (lambda: DigitsCNN(in_channels=1, n_classes=10, width=4), torch.zeros(2, 1, 8, 8)),
        (lambda: TabularMLP(in_features=7, n_classes=2, hidden=[8]), torch.zeros(2, 7)),
        (DigitsViT, torch.zeros(2, 1, 8, 8)),
    ],
    ids=["cnn", "mlp", "vit"],
)
def test_the_zoo_architectures_pass_both_checks(tmp_path, build, example):
    torch.manual_seed(0)
    net = build().eval()
    exported = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(net, (example,)), str(exported))
    inspect_export_archive(exported)
    scripted = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(net), str(scripted))
    loaded = load_torchscript(scripted, torch.device("cpu"))
    torch.testing.assert_close(loaded(example), net(example), rtol=1e-4, atol=1e-5)  # scripted kernels may reorder sums


# --- TorchScript ----------------------------------------------------------------------------


def test_a_torchscript_model_that_writes_a_file_runs_in_torch_but_is_refused_before_its_dry_run(tmp_path, image_bundle):
    marker = tmp_path / "forward-wrote-this"
    weights = image_bundle["dir"] / "writer.ts"
    torch.jit.save(torch.jit.script(FileWriter(str(marker))), str(weights))
    card_path = _image_card(image_bundle, "hostile-ts", "torchscript", weights)

    live = _python("import sys, torch\ntorch.jit.load(sys.argv[1])(torch.zeros(2, 1, 8, 8))", str(weights))
    assert live.returncode == 0 and marker.exists(), live.stderr[-2000:]
    marker.unlink()

    result = _cli_run(card_path, tmp_path / "out")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "calls the operator aten::from_file in __torch__" in result.stderr and "FileWriter.forward" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists() and not (tmp_path / "out" / "report.json").exists()

    store = ModelUploads(tmp_path / "store")
    with pytest.raises(UnsafeModelError, match="aten::from_file"):
        _upload(store, image_bundle, card_path, weights)
    assert not marker.exists()
    _assert_nothing_registered(store)


def test_a_torchscript_setstate_that_runs_during_torch_jit_load_is_refused_unloaded(tmp_path, image_bundle):
    marker = tmp_path / "load-wrote-this"
    weights = image_bundle["dir"] / "onload.ts"
    torch.jit.save(torch.jit.script(WritesOnLoad(str(marker))), str(weights))
    assert not marker.exists()  # scripting and saving call __getstate__ only

    live = _python("import sys, torch\ntorch.jit.load(sys.argv[1])", str(weights))
    assert live.returncode == 0 and marker.exists(), live.stderr[-2000:]
    marker.unlink()

    result = _cli_run(_image_card(image_bundle, "onload-ts", "torchscript", weights), tmp_path / "out")
    assert result.returncode == 2 and "defines __setstate__" in result.stderr, result.stderr[-2000:]
    assert not marker.exists()


def test_a_torchscript_archive_holding_torchbind_objects_is_refused_unloaded(tmp_path):
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    with warnings.catch_warnings():  # torch deprecates eager quantization in favour of torchao
        warnings.simplefilter("ignore")
        quantized = torch.ao.quantization.quantize_dynamic(net, {nn.Linear}, dtype=torch.qint8)
    path = tmp_path / "quantized.ts"
    torch.jit.save(torch.jit.script(quantized), str(path))
    with pytest.raises(UnsafeModelError, match=r"uses a TorchBind class \(torch\.classes\.\*\)"):
        load_torchscript(path, torch.device("cpu"))


def test_operator_allowlist():
    assert operator_refusal("aten::conv2d") is None and operator_refusal("prim::If") is None
    assert "namespace" in operator_refusal("myvendor::secret_op")
    assert "file" in operator_refusal("aten::from_file") and operator_refusal("aten::save")
    assert operator_refusal("prim::PythonOp") and operator_refusal("aten::made_up_op")
    assert export_target_refusal("torch.ops.aten.linear.default") is None and export_target_refusal("_operator.getitem") is None
    assert export_target_refusal("torch.ops.mylib.op.default")[0] == "mylib::op"
    assert export_target_refusal("builtins.eval")[0] == "builtins.eval"


# --- the upload sandbox ---------------------------------------------------------------------


def _scripted_card(bundle: dict, module: nn.Module, name: str) -> Path:
    weights = bundle["dir"] / f"{name}.ts"
    torch.jit.save(torch.jit.script(module), str(weights))
    return _image_card(bundle, name, "torchscript", weights)


def test_uploads_that_exhaust_memory_or_time_are_stopped_with_a_clear_message(image_bundle):
    card = _scripted_card(image_bundle, HugeAllocation(), "huge")
    with pytest.raises(ModelLoadError, match="more than its memory limit of 3072 MiB") as info:
        validate_in_sandbox(card, limits=SandboxLimits(memory_mb=3072, timeout_s=900))
    assert "AUDITS_UPLOAD_MEMORY_MB" in info.value.fix

    card = _scripted_card(image_bundle, SlowLoop(), "slow")
    with pytest.raises(ModelLoadError, match="took longer than 20 s") as info:
        validate_in_sandbox(card, limits=SandboxLimits(timeout_s=20))
    assert "AUDITS_UPLOAD_TIMEOUT_S" in info.value.fix


@pytest.mark.skipif(not bwrap_available(), reason="bubblewrap is not installed or may not create namespaces here")
def test_the_sandbox_sees_a_read_only_system_a_private_tmp_and_no_network(tmp_path):
    readable = tmp_path / "staged"
    readable.mkdir()
    (readable / "card.yaml").write_text("name: x\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    probe = f"""
import socket
from pathlib import Path
def attempt(what, action):
    try:
        action()
        print(what, "allowed")
    except OSError as exc:
        print(what, "refused", type(exc).__name__)
attempt("write-staged", lambda: Path({str(readable / "x")!r}).write_text("x"))
attempt("write-project", lambda: Path({str(ROOT / "sandbox-escape")!r}).write_text("x"))
attempt("connect", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=5))
Path("/tmp/private").write_text("x")
print("read-staged", Path({str(readable / "card.yaml")!r}).read_text().strip())
"""
    try:
        run = run_confined([sys.executable, "-c", probe], SandboxLimits(memory_mb=1024, timeout_s=60), readable=[readable])
    finally:
        listener.close()
    assert run.confined and run.returncode == 0, run.stderr
    lines = set(run.stdout.splitlines())
    assert {"write-staged refused OSError", "write-project refused OSError", "read-staged name: x"} <= lines, run.stdout
    assert any(line.startswith("connect refused") for line in lines), run.stdout
    assert not (readable / "x").exists() and not (ROOT / "sandbox-escape").exists() and not Path("/tmp/private").exists()


def test_a_valid_upload_still_registers_through_the_sandbox(tmp_path, image_bundle):
    weights = image_bundle["dir"] / "model.ts"
    torch.jit.save(torch.jit.trace(image_bundle["net"], torch.zeros(1, 1, 8, 8)), str(weights))
    card_path = _image_card(image_bundle, "traced-upload", "torchscript", weights)
    store = ModelUploads(tmp_path / "store")
    _upload(store, image_bundle, card_path, weights)
    assert list(store.model_card_paths()) == ["traced-upload"]
    assert yaml.safe_load(store.model_card_paths()["traced-upload"].read_text())["weights"] == "model.ts"
