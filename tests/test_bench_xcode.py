"""The iPhone / iOS Simulator runner as far as Linux can take it: the command lines built for
xcodebuild, devicectl and simctl; their parsers on recorded real outputs (tests/data/xcode); the
files exchanged with the benchmark app; the Swift sources' syntax and project; and the whole host
side (build, install, copy, launch, wait, pull, parse, judge) against a fake xcrun/xcodebuild that
plays the app back (tests/fake_xcode_tools.py). None of this is a device measurement: no Mac ran
these tests (docs/ios.md says what was and was not run on one)."""

from __future__ import annotations

import json
import os
import re
import struct
import sys
from pathlib import Path

import pytest
import tree_sitter_swift
from tree_sitter import Language, Parser

from edgesam_deploy.bench import run as bench_run
from edgesam_deploy.bench.parsers import devicectl, simctl, xcodebuild
from edgesam_deploy.bench.parsers.xcode_app import (
    AppResultError,
    JobSpec,
    RowLabels,
    artifact_rows,
    check_header,
    done_error,
    pipeline_rows,
    read_pack,
    write_pack,
)
from edgesam_deploy.bench.run import BenchSettings, run_bench
from edgesam_deploy.bench.runners import BenchRequest, RunnerOptions, get_runner, xcode
from edgesam_deploy.device.protocol import write_tensor
from edgesam_deploy.devices import get_profile
from edgesam_deploy.errors import DeviceError
from edgesam_deploy.fileio import sha256_path
from edgesam_deploy.manifest import ArtifactRecord, Manifest
from edgesam_deploy.parity import Reference
from edgesam_deploy.parity.bundle import write_bundle
from edgesam_deploy.parity.engine import decoder_case_id, encoder_case_id
from edgesam_deploy.parity.judge import judge_device_outputs
from edgesam_deploy.vocabulary import ComputeUnit

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "xcode"
APP = REPO / "apps" / "ios"
SOURCES = sorted((APP / "EdgeSAMBench").glob("*.swift"))
FAKE_TOOLS = Path(__file__).parent / "fake_xcode_tools.py"


def _json(name: str) -> dict:
    return json.loads((DATA / name).read_text())


# --- parsers on recorded outputs ------------------------------------------------------------


def test_devicectl_devices_from_a_recorded_list():
    phones = devicectl.parse_devices(_json("devicectl_list_devices_maestro.json"))
    assert [p.model for p in phones] == [
        "iPhone 13 Pro Max",
        "iPhone 14 Pro",
    ]  # the watch is left out
    old, wired = phones
    assert old.paired and not old.connected and old.udid == "00008110-001C108C0132401E"
    assert wired.connected and wired.identifier == "6986451F-A2FF-48DE-A70E-45E06E1F1446"
    assert (wired.os_version, wired.product_type, wired.developer_mode) == (
        "18.4.1",
        "iPhone15,2",
        "enabled",
    )
    assert (
        wired.matches("00008120-0014485601E3C01E")
        and wired.matches("iPhone")
        and not old.matches("iPhone")
    )


def test_simctl_prefers_a_booted_iphone_then_the_newest_runtime():
    booted = simctl.parse_devices(_json("simctl_list_marathon_3.json"))
    assert all(s.os_version == (16, 2) for s in booted)  # 16.0 and 16.1 are unavailable there
    chosen = simctl.choose(booted, None)
    assert chosen.state == "Booted" and chosen.name == "iPhone 14" and chosen.is_iphone
    idle = simctl.parse_devices(_json("simctl_list_marathon_2.json"))
    first = simctl.choose(idle, None)
    assert (
        first.os_version == (16, 1)
        and first.state == "Shutdown"
        and first.name.startswith("iPhone")
    )
    by_name = simctl.choose(idle, "iPhone 14 Pro")
    assert by_name.name == "iPhone 14 Pro" and simctl.choose(idle, by_name.udid) == by_name
    assert simctl.choose(idle, "Pixel 8") is None and simctl.parse_devices({"devices": {}}) == []


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (
            "xcodebuild_no_team_azure_4216.txt",
            'Signing for "Responder" requires a development team.',
        ),
        ("xcodebuild_no_account_forem_34.txt", 'No account for team "xxxxxxxxxx".'),
        (
            "xcodebuild_requires_team_ios_build_action_48.txt",
            'Signing for "my_project" requires a development team.',
        ),
    ],
)
def test_signing_failures_of_recorded_builds(log, expected):
    text = (DATA / log).read_text()
    assert xcodebuild.signing_problem(text).startswith(expected)
    assert xcodebuild.signing_problem("** BUILD SUCCEEDED **") is None


