import Foundation

/// The path of `name`, an executable product of this package, as the tests find it: beside the
/// test bundle (or one folder up), else in `.build/debug` of the repository that holds
/// `testFile` (a test's own `#filePath`, two folders below the root).
public func builtProduct(_ name: String, testFile: String = #filePath) -> String {
    let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for folder in [bundle, bundle.deletingLastPathComponent()]
    where FileManager.default.isExecutableFile(atPath: folder.appendingPathComponent(name).path) {
        return folder.appendingPathComponent(name).path
    }
    return URL(fileURLWithPath: testFile).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent(".build/debug/\(name)").path
}
