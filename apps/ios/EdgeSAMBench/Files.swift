// The files exchanged with the host: the job and result packs (one file each way, so that
// `devicectl device copy` only ever moves single files), the JSON documents inside them and
// the raw little-endian float32 tensors of the device-parity protocol (docs/device-parity.md).
import Foundation

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One line for results and done.json, whatever the error type.
func oneLine(_ error: Error) -> String {
    let text = (error as? BenchError)?.description ?? error.localizedDescription
    return text.split(whereSeparator: \.isNewline).joined(separator: " ")
}

/// The pack format (docs/ios.md): magic "ESPACK01", a little-endian UInt64 header length, a
/// JSON header {"files": [{"path", "size"}]}, then the files' bytes in header order.
enum Pack {
    static let magic = Data("ESPACK01".utf8)
    static let chunk = 4 << 20

    struct Entry: Codable {
        let path: String
        let size: Int
    }

    struct Header: Codable {
        let files: [Entry]
    }

    static func unpack(_ archive: URL, into directory: URL) throws {
        let input = try FileHandle(forReadingFrom: archive)
        defer { try? input.close() }
        guard try input.read(upToCount: magic.count) == magic else {
            throw BenchError("\(archive.lastPathComponent) is not an edgesam pack")
        }
        let lengthBytes = try input.read(upToCount: 8) ?? Data()
        guard lengthBytes.count == 8 else { throw BenchError("\(archive.lastPathComponent) is truncated") }
        let length = lengthBytes.reversed().reduce(0) { ($0 << 8) | Int($1) }
        let header = try JSONDecoder().decode(Header.self, from: try input.read(upToCount: length) ?? Data())
        for entry in header.files {
            try copyOut(entry, from: input, to: try inside(directory, entry.path))
        }
    }

    static func pack(_ directory: URL, to archive: URL) throws {
        let entries = try regularFiles(under: directory)
        let header = try JSONEncoder().encode(Header(files: entries))
        FileManager.default.createFile(atPath: archive.path, contents: nil)
        let output = try FileHandle(forWritingTo: archive)
        defer { try? output.close() }
        var length = UInt64(header.count).littleEndian
        try output.write(contentsOf: magic)
        try output.write(contentsOf: Data(bytes: &length, count: 8))
        try output.write(contentsOf: header)
        for entry in entries {
            try output.write(contentsOf: try Data(contentsOf: directory.appendingPathComponent(entry.path)))
        }
    }

    private static func copyOut(_ entry: Entry, from input: FileHandle, to destination: URL) throws {
        try FileManager.default.createDirectory(
            at: destination.deletingLastPathComponent(), withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: destination.path, contents: nil)
        let output = try FileHandle(forWritingTo: destination)
        defer { try? output.close() }
        var left = entry.size
        while left > 0 {
            let data = try input.read(upToCount: min(left, chunk)) ?? Data()
            guard !data.isEmpty else { throw BenchError("pack truncated in \(entry.path)") }
            try output.write(contentsOf: data)
            left -= data.count
        }
    }

    /// `path` under `directory`, refusing absolute paths and `..`.
    private static func inside(_ directory: URL, _ path: String) throws -> URL {
        let parts = path.split(separator: "/")
        guard !path.hasPrefix("/"), !parts.isEmpty, !parts.contains("..") else {
            throw BenchError("pack entry '\(path)' leaves its folder")
        }
        return directory.appendingPathComponent(path)
    }

    private static func regularFiles(under directory: URL) throws -> [Entry] {
        guard let walker = FileManager.default.enumerator(atPath: directory.path) else {
            throw BenchError("cannot list \(directory.path)")
        }
        var entries: [Entry] = []
        while let path = walker.nextObject() as? String {
            let attributes = walker.fileAttributes ?? [:]
            if attributes[.type] as? FileAttributeType == .typeRegular {
                let size = (attributes[.size] as? NSNumber)?.intValue ?? 0
                entries.append(Entry(path: path, size: size))
            }
        }
        return entries.sorted { $0.path < $1.path }
    }
}

/// Atomic JSON write (sorted keys, so that files are stable).
func writeJSON<T: Encodable>(_ value: T, to url: URL) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
    try FileManager.default.createDirectory(
        at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try encoder.encode(value).write(to: url, options: .atomic)
}

func readJSON<T: Decodable>(_ type: T.Type, from url: URL) throws -> T {
    do {
        return try JSONDecoder().decode(type, from: try Data(contentsOf: url))
    } catch {
        throw BenchError("\(url.lastPathComponent): \(oneLine(error))")
    }
}
