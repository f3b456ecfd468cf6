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
        var listening: [GuestVM] = []
        for (vmName, group) in Dictionary(grouping: records, by: \.vm) {
            let keys = group.map { ContainerKey(vm: vmName, name: $0.name) }
            let vm: GuestVM
            do {
                guard let found = try await directory?.vm(named: vmName) else {
                    log("VM \(vmName) no longer runs: forgetting its \(group.count) containers")
                    continue
                }
                vm = found
            } catch {
                // concierge could not say: keep them; the VM is looked up again when named.
                log(
                    "keeping VM \(vmName)'s \(group.count) containers: concierge could not say whether it runs: \(error)"
                )
                for (key, record) in zip(keys, group) { adopted[key] = record.container }
                continue
            }
            listening.append(vm)
            // What maitred runs now; nil when it cannot say (then the records are kept).
            let inGuest = try? await Self.maitred(vm, "listing containers") {
                try await $0.listContainers(Vmtools_Guest_Empty(), options: Self.deadline(.seconds(5))).containers
            }
            for (key, record) in zip(keys, group) {
                let pid = record.container.pid
                if let inGuest, pid != 0, !inGuest.contains(where: { $0.name == record.name && $0.pid == pid }) {
                    log("\(key) no longer runs")
                    continue
                }
                adopted[key] = record.container
                log("re-adopted \(key) (garcon on port \(record.container.garconPort))")
            }
        }
        // The tokens first, then the listeners: a garcon that calls at once is known.
        running = adopted
        for vm in listening where vms[vm.name] == nil {
            do { try await vmStarted(vm) } catch { log("\(error)") }
        }
    }
}
