/// An application's desktop entry (`Type=Application`): what garcon reports to the host for
/// ListApplications, and what LaunchApplication runs.
public struct DesktopEntry: Sendable, Equatable {
    /// The desktop file ID: the path under an `applications` folder with `/` turned into `-`,
    /// e.g. `org.gnome.TextEditor.desktop` or `kde4-kate.desktop`.
    public var id: String
    /// Where it was read from (Exec's `%k`).
    public var path: String
    /// Name, Comment, GenericName and Keywords by locale ("" for the unlocalized value).
    public var names: [String: String]
    public var comments: [String: String]
    public var genericNames: [String: String]
    public var keywords: [String: [String]]
    public var icon: String?
    public var exec: String?
    public var tryExec: String?
    /// The working folder to launch in (`Path`).
    public var workingDirectory: String?
    public var terminal: Bool
    /// Hidden from menus, but still an application (for MIME handling): the host is told.
    public var noDisplay: Bool
    public var mimeTypes: [String]
    public var categories: [String]
    public var onlyShowIn: [String]
    public var notShowIn: [String]
    public var startupWMClass: String?
    public var startupNotify: Bool

    static let group = "Desktop Entry"

    /// The unlocalized name.
    public var name: String { names[""] ?? "" }

    /// Reads an entry. Entries that are not applications, and applications without Name,
    /// are refused with what is wrong; `Hidden=true` entries read fine (``isHidden``), since they
    /// hide entries of the same ID further down the search path.
    public init(parsing text: String, id: String, path: String) throws(DesktopEntryError) {
        let file = try KeyFile(parsing: text)
        guard file.groups[Self.group] != nil else { throw .missingGroup }
        try self.init(file, id: id, path: path)
    }

    init(_ file: KeyFile, id: String, path: String) throws(DesktopEntryError) {
        let g = Self.group
        guard let type = file.string("Type", in: g) else { throw .missingKey("Type") }
        guard type == "Application" else { throw .notAnApplication(type) }
        names = file.localizations("Name", in: g)
        guard names[""] != nil else { throw .missingKey("Name") }
        self.id = id
        self.path = path
        comments = file.localizations("Comment", in: g)
        genericNames = file.localizations("GenericName", in: g)
        keywords = [:]
        for (locale, _) in file.localizations("Keywords", in: g) {
            keywords[locale] = file.list(locale.isEmpty ? "Keywords" : "Keywords[\(locale)]", in: g)
        }
        icon = file.string("Icon", in: g).flatMap { $0.isEmpty ? nil : $0 }
        exec = file.string("Exec", in: g)
        tryExec = file.string("TryExec", in: g)
        workingDirectory = file.string("Path", in: g).flatMap { $0.isEmpty ? nil : $0 }
        terminal = file.boolean("Terminal", in: g)
        noDisplay = file.boolean("NoDisplay", in: g)
        isHidden = file.boolean("Hidden", in: g)
        mimeTypes = file.list("MimeType", in: g)
        categories = file.list("Categories", in: g)
        onlyShowIn = file.list("OnlyShowIn", in: g)
        notShowIn = file.list("NotShowIn", in: g)
        startupWMClass = file.string("StartupWMClass", in: g)
        startupNotify = file.boolean("StartupNotify", in: g)
    }

    /// `Hidden=true`: the user deleted it; it is not an application any more.
    public var isHidden: Bool

    /// The name for `locale` (e.g. `de_DE.UTF-8`), falling back as the specification says.
    public func name(for locale: String?) -> String {
        Self.localized(names, locale) ?? name
    }

    static func localized<T>(_ values: [String: T], _ locale: String?) -> T? {
        for candidate in KeyFile.localeCandidates(locale ?? "") {
            if let value = values[candidate] { return value }
        }
        return values[""]
    }
}