def test_first_error_and_xcode_version():
    text = (DATA / "xcodebuild_no_account_forem_34.txt").read_text()
    assert xcodebuild.first_error(text).startswith('No account for team "xxxxxxxxxx"')
    assert xcodebuild.first_error("Check dependencies\n** BUILD FAILED **") is None
    assert xcodebuild.xcode_version("Xcode 15.4\nBuild version 15F31d\n") == "Xcode 15.4"
    assert xcodebuild.valid_team("ABCDE12345") and not xcodebuild.valid_team("abcde12345")


# --- command lines ----------------------------------------------------------------------------


def test_build_commands_for_a_phone_and_the_simulator(tmp_path):
    phone = xcodebuild.build_command(
        "xcodebuild", tmp_path / "P.xcodeproj", tmp_path / "dd", False, "b.id", "ABCDE12345"
    )
    assert phone[:9] == [
        "xcodebuild",
        "-project",
        str(tmp_path / "P.xcodeproj"),
        "-scheme",
        "EdgeSAMBench",
        "-configuration",
        "Release",
        "-destination",
        "generic/platform=iOS",
    ]
    assert phone[-5:] == [
        "-allowProvisioningDeviceRegistration",
        "build",
        "PRODUCT_BUNDLE_IDENTIFIER=b.id",
        "DEVELOPMENT_TEAM=ABCDE12345",
        "CODE_SIGN_STYLE=Automatic",
    ]
    sim = xcodebuild.build_command(
        "xcodebuild", tmp_path / "P.xcodeproj", tmp_path / "dd", True, "b.id", None
    )
    assert "generic/platform=iOS Simulator" in sim and sim[-2:] == [
        "PRODUCT_BUNDLE_IDENTIFIER=b.id",
        "CODE_SIGNING_ALLOWED=NO",
    ]
    assert not any("TEAM" in a or "Provisioning" in a for a in sim)
    assert (
        xcodebuild.product_path(tmp_path, True)
        == tmp_path / "Build/Products/Release-iphonesimulator/EdgeSAMBench.app"
    )


def test_devicectl_command_lines(tmp_path):
    pack = tmp_path / "j.pack"
    assert (
        devicectl.copy_to("xcrun", "D", "b.id", pack, "Documents/j.pack")
        == (
            "xcrun devicectl device copy to --device D --domain-type appDataContainer "
            f"--domain-identifier b.id --source {pack} --destination Documents/j.pack"
        ).split()
    )
    assert (
        devicectl.copy_from("xcrun", "D", "b.id", "Documents/r", pack)
        == (
            "xcrun devicectl device copy from --device D --domain-type appDataContainer "
            f"--domain-identifier b.id --source Documents/r --destination {pack}"
        ).split()
    )
    assert (
        devicectl.launch("xcrun", "D", "b.id", ["--run-id", "7"])
        == (
            "xcrun devicectl device process launch --device D --terminate-existing "
            "b.id -- --run-id 7"
        ).split()
    )
    assert devicectl.install_app("xcrun", "D", pack) == (
        f"xcrun devicectl device install app --device D {pack}".split()
    )
    assert devicectl.list_devices("xcrun", pack) == (
        f"xcrun devicectl list devices --json-output {pack}".split()
    )


def test_simctl_command_lines(tmp_path):
    assert simctl.list_devices("xcrun") == "xcrun simctl list --json devices available".split()
    assert simctl.boot("xcrun", "U") == "xcrun simctl bootstatus U -b".split()
    assert simctl.install("xcrun", "U", tmp_path) == f"xcrun simctl install U {tmp_path}".split()
    assert simctl.app_container("xcrun", "U", "b.id") == (
        "xcrun simctl get_app_container U b.id data".split()
    )
    assert simctl.launch("xcrun", "U", "b.id", ["--run-id", "7"]) == (
        "xcrun simctl launch --terminate-running-process U b.id --run-id 7".split()
    )


