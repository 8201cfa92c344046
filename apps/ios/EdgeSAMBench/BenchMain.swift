// One run of the app: unpack the job the host copied into Documents, compile every artifact,
// time it, run the parity cases, pack the results and write done.json last.
import Foundation

enum BenchMain {
    static let jobPack = "edgesam-job.pack"
    static let resultPack = "edgesam-result.pack"
    static let doneFile = "edgesam-done.json"

    /// `--run-id ID` from the launch arguments (the host's devicectl / simctl launch).
    static func runId() -> String {
        let arguments = ProcessInfo.processInfo.arguments
        guard let flag = arguments.firstIndex(of: "--run-id"), flag + 1 < arguments.count else { return "" }
        return arguments[flag + 1]
    }

    static func run(log: @escaping (String) -> Void) {
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let done = documents.appendingPathComponent(doneFile)
        let id = runId()
        try? FileManager.default.removeItem(at: done)
        var status = Done(runId: id, status: "ok", error: "")
        do {
            try execute(documents: documents, runId: id, log: log)
        } catch {
            status = Done(runId: id, status: "error", error: oneLine(error))
        }
        log("done: \(status.status) \(status.error)")
        try? writeJSON(status, to: done)
    }

    private static func execute(documents: URL, runId: String, log: (String) -> Void) throws {
        let work = documents.appendingPathComponent("edgesam")
        let input = work.appendingPathComponent("in")
        let output = work.appendingPathComponent("out")
        try? FileManager.default.removeItem(at: work)
        try? FileManager.default.removeItem(at: documents.appendingPathComponent(resultPack))
        log("unpacking the job")
        try Pack.unpack(documents.appendingPathComponent(jobPack), into: input)
        let job = try readJSON(Job.self, from: input.appendingPathComponent("job.json"))
        let bundleFolder = input.appendingPathComponent("bundle")
        let bundle = try readJSON(ParityProtocol.self, from: bundleFolder.appendingPathComponent("protocol.json"))
        try job.validate(bundle)
        guard job.runId == runId else {
            throw BenchError("the job pack is of run \(job.runId), the app was launched for run \(runId)")
        }
        let (compiled, errors) = compileAll(bundle, folder: bundleFolder, into: work.appendingPathComponent("compiled"), log: log)
        if job.mode == "timing" {
            try timeAll(job, bundle, bundleFolder, compiled, errors, output: output, log: log)
        } else {
            let parity = ParityRun(bundle: bundle, bundleFolder: bundleFolder,
                                   outputsFolder: output.appendingPathComponent("outputs"),
                                   computeUnits: job.parityComputeUnits)
            try parity.run(compiled, errors: errors, log: log)
        }
        log("packing the results")
        try Pack.pack(output, to: documents.appendingPathComponent(resultPack))
    }

    /// Every artifact compiled on the device, by its index in protocol.json; or why not.
    private static func compileAll(_ bundle: ParityProtocol, folder: URL, into compiledFolder: URL,
                                   log: (String) -> Void) -> ([Int: CompiledArtifact], [Int: String]) {
        var compiled: [Int: CompiledArtifact] = [:]
        var errors: [Int: String] = [:]
        for (index, artifact) in bundle.artifacts.enumerated() {
            log("compiling \(artifact.file)")
            do {
                compiled[index] = try CompiledArtifact.compile(artifact, bundle: folder, into: compiledFolder, index: index)
            } catch {
                errors[index] = "compile failed: \(oneLine(error))"
            }
        }
        return (compiled, errors)
    }

    private static func timeAll(_ job: Job, _ bundle: ParityProtocol, _ folder: URL, _ compiled: [Int: CompiledArtifact],
                             _ errors: [Int: String], output: URL, log: (String) -> Void) throws {
        let byFile = Dictionary(compiled.values.map { ($0.artifact.file, $0) }, uniquingKeysWith: { first, _ in first })
        let benchmark = Benchmark(job: job, feeds: try TimingFeeds(bundle, folder: folder), compiled: byFile)
        let (artifacts, pipelines) = benchmark.measureAll(log: log)
        let failed = errors.map {
            ArtifactMeasurement(file: bundle.artifacts[$0.key].file, computeUnits: "", reason: $0.value)
        }
        try writeJSON(
            BenchResults(runId: job.runId, device: deviceFacts(), artifacts: artifacts + failed, pipelines: pipelines),
            to: output.appendingPathComponent("bench.json"))
    }
}
