/// The key-file format of freedesktop.org desktop entries (Desktop Entry Specification 1.5,
/// "Basic format of the file"): `[Group]` headers, `Key=Value` and `Key[locale]=Value` lines,
/// `#` comments. Read leniently, as GLib does: a repeated key or group merges, the later value
/// wins; a line that is none of these is an error that names its line.
public struct KeyFile: Sendable, Equatable {
    /// One group's entries: key (with its `[locale]` suffix, if any) → raw value (escapes kept).
    public typealias Group = [String: String]

    /// Groups by name, in no particular order.
    public private(set) var groups: [String: Group] = [:]

    /// Files bigger than this are not parsed (a desktop file is a few KiB).
    public static let maxSize = 1 << 20

    public init(parsing text: String) throws(DesktopEntryError) {
        guard text.utf8.count <= Self.maxSize else { throw .tooLarge(text.utf8.count) }
        var current: String?
        // "\r\n" is one Character in Swift: both line ends are separators.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        for (index, line) in lines.enumerated() {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]"), trimmed.count >= 3 else {
                    throw .malformedLine(index + 1, "a group header must be [Name]")
                }
                let name = String(trimmed.dropFirst().dropLast())
                guard !name.contains(where: { $0 == "[" || $0 == "]" || $0.isASCIIControl }) else {
                    throw .malformedLine(index + 1, "a group name may not hold [, ] or control characters")
                }
                current = name
                groups[name, default: [:]] = groups[name] ?? [:]
                continue
            }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw .malformedLine(index + 1, "expected Key=Value")
            }
            guard let group = current else {
                throw .malformedLine(index + 1, "a key before the first group")
            }
            let key = String(trimmed[..<equals]).trimmingSpaces
            guard Self.isValidKey(key) else { throw .malformedLine(index + 1, "invalid key '\(key)'") }
            let value = trimmed[trimmed.index(after: equals)...].drop { $0 == " " || $0 == "\t" }
            groups[group, default: [:]][key] = String(value)
        }
    }

    /// `Key` or `Key[locale]`, where a key is A-Za-z0-9 and `-`.
    static func isValidKey(_ key: String) -> Bool {
        var name = Substring(key)
        if let open = key.firstIndex(of: "[") {
            guard key.hasSuffix("]"), key.index(after: open) < key.index(before: key.endIndex) else { return false }
            name = key[..<open]
        }
        return !name.isEmpty && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
    }

    // MARK: - Values

    /// The value of `key` in `group` with the string escapes (`\s`, `\n`, `\t`, `\r`, `\\`) applied.
    public func string(_ key: String, in group: String) -> String? {
        groups[group]?[key].map(Self.unescape)
    }

    /// The value for the best match of `locale` (`lang_COUNTRY.ENCODING@MODIFIER`), tried as the
    /// specification orders it: lang_COUNTRY@MODIFIER, lang_COUNTRY, lang@MODIFIER, lang, then
    /// the unlocalized key.
    public func localizedString(_ key: String, in group: String, locale: String?) -> String? {
        for candidate in Self.localeCandidates(locale ?? "") {
            if let value = string("\(key)[\(candidate)]", in: group) { return value }
        }
        return string(key, in: group)
    }

    /// Every localized value of `key`: locale → value, with "" for the unlocalized one.
    public func localizations(_ key: String, in group: String) -> [String: String] {
        var values: [String: String] = [:]
        for (name, raw) in groups[group] ?? [:] {
            if name == key {
                values[""] = Self.unescape(raw)
            } else if name.hasPrefix(key + "["), name.hasSuffix("]") {
                values[String(name.dropFirst(key.count + 1).dropLast())] = Self.unescape(raw)
            }
        }
        return values
    }

    /// A `;`-separated list (a trailing `;` ends the last item; `\;` is a literal semicolon).
    public func list(_ key: String, in group: String) -> [String] {
        guard let raw = groups[group]?[key] else { return [] }
        return Self.splitList(raw).map(Self.unescape).filter { !$0.isEmpty }
    }

    /// `true` or `false` (anything else reads as false, as GLib's lenient readers do).
    public func boolean(_ key: String, in group: String) -> Bool {
        string(key, in: group)?.trimmingSpaces == "true"
    }

    // MARK: - Escapes

    static func unescape(_ raw: String) -> String {
        guard raw.contains("\\") else { return raw }
        var result = ""
        var escaping = false
        for character in raw {
            if escaping {
                switch character {
                case "s": result.append(" ")
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "r": result.append("\r")
                case "\\": result.append("\\")
                default:
                    // Not a string escape (`\;` in lists, `\"` in Exec): kept for the next layer.
                    result.append("\\")
                    result.append(character)
                }
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else {
                result.append(character)
            }
        }
        if escaping { result.append("\\") }
        return result
    }

    static func splitList(_ raw: String) -> [String] {
        var items: [String] = []
        var item = ""
        var escaping = false
        for character in raw {
            if escaping {
                if character == ";" {
                    item.append(";")
                } else {
                    item.append("\\")
                    item.append(character)
                }
                escaping = false
            } else if character == "\\" {
                escaping = true
            } else if character == ";" {
                items.append(item)
                item = ""
            } else {
                item.append(character)
            }
        }
        if escaping { item.append("\\") }
        if !item.isEmpty { items.append(item) }
        return items
    }

    /// The locale names to try for `locale`, most specific first.
    static func localeCandidates(_ locale: String) -> [String] {
        guard !locale.isEmpty, locale != "C", locale != "POSIX" else { return [] }
        var rest = Substring(locale)
        var modifier: Substring?
        if let at = rest.firstIndex(of: "@") {
            modifier = rest[rest.index(after: at)...]
            rest = rest[..<at]
        }
        if let dot = rest.firstIndex(of: ".") { rest = rest[..<dot] }
        var country: Substring?
        if let underscore = rest.firstIndex(of: "_") {
            country = rest[rest.index(after: underscore)...]
            rest = rest[..<underscore]
        }
        let lang = String(rest)
        var candidates: [String] = []
        if let country, let modifier { candidates.append("\(lang)_\(country)@\(modifier)") }
        if let country { candidates.append("\(lang)_\(country)") }
        if let modifier { candidates.append("\(lang)@\(modifier)") }
        candidates.append(lang)
        return candidates
    }
}

extension Character {
    var isASCIIControl: Bool { isASCII && (asciiValue ?? 0) < 0x20 || self == "\u{7F}" }
}

extension StringProtocol {
    var trimmingSpaces: String {
        let start = drop { $0 == " " || $0 == "\t" }
        return String(start.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
