// Clocks, latency statistics, the process's memory footprint and what device this is.
import Darwin
import Foundation

func nowMs() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e6 }

/// Milliseconds taken by `body`.
func elapsedMs(_ body: () throws -> Void) rethrows -> Double {
    let start = nowMs()
    try body()
    return nowMs() - start
}

/// `warmup` untimed calls, then `runs` timed ones (ms each).
func samples(runs: Int, warmup: Int, _ body: () throws -> Void) rethrows -> [Double] {
    for _ in 0..<warmup { try body() }
    return try (0..<runs).map { _ in try elapsedMs(body) }
}

/// The bench schema's Stats (edgesam_deploy/bench/schema.py): nearest-rank percentiles.
struct Stats: Codable {
    let p50: Double
    let p90: Double
    let min: Double
    let mean: Double
    let runs: Int
    let std: Double
    let max: Double

    init(_ samples: [Double]) {
        let ordered = samples.sorted()
        func rank(_ q: Double) -> Double {
            ordered[Swift.max(0, Int((q * Double(ordered.count)).rounded(.up)) - 1)]
        }
        let mean = ordered.reduce(0, +) / Double(ordered.count)
        let variance = ordered.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(ordered.count)
        self.p50 = rank(0.5)
        self.p90 = rank(0.9)
        self.min = ordered[0]
        self.mean = mean
        self.runs = ordered.count
        self.std = variance.squareRoot()
        self.max = ordered[ordered.count - 1]
    }
}

/// The process's physical footprint now and its high-water mark, in MiB (what iOS's memory
/// limit counts; the peak is process-wide and cannot be reset).
func footprintMiB() -> (now: Double, peak: Double) {
    var info = task_vm_info_data_t()
    var count = mach_msg_type_number_t(MemoryLayout<task_vm_info_data_t>.size / MemoryLayout<integer_t>.size)
    let status = withUnsafeMutablePointer(to: &info) {
        $0.withMemoryRebound(to: integer_t.self, capacity: Int(count)) {
            task_info(mach_task_self_, task_flavor_t(TASK_VM_INFO), $0, &count)
        }
    }
    guard status == KERN_SUCCESS else { return (0, 0) }
    let mib = 1024.0 * 1024.0
    return (Double(info.phys_footprint) / mib, Double(info.ledger_phys_footprint_peak) / mib)
}

/// Model identifier (e.g. iPhone14,7); in the simulator, the simulated model's.
func machineIdentifier() -> String {
    if let simulated = ProcessInfo.processInfo.environment["SIMULATOR_MODEL_IDENTIFIER"] {
        return simulated
    }
    return unameMachine()
}

/// The kernel's machine name: the model identifier on a device, the Mac's CPU in the simulator.
func unameMachine() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: &name.machine) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
    }
}

func isSimulator() -> Bool {
    #if targetEnvironment(simulator)
    return true
    #else
    return false
    #endif
}

func thermalState() -> String {
    switch ProcessInfo.processInfo.thermalState {
    case .nominal: return "nominal"
    case .fair: return "fair"
    case .serious: return "serious"
    case .critical: return "critical"
    @unknown default: return "unknown"
    }
}

/// Facts about this device for both result files.
func deviceFacts() -> [String: String] {
    let info = ProcessInfo.processInfo
    return [
        "system": "iOS \(info.operatingSystemVersionString)",
        "machine": machineIdentifier(),
        "kernel_machine": unameMachine(),
        "simulator": isSimulator() ? "true" : "false",
        "thermal_state": thermalState(),
        "processors": String(info.activeProcessorCount),
        "memory_mib": String(info.physicalMemory / (1024 * 1024)),
    ]
}
