import DBus
import DBusTestSupport
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The state behind the `Level` property.
final class Level: Sendable {
    let value = Mutex<UInt32>(3)
}

/// The object the tests export: `org.vmtools.Test` at `/org/vmtools/Test`.
enum TestService {
    static let name = "org.vmtools.Test"
    static let path = "/org/vmtools/Test"

    /// The interface; `level` backs the read-write `Level` property.
    static func interface(level: Level) -> DBusInterface {
        var interface = DBusInterface(name)
        interface.method("Echo", in: "v", out: "v", inputNames: ["value"], outputNames: ["same"]) { call in
            call.arguments
        }
        interface.method("EchoBasics", in: "ybnqiuxtdsog", out: "ybnqiuxtdsog") { call in call.arguments }
        interface.method("Add", in: "ii", out: "i", inputNames: ["a", "b"], outputNames: ["sum"]) { call in
            let (a, b) = (try call.argument(0, as: Int32.self), try call.argument(1, as: Int32.self))
            return [.int32(a &+ b)]
        }
        interface.method("StartVm", in: "sa{sv}", out: "u") { call in
            let options = try call.options(1)
            try options.rejectUnknown(["kernel", "memory_mib"])
            _ = try options.require("kernel", as: String.self)
            return [.uint32(try options.value("memory_mib", default: UInt32(1024)))]
        }
        interface.method("Fail", in: "s") { call in
            throw DBusError.vmtools("NotFound", "no VM named \(try call.argument(0, as: String.self))")
        }
        interface.method("FailPlain") { _ in throw TestFailure("a plain Swift error") }
        interface.method("BadReply", out: "u") { _ in [.string("not a u")] }
        interface.method("Slow", in: "u", out: "u") { call in
            let ms = try call.argument(0, as: UInt32.self)
            try await Task.sleep(for: .milliseconds(Int(ms)))
            return [.uint32(ms)]
        }
        interface.method("Never") { _ in
            try await Task.sleep(for: .seconds(600))
            return []
        }
        interface.method("WhoAmI", out: "us") { call in
            [.uint32(call.sender.uid ?? UInt32.max), .string(call.sender.uniqueName)]
        }
        interface.method("MakePipe", in: "s", out: "h") { call in
            var fds: [Int32] = [0, 0]
            guard pipe(&fds) == 0 else { throw DBusError.failed("pipe failed") }
            let text = try call.argument(0, as: String.self)
            _ = text.withCString { write(fds[1], $0, strlen($0)) }
            close(fds[1])
            return [.fd(DBusFileDescriptor(taking: fds[0]))]
        }
        interface.method("WriteTo", in: "hs") { call in
            let fd = try call.argument(0, as: DBusFileDescriptor.self)
            let text = try call.argument(1, as: String.self)
            let written = text.withCString { write(fd.fd, $0, strlen($0)) }
            guard written == text.utf8.count else { throw DBusError.failed("write failed") }
            return []
        }
        interface.property("Name", of: String.self, emitsChange: false) { "demo" }
        interface.property("Level", of: UInt32.self) {
            level.value.withLock { $0 }
        } set: { value in
            guard value <= 100 else { throw DBusError.invalidArgs("Level must be at most 100") }
            level.value.withLock { $0 = value }
        }
        interface.signal("Tick", signature: "u", names: ["count"])
        interface.signal("Changed", signature: "su", names: ["what", "value"])
        return interface
    }
}
