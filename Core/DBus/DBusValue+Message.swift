import CSystemd

#if canImport(Glibc)
    import Glibc
#endif

// Reading and writing values with sd-bus's own non-variadic readers and appenders. Called on
// the bus thread only, with messages it owns.

// MARK: - Appending

extension DBusValue {
    /// Appends the value to `message` at its current position.
    func append(to message: OpaquePointer) throws(DBusError) {
        func check(_ r: Int32) throws(DBusError) {
            if r < 0 { throw .invalidArgs("cannot append \(signature) value: \(String(cString: strerror(-r)))") }
        }
        func basic<T>(_ type: Character, _ value: T) throws(DBusError) {
            var copy = value
            let r = withUnsafePointer(to: &copy) { sd_bus_message_append_basic(message, Self.code(type), $0) }
            try check(r)
        }
        func text(_ type: Character, _ value: String) throws(DBusError) {
            guard !value.utf8.contains(0) else { throw .invalidArgs("\(type) value contains a NUL byte") }
            try check(value.withCString { sd_bus_message_append_basic(message, Self.code(type), $0) })
        }
        func container(_ type: Character, _ contents: String, _ body: () throws(DBusError) -> Void) throws(DBusError) {
            try check(contents.withCString { sd_bus_message_open_container(message, Self.code(type), $0) })
            try body()
            try check(sd_bus_message_close_container(message))
        }

        switch self {
        case .byte(let v): try basic("y", v)
        case .bool(let v): try basic("b", Int32(v ? 1 : 0))
        case .int16(let v): try basic("n", v)
        case .uint16(let v): try basic("q", v)
        case .int32(let v): try basic("i", v)
        case .uint32(let v): try basic("u", v)
        case .int64(let v): try basic("x", v)
        case .uint64(let v): try basic("t", v)
        case .double(let v): try basic("d", v)
        case .string(let v): try text("s", v)
        case .objectPath(let v): try text("o", v)
        case .signature(let v): try text("g", v)
        case .fd(let v): try basic("h", v.fd)
        case .array(let element, let items):
            try container("a", element) { () throws(DBusError) in
                for item in items {
                    guard item.signature == element else {
                        throw .invalidArgs("array of \(element) holds a \(item.signature) value")
                    }
                    try item.append(to: message)
                }
            }
        case .dictionary(let key, let value, let entries):
            try container("a", "{" + key + value + "}") { () throws(DBusError) in
                for entry in entries {
                    guard entry.key.signature == key, entry.value.signature == value else {
                        throw .invalidArgs(
                            "dictionary a{\(key)\(value)} holds a \(entry.key.signature) => \(entry.value.signature) entry"
                        )
                    }
                    try container("e", key + value) { () throws(DBusError) in
                        try entry.key.append(to: message)
                        try entry.value.append(to: message)
                    }
                }
            }
        case .variant(let inner):
            try container("v", inner.signature) { () throws(DBusError) in try inner.append(to: message) }
        case .structure(let fields):
            guard !fields.isEmpty else { throw .invalidArgs("a struct needs at least one field") }
            try container("r", fields.map(\.signature).joined()) { () throws(DBusError) in
                for field in fields { try field.append(to: message) }
            }
        }
    }

    /// Appends every value in order.
    static func append(_ values: [DBusValue], to message: OpaquePointer) throws(DBusError) {
        for value in values { try value.append(to: message) }
    }

    static func code(_ type: Character) -> CChar { CChar(bitPattern: type.asciiValue ?? 0) }
}

// MARK: - Reading

