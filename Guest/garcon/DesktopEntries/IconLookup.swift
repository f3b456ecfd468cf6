/// Finds an application's icon file the way the Icon Theme Specification does, simplified to
/// what an application icon needs: the themes in order (hicolor last), each theme's sized
/// folders in every data directory, then the pixmaps folders. PNG and SVG only.
public struct IconLookup: Sendable {
    public enum Format: String, Sendable, Equatable {
        case png, svg
    }

    public struct Icon: Sendable, Equatable {
        public var path: String
        public var format: Format
        /// The pixel size of the folder it came from (nil: scalable, or a pixmap or path).
        public var size: Int?
        public var bytes: [UInt8]
    }

    public let dataDirectories: [String]
    public let themes: [String]
    public let pixmapDirectories: [String]

    /// Icons bigger than this are not served.
    public static let maxSize = 4 << 20

    /// - Parameter themes: tried in order; hicolor, the fallback theme, is added last.
    public init(
        dataDirectories: [String], themes: [String] = [], pixmapDirectories: [String] = ["/usr/share/pixmaps"]
    ) {
        self.dataDirectories = dataDirectories
        self.themes = themes.filter { $0 != "hicolor" } + ["hicolor"]
        self.pixmapDirectories = pixmapDirectories
    }

    /// The best icon named `name` (an `Icon` value: a theme name, or an absolute path) for
    /// `size` × `scale` pixels: an exact size, else a scalable one, else the nearest larger, else
    /// the nearest smaller. Nil when there is none, or none that is really a PNG or SVG.
    public func find(_ name: String, size: Int, scale: Int = 1) -> Icon? {
        if name.hasPrefix("/") { return Self.load(name, size: nil) }
        guard !name.isEmpty, !name.contains("/") else { return nil }
        let base = Self.strippingExtension(name)
        let wanted = size * max(scale, 1)
        for theme in themes {
            let found = candidates(base, theme: theme)
            for candidate in Self.ranked(found, wanted: wanted) {
                if let icon = Self.load(candidate.path, size: candidate.size) { return icon }
            }
        }
        for folder in pixmapDirectories {
            for format in [Format.png, .svg] {
                if let icon = Self.load("\(folder)/\(base).\(format.rawValue)", size: nil) { return icon }
            }
        }
        return nil
    }

    struct Candidate: Equatable {
        var path: String
        var size: Int?
    }

    /// Files named `base` in one theme, in every data directory: `<size>/<context>/` and
    /// `<context>/<size>/` layouts both occur.
    func candidates(_ base: String, theme: String) -> [Candidate] {
        var found: [Candidate] = []
        for directory in dataDirectories {
            let root = "\(directory)/icons/\(theme)"
            for (first, isDirectory) in FileSystem.list(root) where isDirectory {
                for (second, isDirectory) in FileSystem.list("\(root)/\(first)") where isDirectory {
                    let folder = "\(root)/\(first)/\(second)"
                    guard let size = Self.folderSize(first) ?? Self.folderSize(second) else { continue }
                    for format in size == 0 ? [Format.svg] : [.png, .svg] {
                        let path = "\(folder)/\(base).\(format.rawValue)"
                        if FileSystem.isRegularFile(path) {
                            found.append(Candidate(path: path, size: size == 0 ? nil : size))
                        }
                    }
                }
            }
        }
        return found
    }

    /// Exact size first, then scalable, then larger ones nearest first, then smaller ones.
    static func ranked(_ candidates: [Candidate], wanted: Int) -> [Candidate] {
        func rank(_ candidate: Candidate) -> (Int, Int) {
            guard let size = candidate.size else { return (1, 0) }
            if size == wanted { return (0, 0) }
            return size > wanted ? (2, size - wanted) : (3, wanted - size)
        }
        return candidates.sorted { rank($0) < rank($1) }
    }

    /// Pixels of a size folder: `48x48` → 48, `24x24@2` → 48, `scalable` → 0; nil for others.
    static func folderSize(_ name: String) -> Int? {
        if name == "scalable" { return 0 }
        let parts = name.split(separator: "@", maxSplits: 1)
        let sides = parts[0].split(separator: "x")
        guard sides.count == 2, let width = Int(sides[0]), let height = Int(sides[1]), width == height, width > 0,
            width <= 4096
        else { return nil }
        let scale = parts.count == 2 ? Int(parts[1]) : 1
        guard let scale, (1...8).contains(scale) else { return nil }
        return width * scale
    }

    static func strippingExtension(_ name: String) -> String {
        for suffix in [".png", ".svg", ".xpm"] where name.hasSuffix(suffix) {
            return String(name.dropLast(suffix.count))
        }
        return name
    }

    /// The file, if it holds what its content says is a PNG or an SVG.
    static func load(_ path: String, size: Int?) -> Icon? {
        guard let bytes = FileSystem.read(path, limit: maxSize), let format = format(of: bytes) else { return nil }
        return Icon(path: path, format: format, size: size, bytes: bytes)
    }

    static let pngSignature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

    static func format(of bytes: [UInt8]) -> Format? {
        if bytes.starts(with: pngSignature) { return .png }
        let head = String(decoding: bytes.prefix(4096), as: UTF8.self)
        return head.contains("<svg") ? .svg : nil
    }
}
