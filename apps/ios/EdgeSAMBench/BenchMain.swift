// One run of the app: unpack the job the host copied into Documents, compile every artifact,
// time it or run the parity cases, pack the results and write the done file last. Every file of
// a run carries its run id, so that no stale file of an earlier run can be mistaken for it.
import Foundation

enum BenchMain {
    static func jobPack(_ id: String) -> String { "edgesam-job-\(id).pack" }
    static func resultPack(_ id: String) -> String { "edgesam-result-\(id).pack" }
    static func doneFile(_ id: String) -> String { "edgesam-done-\(id).json" }

    /// `--run-id ID` from the launch arguments (the host's devicectl / simctl launch).
    static func runId() -> String {
        let arguments = ProcessInfo.processInfo.arguments
        guard let flag = arguments.firstIndex(of: "--run-id"), flag + 1 < arguments.count else { return "" }
        return arguments[flag + 1]
    }

    static func run(log: @escaping (String) -> Void) {
        let documents = FileManager.default.urls(for: .documentDirectory, in: .userDomainMask)[0]
        let id = runId()
        removeEarlierRuns(in: documents, keeping: jobPack(id))
        var status = Done(runId: id, status: "ok", error: "")
        do {
            guard !id.isEmpty else { throw BenchError("launched without --run-id: start it with edgesam-deploy bench") }
            try execute(documents: documents, runId: id, log: log)
        } catch {
            status = Done(runId: id, status: "error", error: oneLine(error))
        }
        log("done: \(status.status) \(status.error)")
        try? writeJSON(status, to: documents.appendingPathComponent(doneFile(id)))
    }

    /// Delete every file an earlier run left in Documents (packs are large), except `current`.
    private static func removeEarlierRuns(in documents: URL, keeping current: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: documents.path)) ?? []
        for name in names where name.hasPrefix("edgesam") && name != current {
            try? FileManager.default.removeItem(at: documents.appendingPathComponent(name))
        }
    }

    private static func execute(documents: URL, runId: String, log: (String) -> Void) throws {
        let work = documents.appendingPathComponent("edgesam")
        let input = work.appendingPathComponent("in")
        let output = work.appendingPathComponent("out")
        let jobFile = documents.appendingPathComponent(jobPack(runId))
        log("unpacking the job")
        try Pack.unpack(jobFile, into: input)
        try? FileManager.default.removeItem(at: jobFile)
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
        try Pack.pack(output, to: documents.appendingPathComponent(resultPack(runId)))
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
