// Timing: each artifact with each requested compute-unit setting (load time, warm-up, timed
// runs, clicks per second, memory), then encoder + decoder pipelines (time to first mask, FPS).
import CoreML
import Foundation

struct Benchmark {
    let job: Job
    let feeds: TimingFeeds
    let compiled: [String: CompiledArtifact]  // by file

    func measureAll(log: (String) -> Void) -> ([ArtifactMeasurement], [PipelineMeasurement]) {
        var artifacts: [ArtifactMeasurement] = []
        var pipelines: [PipelineMeasurement] = []
        for unit in job.computeUnits {
            for entry in compiled.values.sorted(by: { $0.artifact.file < $1.artifact.file }) {
                log("\(entry.artifact.file) \(unit)")
                artifacts.append(autoreleasepool { measure(entry, unit) })
            }
            for spec in job.pipelines {
                log("\(spec.label) \(unit)")
                pipelines.append(autoreleasepool { pipeline(spec, unit) })
            }
        }
        return (artifacts, pipelines)
    }

    func measure(_ entry: CompiledArtifact, _ unit: String) -> ArtifactMeasurement {
        var result = ArtifactMeasurement(file: entry.artifact.file, computeUnits: unit)
        result.extra["compile_ms"] = entry.compileMs
        do {
            let before = footprintMiB().now
            var model: MLModel?
            result.loadMs = try elapsedMs { model = try entry.load(unit) }
            if entry.artifact.role == "encoder" {
                try timeEncoder(model!, &result)
            } else {
                try timeDecoder(model!, &result)
            }
            let memory = footprintMiB()
            result.peakRssMib = memory.peak
            result.rssDeltaMib = memory.now - before
            result.measured = true
        } catch {
            result.reason = oneLine(error)
        }
        return result
    }

    private func timeEncoder(_ model: MLModel, _ result: inout ArtifactMeasurement) throws {
        result.extra["first_run_ms"] = try elapsedMs { _ = try model.run(feeds.image) }
        let times = try samples(runs: job.runs, warmup: job.warmup) { _ = try model.run(feeds.image) }
        result.latency["encoder"] = Stats(times)
    }

    private func timeDecoder(_ model: MLModel, _ result: inout ArtifactMeasurement) throws {
        guard feeds.prompts[TimingFeeds.oneClickKey] != nil else {
            throw BenchError("protocol.json has no one-click decoder case to time")
        }
        for key in [TimingFeeds.oneClickKey, TimingFeeds.sixteenKey] {
            guard let prompt = feeds.prompts[key] else { continue }
            if result.extra["first_run_ms"] == nil {
                result.extra["first_run_ms"] = try elapsedMs { _ = try model.run(prompt) }
            }
            let times = try samples(runs: job.runs, warmup: job.warmup) { _ = try model.run(prompt) }
            result.latency[key] = Stats(times)
            if key == TimingFeeds.oneClickKey {
                result.clicksPerS = Double(times.count) / (times.reduce(0, +) / 1e3)
            }
        }
    }

    /// Cold start (load both compiled models, encode, decode one click), then frames of
    /// encoder + one click.
    func pipeline(_ spec: PipelineSpec, _ unit: String) -> PipelineMeasurement {
        var result = PipelineMeasurement(
            encoder: spec.encoder, decoder: spec.decoder, label: spec.label, computeUnits: unit)
        guard let encoderEntry = compiled[spec.encoder], let decoderEntry = compiled[spec.decoder] else {
            result.reason = "encoder or decoder not in the bundle"
            return result
        }
        do {
            var models: (MLModel, MLModel)?
            let frame = { (encoder: MLModel, decoder: MLModel) throws in
                let output = try encoder.run(feeds.image)["image_embeddings"]
                guard let embeddings = output,
                      let prompt = feeds.prompt(TimingFeeds.oneClickKey, embeddings: embeddings) else {
                    throw BenchError("no image_embeddings output or no one-click case")
                }
                _ = try decoder.run(prompt)
            }
            result.timeToFirstMaskMs = try elapsedMs {
                let loaded = (try encoderEntry.load(unit), try decoderEntry.load(unit))
                try frame(loaded.0, loaded.1)
                models = loaded
            }
            let times = try samples(runs: job.runs, warmup: job.warmup) { try frame(models!.0, models!.1) }
            let stats = Stats(times)
            result.endToEnd = stats
            result.fps = 1e3 / stats.p50
            result.measured = true
        } catch {
            result.reason = oneLine(error)
        }
        return result
    }
}
