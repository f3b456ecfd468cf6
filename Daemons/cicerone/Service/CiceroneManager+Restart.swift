import Foundation
import GuestProtocol

// MARK: - Surviving a restart

/// One running container as the runtime file keeps it.
struct RunningRecord: Codable {
    var vm: String
    var name: String
    var container: CiceroneManager.Running
}

extension CiceroneManager {
    /// Writes the running containers (and their tokens) where the next cicerone finds them.
    func persistRunning() {
        let records = running.map { RunningRecord(vm: $0.key.vm, name: $0.key.name, container: $0.value) }
            .sorted { ($0.vm, $0.name) < ($1.vm, $1.name) }
        let path = configuration.runningFile
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try JSONEncoder().encode(records).write(to: URL(fileURLWithPath: path), options: .atomic)
            chmod(path, 0o600)
        } catch {
            log("keeping the running containers in \(path): \(error)")
        }
    }

    /// Takes over the containers a previous cicerone left running: for each VM that still
    /// runs, its listener again, and the containers maitred says still run (with the same
    /// first process), with their tokens. Call once, before serving.
    public func resume() async {
        let path = configuration.runningFile
        guard let data = FileManager.default.contents(atPath: path) else { return }
        guard let records = try? JSONDecoder().decode([RunningRecord].self, from: data) else {
            log("ignoring \(path): not a list of running containers")
            return
        }
        var adopted: [ContainerKey: Running] = [:]
        for (vmName, group) in Dictionary(grouping: records, by: \.vm) {
            guard let vm = await directory?.vm(named: vmName), (try? await vmStarted(vm)) != nil else {
                log("VM \(vmName) no longer runs: forgetting its \(group.count) containers")
                continue
            }
            // What maitred runs now; nil when it cannot say (then the records are kept).
            let inGuest = try? await Self.maitred(vm, "listing containers") {
                try await $0.listContainers(Vmtools_Guest_Empty()).containers
            }
            for record in group {
                if let inGuest, !inGuest.contains(where: { $0.name == record.name && $0.pid == record.container.pid }) {
                    log("container \(record.name) of VM \(vmName) no longer runs")
                    continue
                }
                adopted[ContainerKey(vm: vmName, name: record.name)] = record.container
                log(
                    "re-adopted container \(record.name) of VM \(vmName) (garcon on port \(record.container.garconPort))"
                )
            }
        }
        running = adopted
    }
}
