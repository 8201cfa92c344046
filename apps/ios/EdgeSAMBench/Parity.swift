// The device side of the device-parity protocol (docs/device-parity.md): run every case of
// each artifact with the parity compute-unit setting and write the raw outputs and
// outputs/results.json. The host judges them against PyTorch; nothing is compared here.
import CoreML
import Foundation

struct ParityRun {
    let bundle: ParityProtocol
    let bundleFolder: URL
    let outputsFolder: URL
    let computeUnits: String

    func run(_ compiled: [Int: CompiledArtifact], errors: [Int: String], log: (String) -> Void) throws {
        let cases = Dictionary(bundle.cases.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var entries: [ParityOutputs] = []
        for (index, artifact) in bundle.artifacts.enumerated() {
            log("parity \(artifact.file) \(computeUnits)")
            var entry = ParityOutputs(file: artifact.file, runtime: runtime())
            if let error = errors[index] {
                entry.status = "error"
                entry.error = error
            } else if let model = compiled[index] {
                autoreleasepool { outputs(of: model, index: index, cases: cases, into: &entry) }
            }
            entries.append(entry)
        }
        try writeJSON(ParityResults(device: deviceFacts(), artifacts: entries),
                      to: outputsFolder.appendingPathComponent("results.json"))
    }

    private func outputs(of compiled: CompiledArtifact, index: Int, cases: [String: ParityCase],
                         into entry: inout ParityOutputs) {
        do {
            let model = try compiled.load(computeUnits)
            for id in compiled.artifact.cases {
                guard let parityCase = cases[id] else { throw BenchError("case \(id) is not in protocol.json") }
                let feeds = try parityCase.feeds.mapValues { try Tensors.load($0, in: bundleFolder) }
                var written: [String: TensorFile] = [:]
                for (name, array) in try model.run(feeds) {
                    written[name] = try Tensors.write(array, in: outputsFolder, path: "\(index)/\(id)/\(name).bin")
                }
                entry.outputs[id] = written
            }
        } catch {
            entry.status = "error"
            entry.error = oneLine(error)
            entry.outputs = [:]
        }
    }

    private func runtime() -> [String: String] {
        [
            "runtime": isSimulator() ? "coreml (iOS Simulator, on the Mac's CPU)" : "coreml",
            "compute_units": computeUnits,
            "os": ProcessInfo.processInfo.operatingSystemVersionString,
        ]
    }
}
