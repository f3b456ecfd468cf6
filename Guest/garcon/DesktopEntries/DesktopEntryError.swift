/// Why a desktop entry, its Exec line or an icon could not be used, in words a user can act on.
public enum DesktopEntryError: Error, Equatable, CustomStringConvertible {
    case tooLarge(Int)
    case malformedLine(Int, String)
    case missingGroup
    case missingKey(String)
    case notAnApplication(String)
    case badExec(String)
    case notLaunchable(String)

    public var description: String {
        switch self {
        case .tooLarge(let size): "the file is \(size) bytes, more than a desktop entry may be (\(KeyFile.maxSize))"
        case .malformedLine(let line, let why): "line \(line): \(why)"
        case .missingGroup: "there is no [Desktop Entry] group"
        case .missingKey(let key): "the required key \(key) is missing"
        case .notAnApplication(let type): "its Type is \(type), not Application"
        case .badExec(let why): "its Exec line is malformed: \(why)"
        case .notLaunchable(let why): "it cannot be launched: \(why)"
        }
    }
}
