/// The Exec key (Desktop Entry Specification, "The Exec key"): a command line with its own
/// quoting, and field codes that become the files, URLs, icon and name of a launch.
extension DesktopEntry {
    /// The argument vectors that launch this application on `items` (paths or URLs; a
    /// `file://` URL counts as its path): one vector, or one per item when Exec takes a single
    /// file or URL (`%f`, `%u`) and several are given. Field codes: `%f %F` paths, `%u %U` URLs
    /// or paths as given, `%i` the icon (`--icon NAME`), `%c` the name, `%k` this file, `%%`;
    /// the deprecated `%d %D %n %N %v %m` are dropped.
    public func commandLines(opening items: [String] = [], locale: String? = nil) throws(DesktopEntryError)
        -> [[String]]
    {
        guard let exec, !exec.isEmpty else { throw .notLaunchable("it has no Exec line") }
        let words = try Self.splitExec(exec)
        guard let program = words.first, !program.isEmpty, !program.contains("%") else {
            throw .badExec("it does not start with a program")
        }
        let paths = items.compactMap(Self.path(of:))
        let codes = Self.fieldCodes(in: words)
        let singleCodes = codes.contains("f") ? paths : codes.contains("u") ? items : []
        let rounds: [String?] = singleCodes.count > 1 ? singleCodes.map { $0 } : [singleCodes.first]
        return try rounds.map { (single: String?) throws(DesktopEntryError) -> [String] in
            var argv: [String] = []
            for word in words {
                switch word {
                case "%F": argv += paths
                case "%U": argv += items
                case "%i": if let icon { argv += ["--icon", icon] }
                default:
                    if let expanded = try expand(word, single: single, locale: locale) { argv.append(expanded) }
                }
            }
            return argv
        }
    }

    /// One word with its field codes replaced; nil when the word was only a code that expands
    /// to nothing (an empty `%f` must not become an empty argument).
    private func expand(_ word: String, single: String?, locale: String?) throws(DesktopEntryError) -> String? {
        guard word.contains("%") else { return word }
        var result = ""
        var onlyCodes = true
        var iterator = word.makeIterator()
        while let character = iterator.next() {
            guard character == "%" else {
                result.append(character)
                onlyCodes = false
                continue
            }
            guard let code = iterator.next() else { throw .badExec("a lone % at the end of '\(word)'") }
            switch code {
            case "%":
                result.append("%")
                onlyCodes = false
            case "f", "u": result += single ?? ""
            case "c": result += name(for: locale)
            case "k": result += path
            case "d", "D", "n", "N", "v", "m": break
            case "F", "U", "i": throw .badExec("%\(code) must stand alone as an argument")
            default: throw .badExec("unknown field code %\(code)")
            }
        }
        return onlyCodes && result.isEmpty ? nil : result
    }

    /// The field codes the words use (`%%` is not one).
    static func fieldCodes(in words: [String]) -> Set<Character> {
        var codes: Set<Character> = []
        for word in words {
            var iterator = word.makeIterator()
            while let character = iterator.next() {
                if character == "%", let code = iterator.next(), code != "%" { codes.insert(code) }
            }
        }
        return codes
    }

    /// A launch item as a local path: a path as is, a `file://` URL decoded; nil for other URLs.
    static func path(of item: String) -> String? {
        if item.hasPrefix("/") { return item }
        guard item.hasPrefix("file://") else { return nil }
        var rest = item.dropFirst(7)
        if !rest.hasPrefix("/") {
            guard let slash = rest.firstIndex(of: "/"), rest[..<slash] == "localhost" else { return nil }
            rest = rest[slash...]
        }
        return percentDecoded(String(rest))
    }

    static func percentDecoded(_ text: String) -> String? {
        var bytes: [UInt8] = []
        var utf8 = text.utf8.makeIterator()
        while let byte = utf8.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = utf8.next(), let low = utf8.next(),
                let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
            else { return nil }
            bytes.append(value)
        }
        return String(validating: bytes, as: UTF8.self)
    }

    /// Splits an Exec value (string escapes already applied) into words: spaces separate,
    /// double quotes group, and inside quotes a backslash escapes `"`, `` ` ``, `$` and `\`.
    static func splitExec(_ exec: String) throws(DesktopEntryError) -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var quoted = false
        var iterator = exec.makeIterator()
        while let character = iterator.next() {
            if quoted {
                switch character {
                case "\"": quoted = false
                case "\\":
                    guard let next = iterator.next() else { throw .badExec("a backslash ends the line") }
                    guard "\"`$\\".contains(next) else {
                        throw .badExec("inside quotes only \\\", \\`, \\$ and \\\\ are escapes, not \\\(next)")
                    }
                    word.append(next)
                default: word.append(character)
                }
                continue
            }
            switch character {
            case " ", "\t", "\n":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            case "\"":
                quoted = true
                inWord = true
            default:
                word.append(character)
                inWord = true
            }
        }
        guard !quoted else { throw .badExec("a quote is not closed") }
        if inWord { words.append(word) }
        guard !words.isEmpty else { throw .badExec("it is empty") }
        return words
    }
}