# --- the files exchanged with the app -----------------------------------------------------------


def test_pack_bytes_are_the_documented_format(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x.bin").write_bytes(b"\x01\x02")
    (tmp_path / "j.json").write_text("{}")
    write_pack(tmp_path / "p", {"job.json": tmp_path / "j.json", "bundle": tmp_path / "d"})
    header = json.dumps(
        {"files": [{"path": "bundle/x.bin", "size": 2}, {"path": "job.json", "size": 2}]}
    ).encode()
    assert (tmp_path / "p").read_bytes() == b"ESPACK01" + struct.pack(
        "<Q", len(header)
    ) + header + b"\x01\x02{}"
    read_pack(tmp_path / "p", tmp_path / "out")
    assert (tmp_path / "out" / "bundle" / "x.bin").read_bytes() == b"\x01\x02"


def test_bad_packs_are_refused(tmp_path):
    header = json.dumps({"files": [{"path": "../evil", "size": 1}]}).encode()
    (tmp_path / "p").write_bytes(b"ESPACK01" + struct.pack("<Q", len(header)) + header + b"x")
    with pytest.raises(AppResultError, match="leaves its folder"):
        read_pack(tmp_path / "p", tmp_path / "out")
    header = json.dumps({"files": [{"path": "a", "size": 5}]}).encode()
    (tmp_path / "p").write_bytes(b"ESPACK01" + struct.pack("<Q", len(header)) + header + b"abc")
    with pytest.raises(AppResultError, match="truncated"):
        read_pack(tmp_path / "p", tmp_path / "out")
    (tmp_path / "p").write_bytes(b"ESPACK01\x01\x00")
    with pytest.raises(AppResultError, match="truncated header"):
        read_pack(tmp_path / "p", tmp_path / "out")
    (tmp_path / "p").write_bytes(b"PK\x03\x04")
    with pytest.raises(AppResultError, match="not a pack"):
        read_pack(tmp_path / "p", tmp_path / "out")


def _record(file: str, role: str) -> ArtifactRecord:
    return ArtifactRecord(file, "coreml", role, "fp16", [], [], 1000, "0" * 64)


def test_bench_rows_per_compute_unit_failures_and_missing():
    stats = {"p50": 5, "p90": 6, "min": 4, "mean": 5.2, "runs": 3, "std": 0.1, "max": 7}
    data = {
        "artifacts": [
            {
                "file": "e",
                "compute_units": "CPU_ONLY",
                "measured": True,
                "latency": {"encoder": stats},
                "load_ms": 80,
                "peak_rss_mib": 300,
                "extra": {"compile_ms": 900},
            },
            {"file": "d", "compute_units": "", "measured": False, "reason": "compile failed: no"},
        ],
        "pipelines": [
            {
                "encoder": "e",
                "decoder": "d",
                "label": "coreml fp16",
                "compute_units": "ALL",
                "measured": True,
                "fps": 50,
                "end_to_end": stats,
                "time_to_first_mask_ms": 900,
            }
        ],
    }
    labels = RowLabels("coreml", "iOS 17.5")
    rows = artifact_rows(
        data, [_record("e", "encoder"), _record("d", "decoder")], ["CPU_ONLY", "ALL"], labels
    )
    assert [(r.file, r.runtime_details["compute_units"], r.measured) for r in rows] == [
        ("e", "CPU_ONLY", True),
        ("e", "ALL", False),
        ("d", "CPU_ONLY", False),
        ("d", "ALL", False),
    ]
    assert (
        rows[0].latency["encoder"].p50 == 5
        and rows[0].extra == {"compile_ms": 900}
        and rows[0].size_bytes == 1000
    )
    assert "no result for it with ALL" in rows[1].reason and rows[2].reason == "compile failed: no"
    (pipe,) = pipeline_rows(
        data, RowLabels("coreml (iOS Simulator)", "", "iOS Simulator on the Mac's CPU")
    )
    assert (
        pipe.measured
        and pipe.fps == 50
        and pipe.label == "coreml fp16 (ALL, iOS Simulator on the Mac's CPU)"
    )
    with pytest.raises(AppResultError, match="not a list of objects"):
        artifact_rows({"artifacts": ["e"]}, [_record("e", "encoder")], ["ALL"], labels)
    data["artifacts"][0]["latency"] = {"encoder": {"p50": "fast"}}
    with pytest.raises(AppResultError, match="bad latency"):
        artifact_rows(data, [_record("e", "encoder")], ["CPU_ONLY"], labels)


def test_headers_and_done_file_belong_to_the_run():
    with pytest.raises(AppResultError, match="not of this run"):
        check_header({"format": "edgesam-ios-bench", "version": 1, "run_id": "old"}, "new")
    assert done_error({"run_id": "old", "status": "ok"}, "new") is None
    assert done_error(["not", "an", "object"], "new") is None
    assert done_error({"run_id": "new", "status": "ok"}, "new") == ""
    assert done_error({"run_id": "new", "status": "error", "error": "boom"}, "new") == "boom"


def _swift_coding_keys() -> set[str]:
    """JSON keys of the Swift sources' CodingKeys: `case a = "json_name"` and `case a, b, c`."""
    swift = "\n".join(p.read_text() for p in SOURCES)
    keys = set(re.findall(r'^\s*case \w+ = "([^"]+)"$', swift, re.M))
    for names in re.findall(r"^\s*case ([a-z]\w*(?:, [a-z]\w*)*)$", swift, re.M):
        keys.update(names.split(", "))
    return keys


def test_the_swift_sources_read_the_keys_the_host_writes():
    """Each key of job.json and of the app's results the host reads is a coding key in Swift."""
    job = JobSpec("r", "timing", 1, 0, [ComputeUnit.ALL], ComputeUnit.ALL).document()
    read_back = {
        "load_ms",
        "peak_rss_mib",
        "rss_delta_mib",
        "clicks_per_s",
        "compute_units",
        "end_to_end",
        "time_to_first_mask_ms",
        "run_id",
        "protocol",
        "status",
        "error",
        "measured",
        "reason",
    }
    assert (set(job) | read_back) - _swift_coding_keys() == set()
    swift = "\n".join(p.read_text() for p in SOURCES)
    assert '"ESPACK01"' in swift and '"edgesam-ios-job"' in swift and '"edgesam-ios-bench"' in swift


# --- the Swift sources and the Xcode project ----------------------------------------------------


def test_swift_sources_parse():
    """A syntax check with the tree-sitter Swift grammar: no Swift compiler exists for Debian
    bookworm (docs/ios.md), so this is not a type check."""
    parser = Parser(Language(tree_sitter_swift.language()))
    assert len(SOURCES) >= 8
    broken = [p.name for p in SOURCES if parser.parse(p.read_bytes()).root_node.has_error]
    assert broken == []
    assert parser.parse(b"struct A { let x = [1, 2\n }").root_node.has_error  # the check can fail


def test_xcode_project_builds_every_swift_file():
    pbx = (APP / "EdgeSAMBench.xcodeproj" / "project.pbxproj").read_text()
    sources = re.search(r"isa = PBXSourcesBuildPhase;.*?files = \((.*?)\);", pbx, re.S).group(1)
    assert sorted(re.findall(r"/\* (\S+\.swift) in Sources \*/", sources)) == [
        p.name for p in SOURCES
    ]
    defined = set(re.findall(r"^\t\t([0-9A-F]{24}) ", pbx, re.M))
    assert set(re.findall(r"\b[0-9A-F]{24}\b", pbx)) == defined
    assert pbx.count("{") == pbx.count("}") and "IPHONEOS_DEPLOYMENT_TARGET = 16.0;" in pbx
    scheme = (
        APP / "EdgeSAMBench.xcodeproj/xcshareddata/xcschemes/EdgeSAMBench.xcscheme"
    ).read_text()
    target = re.search(
        r"([0-9A-F]{24}) /\* EdgeSAMBench \*/ = \{\s*isa = PBXNativeTarget", pbx
    ).group(1)
    assert f'BlueprintIdentifier = "{target}"' in scheme


# --- the runner's own refusals ------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "darwin", reason="the refusal is for machines without Xcode")
def test_iphone_on_linux_names_macos_and_the_simulator():
    message = str(pytest.raises(DeviceError, get_runner(get_profile("iphone14")).probe).value)
    assert "macOS" in message and "Xcode 15" in message and "--device ios-simulator" in message
    assert "\n" not in message


def test_signing_and_compute_unit_settings(monkeypatch):
    monkeypatch.delenv("EDGESAM_DEVELOPMENT_TEAM", raising=False)
    runner = get_runner(get_profile("iphone14"))
    with pytest.raises(
        DeviceError, match=r"code signing is not set up: set \$EDGESAM_DEVELOPMENT_TEAM"
    ):
        runner.team()
    monkeypatch.setenv("EDGESAM_DEVELOPMENT_TEAM", "my team")
    with pytest.raises(DeviceError, match="not an Apple team id"):
        runner.team()
    monkeypatch.setenv("EDGESAM_DEVELOPMENT_TEAM", "ABCDE12345")
    assert runner.bundle_id(runner.team()) == "dev.edgesam-deploy.bench.ABCDE12345"
    flagged = get_runner(get_profile("iphone14"), RunnerOptions(xcode_team="ZYXWV98765"))
    assert flagged.team() == "ZYXWV98765"  # --xcode-team wins over the profile's variable
    with pytest.raises(DeviceError, match=r"'bad' \(from --xcode-team\) is not an Apple team id"):
        get_runner(get_profile("iphone14"), RunnerOptions(xcode_team="bad")).team()
    timed, parity = runner.compute_units()
    assert timed[-1] == parity == ComputeUnit.CPU_AND_NE and sorted(timed) == sorted(ComputeUnit)
    simulator = get_runner(get_profile("ios-simulator"))
    assert simulator.team() is None and simulator.compute_units() == (
        [ComputeUnit.CPU_ONLY],
        ComputeUnit.CPU_ONLY,
    )


# --- the whole host side against the fake tools -------------------------------------------------


@pytest.fixture
def fake_xcode(tmp_path, monkeypatch) -> Path:
    """Wrappers named xcrun and xcodebuild on PATH running tests/fake_xcode_tools.py; macOS
    claimed; cache and state in tmp_path. Returns the state folder."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for tool in ("xcrun", "xcodebuild"):
        wrapper = bin_dir / tool
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_TOOLS}" {tool} "$@"\n')
        wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("FAKE_STATE", str(state))
    monkeypatch.setenv("FAKE_DATA", str(DATA))
    monkeypatch.setenv("EDGESAM_DEPLOY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGESAM_DEVELOPMENT_TEAM", "ABCDE12345")
    monkeypatch.setenv("EDGESAM_IPHONE14_DEVICE", "iPhone")
    monkeypatch.setattr(xcode, "host_platform", lambda: "darwin")
    monkeypatch.setattr(xcode, "POLL_S", 0.01)
    return state


@pytest.fixture
def coreml_export(tmp_path) -> tuple[Path, list[ArtifactRecord]]:
    """An export folder with two placeholder .mlpackage folders (the fake app never loads them)."""
    export = tmp_path / "export"
    records = []
    for role in ("encoder", "decoder"):
        package = export / "coreml" / f"{role}.fp16.mlpackage"
        package.mkdir(parents=True)
        (package / "Manifest.json").write_text("{}")
        details = {"scores": "iou"} if role == "decoder" else {}
        records.append(
            ArtifactRecord(
                f"coreml/{role}.fp16.mlpackage",
                "coreml",
                role,
                "fp16",
                [],
                [],
                2,
                sha256_path(package),
                details,
            )
        )
    (export / "e.onnx").write_bytes(b"x")
    records.append(
        ArtifactRecord(
            "e.onnx", "onnx", "encoder", "fp32", [], [], 1, sha256_path(export / "e.onnx")
        )
    )
    Manifest(model={"kind": "random", "seed": 0}, artifacts=records).save(export)
    return export, records


def _calls(state: Path) -> list[list[str]]:
    return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]


def test_iphone_timing_through_the_fake_tools(fake_xcode, coreml_export):
    export, records = coreml_export
    runner = get_runner(get_profile("iphone14"))
    assert runner.probe().startswith("iPhone (iPhone 14 Pro, iOS 18.4.1")
    outcome = runner.run(BenchRequest(export, Manifest.load(export), records, runs=5, warmup=1))
    rows = [r for r in outcome.artifacts if r.target == "coreml"]
    assert [r.runtime_details["compute_units"] for r in rows[:4]] == [
        "ALL",
        "CPU_AND_GPU",
        "CPU_ONLY",
        "CPU_AND_NE",
    ]
    assert all(r.measured and r.runtime == "coreml" for r in rows) and len(rows) == 8
    assert rows[0].parity_reason == "device parity runs with CPU_AND_NE only (see that row)"
    assert rows[3].parity_reason == ""
    decoder = rows[-1]
    assert decoder.latency["decoder_16_points"].runs == 5 and decoder.clicks_per_s == 95.0
    assert outcome.artifacts[-1].reason == xcode.NOT_COREML
    assert len(outcome.pipelines) == 4 and outcome.pipelines[-1].label == "coreml fp16 (CPU_AND_NE)"
    assert (
        outcome.device.hostname == "iPhone" and outcome.device.details["model"] == "iPhone 14 Pro"
    )
    assert outcome.versions["xcode"] == "Xcode 15.4"
    calls = _calls(fake_xcode)
    build = next(c for c in calls if c[0] == "xcodebuild" and "build" in c)
    assert "DEVELOPMENT_TEAM=ABCDE12345" in build and str(APP / "EdgeSAMBench.xcodeproj") in build
    steps = [c[2:4] for c in calls if c[:2] == ["xcrun", "devicectl"]]
    assert steps[:4] == [
        ["list", "devices"],
        ["device", "install"],
        ["device", "copy"],
        ["device", "process"],
    ]
    assert calls[-1][2:5] == ["device", "copy", "from"] and calls[-1][
        calls[-1].index("--source") + 1
    ].startswith("Documents/edgesam-result-")


@pytest.fixture(scope="module")
def coffee_reference(random_model, tmp_path_factory) -> tuple[Reference, Path]:
    """The reference on the coffee photo and its own outputs per case, written where the fake app
    reads its 'device outputs' (index.json)."""
    reference, folder = Reference(random_model, ["coffee"]), tmp_path_factory.mktemp("reference")
    index = {}
    for image in reference.cases:
        emb = write_tensor(folder, f"{image.name}/emb.bin", image.ref_embeddings)
        index[encoder_case_id(image.name)] = {"image_embeddings": emb.as_dict()}
        for prompt in image.prompts:
            case = decoder_case_id(image.name, prompt.name)
            scores = write_tensor(folder, f"{case}/scores.bin", prompt.ref_scores["iou"][None])
            masks = write_tensor(folder, f"{case}/masks.bin", prompt.ref_logits[None])
            index[case] = {"scores": scores.as_dict(), "masks": masks.as_dict()}
    (folder / "index.json").write_text(json.dumps(index))
    return reference, folder / "index.json"


def test_simulator_parity_round_trip_is_judged(
    fake_xcode, coreml_export, coffee_reference, tmp_path, monkeypatch
):
    export, records = coreml_export
    coreml = records[:2]
    reference, outputs_index = coffee_reference
    monkeypatch.setenv("FAKE_REFERENCE", str(outputs_index))
    runner = get_runner(get_profile("ios-simulator"))
    assert "iOS 16.2 Simulator" in runner.probe()
    request = BenchRequest(export, Manifest.load(export), coreml, runs=2, warmup=0)
    write_bundle(tmp_path / "bundle", reference, coreml, export, runner.settings())
    runner.run_parity(tmp_path / "bundle", tmp_path / "outputs", request)
    judged = judge_device_outputs(tmp_path / "bundle", tmp_path / "outputs", reference)
    assert [(j.file, j.passed, j.measured_on) for j in judged] == [
        (r.file, True, "device") for r in coreml
    ]
    assert all("CPU_ONLY" in j.runtime for j in judged)
    monkeypatch.setenv("FAKE_CORRUPT", coreml[1].file)
    runner.run_parity(tmp_path / "bundle", tmp_path / "outputs2", request)
    ok, bad = judge_device_outputs(tmp_path / "bundle", tmp_path / "outputs2", reference)
    assert ok.passed and not bad.passed and "non-finite" in " ".join(bad.failures)
    booted = simctl.choose(simctl.parse_devices(_json("simctl_list_marathon_3.json")), None)
    launches = [c for c in _calls(fake_xcode) if c[1:3] == ["simctl", "launch"]]
    assert len(launches) == 2 and launches[0][4:6] == [booted.udid, xcode.DEFAULT_BUNDLE_ID]


def test_simulator_rows_are_labelled_as_simulator_timings(fake_xcode, coreml_export):
    export, records = coreml_export
    runner = get_runner(get_profile("ios-simulator"))
    outcome = runner.run(BenchRequest(export, Manifest.load(export), records[:2], runs=3, warmup=0))
    assert [r.runtime for r in outcome.artifacts] == ["coreml (iOS Simulator)"] * 2
    assert all(
        r.runtime_details["where"] == "iOS Simulator on the Mac's CPU" for r in outcome.artifacts
    )
    assert (
        "not an iPhone's" in outcome.device.description
        and outcome.device.details["simulator"] is True
    )
    build = next(c for c in _calls(fake_xcode) if c[0] == "xcodebuild" and "build" in c)
    assert "CODE_SIGNING_ALLOWED=NO" in build and not any("DEVELOPMENT_TEAM" in a for a in build)


def test_a_signing_failure_is_one_line(fake_xcode, coreml_export, monkeypatch):
    export, records = coreml_export
    monkeypatch.setenv("FAKE_BUILD_LOG", str(DATA / "xcodebuild_no_account_forem_34.txt"))
    runner = get_runner(get_profile("iphone14"))
    with pytest.raises(DeviceError) as info:
        runner.run(BenchRequest(export, Manifest.load(export), records[:2], runs=1, warmup=0))
    message = str(info.value)
    assert message.startswith(
        "device 'iphone14': code signing failed for team ABCDE12345: No account for team"
    )
    assert "\n" not in message


def test_an_app_error_ends_the_wait_with_its_message(fake_xcode, coreml_export, monkeypatch):
    export, records = coreml_export
    monkeypatch.setenv("FAKE_APP_ERROR", "protocol.json is other v2; this app reads v1")
    runner = get_runner(get_profile("ios-simulator"))
    with pytest.raises(DeviceError, match="the benchmark app failed: protocol.json is other v2"):
        runner.run(BenchRequest(export, Manifest.load(export), records[:2], runs=1, warmup=0))


def test_bench_ios_simulator_end_to_end_through_run_bench(
    fake_xcode, coreml_export, coffee_reference, random_model, monkeypatch
):
    """`bench --device ios-simulator` as the CLI runs it: timing launch, parity bundle, parity
    launch, judge; the host's figure is the one recorded at export (nothing computed here)."""
    export, records = coreml_export
    coreml = records[:2]
    for record in coreml:
        record.sha256 = sha256_path(export / record.file)
    recorded = [
        {"file": r.file, "passed": True, "metrics": {}, "failures": [], "runtime": "emulation"}
        for r in coreml
    ]
    Manifest(
        model={"kind": "random", "seed": 0}, artifacts=coreml, parity={"artifacts": recorded}
    ).save(export)
    monkeypatch.setenv("FAKE_REFERENCE", str(coffee_reference[1]))
    # the bench builds the same reference (random_model, coffee): reuse the fixture's, computed once
    monkeypatch.setattr(bench_run, "Reference", lambda model, photos: coffee_reference[0])
    settings = BenchSettings(runs=2, warmup=0, reference=False, parity_photos=["coffee"])
    report = run_bench(
        get_profile("ios-simulator"), export, settings, RunnerOptions(), lambda: random_model
    )
    assert [(r.file, r.measured, r.parity_measured_on) for r in report.artifacts] == [
        (r.file, True, "device") for r in coreml
    ]
    assert all(r.parity.passed and r.host_parity.source == "manifest" for r in report.artifacts)
    assert report.pipelines[0].measured and "iOS Simulator" in report.pipelines[0].label
    modes = [c for c in _calls(fake_xcode) if c[1:3] == ["simctl", "launch"]]
    assert len(modes) == 2  # one timing launch, one parity launch