extension DBusValue {
    /// Reads the next value at the message's current position; nil at the end of the current
    /// container (or body).
    static func read(from message: OpaquePointer) throws(DBusError) -> DBusValue? {
        var type: CChar = 0
        var contentsPointer: UnsafePointer<CChar>? = nil
        let peeked = sd_bus_message_peek_type(message, &type, &contentsPointer)
        if peeked < 0 { throw .system("reading message", peeked) }
        if peeked == 0 { return nil }
        let contents = contentsPointer.map { String(cString: $0) } ?? ""

        func check(_ r: Int32) throws(DBusError) {
            if r < 0 { throw .system("reading message", r) }
        }
        func basic<T>(_ initial: T) throws(DBusError) -> T {
            var value = initial
            try check(withUnsafeMutablePointer(to: &value) { sd_bus_message_read_basic(message, type, $0) })
            return value
        }
        func text() throws(DBusError) -> String {
            var pointer: UnsafePointer<CChar>? = nil
            try check(sd_bus_message_read_basic(message, type, &pointer))
            return pointer.map { String(cString: $0) } ?? ""
        }
        func enter(_ kind: Character, _ inner: String) throws(DBusError) {
            try check(inner.withCString { sd_bus_message_enter_container(message, code(kind), $0) })
        }
        func exit() throws(DBusError) { try check(sd_bus_message_exit_container(message)) }
        func readUntilEnd() throws(DBusError) -> [DBusValue] {
            var values: [DBusValue] = []
            while let value = try read(from: message) { values.append(value) }
            return values
        }

        switch UInt8(bitPattern: type) {
        case UInt8(ascii: "y"): return .byte(try basic(UInt8(0)))
        case UInt8(ascii: "b"): return .bool(try basic(Int32(0)) != 0)
        case UInt8(ascii: "n"): return .int16(try basic(Int16(0)))
        case UInt8(ascii: "q"): return .uint16(try basic(UInt16(0)))
        case UInt8(ascii: "i"): return .int32(try basic(Int32(0)))
        case UInt8(ascii: "u"): return .uint32(try basic(UInt32(0)))
        case UInt8(ascii: "x"): return .int64(try basic(Int64(0)))
        case UInt8(ascii: "t"): return .uint64(try basic(UInt64(0)))
        case UInt8(ascii: "d"): return .double(try basic(Double(0)))
        case UInt8(ascii: "s"): return .string(try text())
        case UInt8(ascii: "o"): return .objectPath(try text())
        case UInt8(ascii: "g"): return .signature(try text())
        case UInt8(ascii: "h"):
            // The message owns its descriptor; the value gets a duplicate of its own.
            return .fd(try DBusFileDescriptor(duplicating: try basic(Int32(-1))))
        case UInt8(ascii: "a"):
            try enter("a", contents)
            let result: DBusValue
            if contents.hasPrefix("{"), contents.hasSuffix("}"), contents.count >= 4 {
                let inner = String(contents.dropFirst().dropLast())
                let (key, value) = (String(inner.prefix(1)), String(inner.dropFirst()))
                var entries: [DBusDictEntry] = []
                while true {
                    let r = inner.withCString { sd_bus_message_enter_container(message, code("e"), $0) }
                    try check(r)
                    if r == 0 { break }
                    guard let k = try read(from: message), let v = try read(from: message) else {
                        throw .invalidArgs("dictionary entry without key or value")
                    }
                    try exit()
                    entries.append(DBusDictEntry(key: k, value: v))
                }
                result = .dictionary(key: key, value: value, entries)
            } else {
                result = .array(element: contents, try readUntilEnd())
            }
            try exit()
            return result
        case UInt8(ascii: "v"):
            try enter("v", contents)
            guard let inner = try read(from: message) else { throw .invalidArgs("empty variant") }
            try exit()
            return .variant(inner)
        case UInt8(ascii: "r"):
            try enter("r", contents)
            let fields = try readUntilEnd()
            try exit()
            return .structure(fields)
        default:
            throw .invalidArgs("unsupported D-Bus type \(Character(Unicode.Scalar(UInt8(bitPattern: type))))")
        }
    }

    /// Reads every remaining value of the message body.
    static func readAll(from message: OpaquePointer) throws(DBusError) -> [DBusValue] {
        var values: [DBusValue] = []
        while let value = try read(from: message) { values.append(value) }
        return values
    }
}
