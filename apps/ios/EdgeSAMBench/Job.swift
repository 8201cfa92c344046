// What the host asks for: job.json (timing settings) and the device-parity bundle's
// protocol.json (cases, feeds and artifacts), both inside the job pack.
import CoreML
import Foundation

/// A float32 tensor file of the protocol: path relative to its folder, shape, dtype.
struct TensorFile: Codable {
    let file: String
    let shape: [Int]
    let dtype: String
}

struct ParityCase: Codable {
    let id: String
    let role: String
    let feeds: [String: TensorFile]
}

struct ParityArtifact: Codable {
    let file: String
    let target: String
    let role: String
    let precision: String
    let cases: [String]
}

struct ParityProtocol: Codable {
    let name: String
    let version: Int
    let cases: [ParityCase]
    let artifacts: [ParityArtifact]

    enum CodingKeys: String, CodingKey {
        case name = "protocol"
        case version, cases, artifacts
    }
}

/// An encoder and a decoder timed together, as an app runs them.
struct PipelineSpec: Codable {
    let encoder: String
    let decoder: String
    let label: String
}

/// job.json, written by the host (edgesam_deploy/bench/parsers/xcode_app.py). `mode` is
/// "timing" (every artifact with each compute-unit setting, then the pipelines) or "parity"
/// (the protocol's cases with the parity compute-unit setting).
struct Job: Codable {
    let format: String
    let version: Int
    let runId: String
    let mode: String
    let runs: Int
    let warmup: Int
    let computeUnits: [String]
    let parityComputeUnits: String
    let pipelines: [PipelineSpec]

    enum CodingKeys: String, CodingKey {
        case format, version, mode, runs, warmup, pipelines
        case runId = "run_id"
        case computeUnits = "compute_units"
        case parityComputeUnits = "parity_compute_units"
    }

    static let formatName = "edgesam-ios-job"
    static let parityProtocol = "edgesam-device-parity"
    static let modes = ["timing", "parity"]

    func validate(_ bundle: ParityProtocol) throws {
        guard format == Job.formatName, version == 1 else {
            throw BenchError("job.json is \(format) v\(version); this app reads \(Job.formatName) v1")
        }
        guard bundle.name == Job.parityProtocol, bundle.version == 1 else {
            throw BenchError("protocol.json is \(bundle.name) v\(bundle.version); this app reads v1")
        }
        guard Job.modes.contains(mode) else { throw BenchError("job.json: unknown mode '\(mode)'") }
        guard runs >= 1, warmup >= 0 else { throw BenchError("job.json: runs must be >= 1, warmup >= 0") }
        for unit in computeUnits + [parityComputeUnits] { _ = try mlComputeUnits(unit) }
    }
}

/// Core ML's setting for one of the project's compute-unit names (vocabulary.ComputeUnit).
func mlComputeUnits(_ name: String) throws -> MLComputeUnits {
    switch name {
    case "CPU_ONLY": return .cpuOnly
    case "CPU_AND_GPU": return .cpuAndGPU
    case "CPU_AND_NE": return .cpuAndNeuralEngine
    case "ALL": return .all
    default: throw BenchError("unknown compute units '\(name)'")
    }
}
