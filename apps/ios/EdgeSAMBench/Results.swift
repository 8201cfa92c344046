// What the app writes back: bench.json (one result per artifact and compute-unit setting, in
// the fields of the bench schema, edgesam_deploy/bench/schema.py) and the device-parity
// protocol's outputs/results.json. The host owns each artifact's identity (size, precision);
// the app reports only what it measured.
import Foundation

/// schema.ArtifactResult's measured fields for one artifact under one compute-unit setting.
struct ArtifactMeasurement: Encodable {
    let file: String
    let computeUnits: String
    var measured = false
    var reason = ""
    var loadMs: Double?
    var peakRssMib: Double?
    var rssDeltaMib: Double?
    var latency: [String: Stats] = [:]
    var clicksPerS: Double?
    var extra: [String: Double] = [:]

    enum CodingKeys: String, CodingKey {
        case file, measured, reason, latency, extra
        case computeUnits = "compute_units"
        case loadMs = "load_ms"
        case peakRssMib = "peak_rss_mib"
        case rssDeltaMib = "rss_delta_mib"
        case clicksPerS = "clicks_per_s"
    }
}

/// schema.PipelineResult: encoder + one click per frame, under one compute-unit setting.
struct PipelineMeasurement: Encodable {
    let encoder: String
    let decoder: String
    let label: String
    let computeUnits: String
    var measured = false
    var reason = ""
    var fps: Double?
    var endToEnd: Stats?
    var timeToFirstMaskMs: Double?

    enum CodingKeys: String, CodingKey {
        case encoder, decoder, label, measured, reason, fps
        case computeUnits = "compute_units"
        case endToEnd = "end_to_end"
        case timeToFirstMaskMs = "time_to_first_mask_ms"
    }
}

struct BenchResults: Encodable {
    let format = "edgesam-ios-bench"
    let version = 1
    let runId: String
    let device: [String: String]
    let artifacts: [ArtifactMeasurement]
    let pipelines: [PipelineMeasurement]

    enum CodingKeys: String, CodingKey {
        case format, version, device, artifacts, pipelines
        case runId = "run_id"
    }
}

/// One artifact's entry of outputs/results.json (docs/device-parity.md).
struct ParityOutputs: Encodable {
    let file: String
    var status = "ok"
    var error = ""
    let runtime: [String: String]
    var outputs: [String: [String: TensorFile]] = [:]
}

struct ParityResults: Encodable {
    let name = Job.parityProtocol
    let version = 1
    let device: [String: String]
    let artifacts: [ParityOutputs]

    enum CodingKeys: String, CodingKey {
        case name = "protocol"
        case version, device, artifacts
    }
}

/// done.json: written last, so that the host knows the result pack is complete.
struct Done: Encodable {
    let runId: String
    let status: String
    let error: String

    enum CodingKeys: String, CodingKey {
        case status, error
        case runId = "run_id"
    }
}
