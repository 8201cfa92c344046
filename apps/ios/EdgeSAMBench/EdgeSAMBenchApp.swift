// The app's only screen shows progress; the work runs off the main thread as soon as the app
// is launched (by `devicectl device process launch` or `simctl launch`), and the app exits
// when it has written the run's done file.
import SwiftUI
import UIKit

final class RunStatus: ObservableObject {
    @Published var line = "waiting for a job from edgesam-deploy"
    private var started = false

    @MainActor
    func start() {
        guard !started else { return }
        started = true
        UIApplication.shared.isIdleTimerDisabled = true  // a locked screen would suspend the run
        let log = self.show
        DispatchQueue.global(qos: .userInitiated).async {
            BenchMain.run(log: log)
            exit(0)
        }
    }

    /// Called from the benchmark's thread: a line on stdout (devicectl/simctl consoles) and on screen.
    func show(_ text: String) {
        print("edgesam-bench: \(text)")
        fflush(stdout)
        DispatchQueue.main.async { self.line = text }
    }
}

@main
struct EdgeSAMBenchApp: App {
    @StateObject private var status = RunStatus()

    var body: some Scene {
        WindowGroup {
            Text(status.line)
                .font(.system(.body, design: .monospaced))
                .padding()
                .onAppear { status.start() }
        }
    }
}
