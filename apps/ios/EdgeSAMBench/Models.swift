// Compiling, loading and running the Core ML artifacts of the bundle.
import CoreML
import Foundation

/// Feeds by input name.
typealias Feeds = [String: MLMultiArray]

/// An artifact of the bundle compiled on this device (MLModel.compileModel: what an app that
/// downloads its model does), loaded once per compute-unit setting.
struct CompiledArtifact {
    let artifact: ParityArtifact
    let url: URL
    let compileMs: Double

    static func compile(_ artifact: ParityArtifact, bundle: URL, into folder: URL, index: Int) throws -> CompiledArtifact {
        let source = bundle.appendingPathComponent("artifacts").appendingPathComponent(artifact.file)
        var temporary: URL?
        let compileMs = try elapsedMs { temporary = try MLModel.compileModel(at: source) }
        let destination = folder.appendingPathComponent("\(index).mlmodelc")
        try? FileManager.default.removeItem(at: destination)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.moveItem(at: temporary!, to: destination)
        return CompiledArtifact(artifact: artifact, url: destination, compileMs: compileMs)
    }

    func load(_ computeUnits: String) throws -> MLModel {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = try mlComputeUnits(computeUnits)
        return try MLModel(contentsOf: url, configuration: configuration)
    }
}

extension MLModel {
    /// Run one prediction and return every multi-array output by name.
    func run(_ feeds: Feeds) throws -> Feeds {
        let provider = try MLDictionaryFeatureProvider(
            dictionary: feeds.mapValues { MLFeatureValue(multiArray: $0) })
        let result = try prediction(from: provider)
        var outputs: Feeds = [:]
        for name in result.featureNames {
            if let array = result.featureValue(for: name)?.multiArrayValue { outputs[name] = array }
        }
        return outputs
    }
}

/// The timing inputs, taken from the parity cases: the first encoder case's image, and the
/// first decoder cases with one click (2 points with the padding point) and with 16 points.
struct TimingFeeds {
    static let oneClickKey = "decoder_1_click"
    static let sixteenKey = "decoder_16_points"

    let image: Feeds
    let prompts: [String: Feeds]

    init(_ bundle: ParityProtocol, folder: URL) throws {
        guard let encoderCase = bundle.cases.first(where: { $0.role == "encoder" }) else {
            throw BenchError("protocol.json has no encoder case to time")
        }
        image = try encoderCase.feeds.mapValues { try Tensors.load($0, in: folder) }
        var prompts: [String: Feeds] = [:]
        for (key, points) in [(TimingFeeds.oneClickKey, 2), (TimingFeeds.sixteenKey, 16)] {
            let match = bundle.cases.first { $0.role == "decoder" && $0.feeds["point_labels"]?.shape.last == points }
            if let match { prompts[key] = try match.feeds.mapValues { try Tensors.load($0, in: folder) } }
        }
        self.prompts = prompts
    }

    /// A decoder prompt fed with `embeddings` instead of the case's reference embeddings.
    func prompt(_ key: String, embeddings: MLMultiArray) -> Feeds? {
        guard var feeds = prompts[key] else { return nil }
        feeds["image_embeddings"] = embeddings
        return feeds
    }
}
