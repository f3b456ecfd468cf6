import Foundation

/// cicerone's persisted state: the containers CreateContainer made, in `<state>/containers.json`,
/// written whole to a temporary file and renamed over the old one.
struct CiceroneState: Codable, Sendable, Equatable {
    var containers: [ContainerDefinition] = []

    static func load(from path: String) throws(CiceroneError) -> CiceroneState {
        guard FileManager.default.fileExists(atPath: path) else { return CiceroneState() }
        do {
            return try JSONDecoder().decode(CiceroneState.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw .failed("reading \(path): \(error)")
        }
    }

    func save(to path: String) throws(CiceroneError) {
        do {
            let folder = (path as NSString).deletingLastPathComponent
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw .failed("writing \(path): \(error)")
        }
    }
}
