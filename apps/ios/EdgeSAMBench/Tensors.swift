// Raw little-endian float32 files <-> MLMultiArray, honouring the strides and element type of
// whatever Core ML returns (outputs computed on the Neural Engine may be padded or fp16).
import CoreML
import Foundation

enum Tensors {
    static func load(_ spec: TensorFile, in folder: URL) throws -> MLMultiArray {
        guard spec.dtype == "float32" else { throw BenchError("\(spec.file): dtype \(spec.dtype), expected float32") }
        let data = try Data(contentsOf: folder.appendingPathComponent(spec.file))
        let count = spec.shape.reduce(1, *)
        guard data.count == count * MemoryLayout<Float>.size else {
            throw BenchError("\(spec.file): \(data.count) bytes, shape \(spec.shape) needs \(count * 4)")
        }
        let array = try MLMultiArray(shape: spec.shape.map { NSNumber(value: $0) }, dataType: .float32)
        array.withUnsafeMutableBytes { target, _ in
            data.withUnsafeBytes { source in target.copyMemory(from: source) }
        }
        return array
    }

    /// The elements in C order as float32, whatever the array's layout and element type.
    static func floats(_ array: MLMultiArray) throws -> [Float] {
        let shape = array.shape.map { $0.intValue }
        let strides = array.strides.map { $0.intValue }
        let type = array.dataType
        guard type == .float32 || type == .float16 || type == .double else {
            throw BenchError("output of element type \(type.rawValue) is not a float tensor")
        }
        return array.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> [Float] in
            let element: (Int) -> Float
            switch type {
            case .float16:
                let p = raw.bindMemory(to: UInt16.self)
                element = { halfToFloat(p[$0]) }
            case .double:
                let p = raw.bindMemory(to: Double.self)
                element = { Float(p[$0]) }
            default:
                let p = raw.bindMemory(to: Float.self)
                element = { p[$0] }
            }
            return gather(shape: shape, strides: strides, element: element)
        }
    }

    /// Write `array` as `path` under `folder`; the entry names it by that relative path.
    static func write(_ array: MLMultiArray, in folder: URL, path: String) throws -> TensorFile {
        let url = folder.appendingPathComponent(path)
        let values = try floats(array)
        try FileManager.default.createDirectory(
            at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try values.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: url)
        return TensorFile(file: path, shape: array.shape.map { $0.intValue }, dtype: "float32")
    }

    /// Walk the logical index space in C order, reading each element at its strided offset.
    private static func gather(shape: [Int], strides: [Int], element: (Int) -> Float) -> [Float] {
        let count = shape.reduce(1, *)
        var out = [Float](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: shape.count)
        for i in 0..<count {
            var offset = 0
            for d in 0..<shape.count { offset += index[d] * strides[d] }
            out[i] = element(offset)
            var d = shape.count - 1
            while d >= 0 {
                index[d] += 1
                if index[d] < shape[d] { break }
                index[d] = 0
                d -= 1
            }
        }
        return out
    }
}

/// IEEE 754 half -> float from the bit pattern (no Float16 type needed on any architecture).
func halfToFloat(_ bits: UInt16) -> Float {
    let sign = UInt32(bits & 0x8000) << 16
    let exponent = UInt32(bits >> 10) & 0x1F
    let fraction = UInt32(bits & 0x03FF)
    if exponent == 0 {
        let magnitude = Float(fraction) * 5.960_464_5e-8  // 2^-24
        return sign == 0 ? magnitude : -magnitude
    }
    if exponent == 31 {
        return Float(bitPattern: sign | 0x7F80_0000 | (fraction << 13))
    }
    return Float(bitPattern: sign | ((exponent + 112) << 23) | (fraction << 13))
}
