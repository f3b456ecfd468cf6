import ArgumentParser
import DBus
import Foundation

/// Where concierge is: the system bus unless `--bus` names another.
struct BusOptions: ParsableArguments {
    @Option(help: "The D-Bus to find concierge on: system, or an address such as unix:path=/run/test-bus.")
    var bus = "system"

    /// A client of concierge on that bus.
    func concierge() async throws -> ConciergeClient {
        do {
            return ConciergeClient(connection: try await DBusConnection.open(bus == "system" ? .system : .address(bus)))
        } catch {
            throw reportFailure(ConciergeClient.Failure("cannot reach the \(bus) bus: \(error.message)"))
        }
    }
}

/// org.vmtools.Concierge's methods as Swift calls; a D-Bus error prints as its message and exits 1.
struct ConciergeClient: Sendable {
    /// A failure of the client itself (the service's errors come as ``DBusError``).
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    static let service = "org.vmtools.Concierge"
    let connection: DBusConnection

    /// One call; `timeout` covers the whole of it (StartVm waits for the guest).
    /// `service` is concierge unless named (seneschal, for shares).
    func call(
        _ member: String, _ arguments: [DBusValue] = [], timeout: Duration = .seconds(25),
        service: String = Self.service
    ) async throws -> [DBusValue] {
        do {
            return try await connection.call(service: service, member: member, arguments, timeout: timeout)
        } catch {
            throw reportFailure(Self.explain(error, service: service))
        }
    }

    /// A D-Bus error as a user reads it: the message, and what to do when the bus said no.
    static func explain(_ error: DBusError, service: String = Self.service) -> Failure {
        let daemon = service.split(separator: ".").last.map { $0.lowercased() } ?? service
        switch error.name {
        case "org.freedesktop.DBus.Error.AccessDenied":
            return Failure("\(error.message) (only root and members of group vmtools may use \(daemon))")
        case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner":
            return Failure("\(daemon) is not running and could not be started: \(error.message)")
        case DBusError.timeoutName, DBusError.noReplyName:
            return Failure("\(daemon) did not answer in time: \(error.message)")
        default:
            let kind = error.name.split(separator: ".").last.map(String.init) ?? error.name
            return Failure("\(error.message) (\(kind))")
        }
    }

    /// An `a{sv}` reply as a dictionary of plain values.
    static func record(_ value: DBusValue) throws -> [String: DBusValue] {
        do { return try DBusOptions(value).values } catch {
            throw reportFailure(Failure("odd reply: \(error.message)"))
        }
    }

    /// An `aa{sv}` reply as records.
    static func records(_ value: DBusValue?) throws -> [[String: DBusValue]] {
        guard case .array(_, let items)? = value else { throw reportFailure(Failure("odd reply: not a list")) }
        return try items.map(record)
    }

    /// A VM's record (GetVmInfo).
    func info(_ name: String) async throws -> [String: DBusValue] {
        try Self.record(try await call("GetVmInfo", [.string(name)]).first ?? .options([:]))
    }
}

// MARK: - Showing records

extension DBusValue {
    /// The value as a person reads it in a table.
    var text: String {
        switch self {
        case .string(let v), .objectPath(let v), .signature(let v): return v
        case .bool(let v): return v ? "yes" : "no"
        case .byte(let v): return String(v)
        case .int16(let v): return String(v)
        case .uint16(let v): return String(v)
        case .int32(let v): return String(v)
        case .uint32(let v): return String(v)
        case .int64(let v): return String(v)
        case .uint64(let v): return String(v)
        case .double(let v): return String(v)
        case .array(_, let items): return items.map(\.text).joined(separator: ",")
        case .variant(let inner): return inner.text
        default: return "\(self)"
        }
    }

    /// The value for JSON output.
    var json: Any {
        switch self {
        case .string(let v), .objectPath(let v), .signature(let v): return v
        case .bool(let v): return v
        case .byte(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int64(let v): return Int(v)
        case .uint64(let v): return v
        case .double(let v): return v
        case .array(_, let items): return items.map(\.json)
        case .variant(let inner): return inner.json
        case .dictionary(_, _, let entries):
            var object: [String: Any] = [:]
            for entry in entries { object[entry.key.text] = entry.value.json }
            return object
        case .structure(let fields): return fields.map(\.json)
        case .fd(let v): return Int(v.fd)
        }
    }
}

/// Output helpers shared by the concierge commands.
enum Output {
    /// `value` as pretty, key-sorted JSON on stdout.
    static func printJSON(_ value: Any) {
        let options: JSONSerialization.WritingOptions = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        if let data = try? JSONSerialization.data(withJSONObject: value, options: options) {
            writeOut(Array(data) + [10], to: 1)
        }
    }

    /// Rows under a header, columns padded to their widest cell.
    static func printTable(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            let cells = row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }
            print(cells.joined(separator: "  "))
        }
    }

    /// `bytes` as 1.5G, 512M, 4.0K.
    static func size(_ bytes: UInt64) -> String {
        let units = ["B", "K", "M", "G", "T"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes)B" : String(format: value < 10 ? "%.1f" : "%.0f", value) + units[unit]
    }

    /// A size such as 10G, 512M, 4096 as bytes (powers of 1024).
    static func parseSize(_ text: String) -> UInt64? {
        let multipliers: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        if digits.hasSuffix("IB") { digits.removeLast(2) } else if digits.hasSuffix("B") { digits.removeLast() }
        var multiplier: UInt64 = 1
        if let last = digits.last, let m = multipliers[last] {
            multiplier = m
            digits.removeLast()
        }
        guard let number = UInt64(digits), number > 0 else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}
