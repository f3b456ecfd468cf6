import CSystemd
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler that writes structured journald entries through `sd_journal_sendv`:
/// `MESSAGE`, `PRIORITY` (syslog levels), `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`,
/// `CODE_FUNC`, `LOGGER` (the logger's label), `ERROR` when the event carries one, and every
/// metadata key as an upper-cased field (`vm_name` → `VM_NAME`), so `journalctl VM_NAME=demo`
/// finds a VM's lines. Without a journal (no `/run/systemd/journal/socket`) it writes one
/// line per entry to stderr instead.
///
/// ```swift
/// LoggingSystem.bootstrap { JournalLogHandler(label: $0, identifier: "concierge") }
/// ```
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    /// The logger's label.
    public let label: String
    /// `SYSLOG_IDENTIFIER`, normally the program's name.
    public let identifier: String
    /// Whether entries go to the journal (false: stderr).
    public let usesJournal: Bool

    /// A handler for logger `label`, tagging entries with `identifier`. The journal is used when
    /// `journalSocket` exists.
    public init(
        label: String, identifier: String, journalSocket: String = "/run/systemd/journal/socket",
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.identifier = identifier
        self.usesJournal = access(journalSocket, F_OK) == 0
        self.metadataProvider = metadataProvider
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    // MARK: - Writing entries

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { $1 } }
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        if usesJournal {
            let fields = Self.fields(
                event, metadata: merged, label: label, identifier: identifier)
            Self.send(fields)
        } else {
            let line = Self.line(event, metadata: merged, label: label, identifier: identifier)
            line.utf8CString.withUnsafeBufferPointer { buffer in
                _ = write(STDERR_FILENO, buffer.baseAddress, buffer.count - 1)
            }
        }
    }

    /// The journal fields (`KEY=value`) of `event`.
    static func fields(_ event: LogEvent, metadata: Logger.Metadata, label: String, identifier: String) -> [String] {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(priority(event.level))",
            "SYSLOG_IDENTIFIER=\(identifier)",
            "CODE_FILE=\(event.file)",
            "CODE_LINE=\(event.line)",
            "CODE_FUNC=\(event.function)",
            "LOGGER=\(label)",
        ]
        if let error = event.error { fields.append("ERROR=\(error)") }
        let reserved: Set<String> = [
            "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "LOGGER", "ERROR",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            guard let name = fieldName(key), !reserved.contains(name) else { continue }
            fields.append("\(name)=\(value)")
        }
        return fields
    }

    /// A metadata key as a journal field name: upper case, letters, digits and `_` only, not
    /// starting with `_` or a digit, at most 64 bytes; nil if nothing is left.
    static func fieldName(_ key: String) -> String? {
        var bytes: [UInt8] = key.utf8.map { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"): return byte - 32
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): return byte
            default: return UInt8(ascii: "_")
            }
        }
        while let first = bytes.first,
            first == UInt8(ascii: "_") || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(first)
        {
            bytes.removeFirst()
        }
        guard !bytes.isEmpty else { return nil }
        return String(decoding: bytes.prefix(64), as: UTF8.self)
    }

    /// syslog(3) priorities: trace and debug 7, info 6, notice 5, warning 4, error 3, critical 2.
    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// The stderr line: `identifier[label] level: message key=value ...`.
    static func line(_ event: LogEvent, metadata: Logger.Metadata, label: String, identifier: String) -> String {
        var line = "\(identifier)[\(label)] \(event.level): \(event.message)"
        if let error = event.error { line += " error=\(error)" }
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { line += " \(key)=\(value)" }
        return line + "\n"
    }

    /// One sd_journal_sendv call with `fields` as iovecs.
    private static func send(_ fields: [String]) {
        var copies = fields.map { strdup($0) }
        defer { for copy in copies { free(copy) } }
        copies.removeAll { $0 == nil }
        var vectors = copies.compactMap { copy in copy.map { iovec(iov_base: $0, iov_len: strlen($0)) } }
        _ = sd_journal_sendv(&vectors, Int32(vectors.count))
    }
}
