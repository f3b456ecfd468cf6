import Foundation
import Testing

@testable import DesktopEntries

/// A throwaway folder tree for one test.
final class TemporaryTree {
    let root: String

    init() throws {
        root = NSTemporaryDirectory() + "desktop-entries-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    /// Writes `contents` at `path` under the root, creating folders.
    @discardableResult
    func write(_ path: String, _ contents: [UInt8]) throws -> String {
        let full = "\(root)/\(path)"
        try FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(contents).write(to: URL(fileURLWithPath: full))
        return full
    }

    @discardableResult
    func write(_ path: String, _ text: String) throws -> String { try write(path, Array(text.utf8)) }
}

@Suite("finding installed applications")
struct ApplicationIndexTests {
    static func app(_ name: String, extra: String = "") -> String {
        "[Desktop Entry]\nType=Application\nName=\(name)\nExec=\(name.lowercased())\n\(extra)"
    }

    @Test("IDs come from the path under applications/, subfolders joined with -")
    func ids() throws {
        let tree = try TemporaryTree()
        try tree.write("usr/share/applications/org.example.A.desktop", Self.app("A"))
        try tree.write("usr/share/applications/kde4/kate.desktop", Self.app("Kate"))
        try tree.write("usr/share/applications/readme.txt", "not a desktop file")
        let scan = ApplicationIndex(dataDirectories: ["\(tree.root)/usr/share"]).scan()
        #expect(scan.sorted.map(\.id) == ["kde4-kate.desktop", "org.example.A.desktop"])
        #expect(scan.applications["kde4-kate.desktop"]?.path == "\(tree.root)/usr/share/applications/kde4/kate.desktop")
        #expect(scan.problems.isEmpty)
    }

    @Test("an ID found first hides the same ID later; Hidden=true hides it altogether")
    func shadowing() throws {
        let tree = try TemporaryTree()
        try tree.write("home/applications/a.desktop", Self.app("Mine"))
        try tree.write("usr/applications/a.desktop", Self.app("System"))
        try tree.write("home/applications/b.desktop", Self.app("Gone", extra: "Hidden=true\n"))
        try tree.write("usr/applications/b.desktop", Self.app("B"))
        try tree.write("usr/applications/c.desktop", Self.app("C", extra: "NoDisplay=true\n"))
        let scan = ApplicationIndex(dataDirectories: ["\(tree.root)/home", "\(tree.root)/usr"]).scan()
        #expect(scan.applications["a.desktop"]?.name == "Mine")
        #expect(scan.applications["b.desktop"] == nil)
        #expect(scan.applications["c.desktop"]?.noDisplay == true, "NoDisplay apps are listed, flagged")
    }

    @Test("broken files are reported and skipped; links and other types are skipped quietly")
    func problems() throws {
        let tree = try TemporaryTree()
        try tree.write("share/applications/good.desktop", Self.app("Good"))
        let broken = try tree.write("share/applications/broken.desktop", "[Desktop Entry]\nthis is not a key\n")
        let binary = try tree.write("share/applications/binary.desktop", [0xFF, 0xFE, 0x00, 0x41])
        try tree.write("share/applications/link.desktop", "[Desktop Entry]\nType=Link\nName=L\nURL=https://x\n")
        let badExec = try tree.write(
            "share/applications/bad-exec.desktop", "[Desktop Entry]\nType=Application\nName=B\nExec=x \"open\n")
        let scan = ApplicationIndex(dataDirectories: ["\(tree.root)/share"]).scan()
        #expect(scan.sorted.map(\.id) == ["good.desktop"])
        let reported = Dictionary(uniqueKeysWithValues: scan.problems.map { ($0.path, $0.why) })
        #expect(reported[broken] == "line 2: expected Key=Value")
        #expect(reported[binary] == "is not UTF-8")
        #expect(reported[badExec] == "its Exec line is malformed: a quote is not closed")
        #expect(reported.count == 3)
    }

    @Test("the XDG search path: XDG_DATA_HOME or ~/.local/share, then XDG_DATA_DIRS or the default")
    func searchPath() {
        #expect(
            ApplicationIndex.dataDirectories(environment: ["HOME": "/home/u"])
                == ["/home/u/.local/share", "/usr/local/share", "/usr/share"])
        #expect(
            ApplicationIndex.dataDirectories(environment: [
                "HOME": "/home/u", "XDG_DATA_HOME": "/d", "XDG_DATA_DIRS": "/x:relative:/y:/x",
            ]) == ["/d", "/x", "/y"])
        #expect(ApplicationIndex.dataDirectories(environment: [:]) == ["/usr/local/share", "/usr/share"])
    }
}
