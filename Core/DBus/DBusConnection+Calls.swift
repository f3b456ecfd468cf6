import CSystemd
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

// MARK: - Calling methods

extension DBusConnection {
    /// Calls `member` of `interface` on the object at `path` of `destination` with `arguments`
    /// and returns the reply's values. An error reply throws it as a ``DBusError``; no reply
    /// within `timeout` throws `org.freedesktop.DBus.Error.Timeout` (sd-bus's name); a closed
    /// connection throws `org.freedesktop.DBus.Error.Disconnected`. Cancelling the task
    /// abandons the call.
    public func call(
        destination: String, path: String, interface: String, member: String, _ arguments: [DBusValue] = [],
        timeout: Duration = .seconds(25)
    ) async throws(DBusError) -> [DBusValue] {
        let thread = self.thread
        let usec = Self.microseconds(timeout)
        let id = Mutex<UInt64?>(nil)
        let result: Result<[DBusValue], DBusError> = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let accepted = thread.submit { bus in
                    let call = PendingCall(id: thread.makeID(), thread: thread, continuation: continuation)
                    var message: OpaquePointer? = nil
                    var r = sd_bus_message_new_method_call(bus, &message, destination, path, interface, member)
                    guard r >= 0, let message else {
                        call.complete(.failure(.system("creating a call to \(member)", r)))
                        return
                    }
                    defer { sd_bus_message_unref(message) }
                    do throws(DBusError) {
                        try DBusValue.append(arguments, to: message)
                    } catch {
                        call.complete(.failure(error))
                        return
                    }
                    var slot: OpaquePointer? = nil
                    r = sd_bus_call_async(
                        bus, &slot, message, replyTrampoline, Unmanaged.passUnretained(call).toOpaque(), usec)
                    guard r >= 0 else {
                        call.complete(.failure(.system("calling \(member) on \(destination)", r)))
                        return
                    }
                    call.slot = slot
                    thread.addPendingCall(call)
                    let cancelled = id.withLock { stored -> Bool in
                        if stored == UInt64.max { return true }
                        stored = call.id
                        return false
                    }
                    if cancelled { thread.cancelCall(call.id) }
                }
                if !accepted {
                    continuation.resume(returning: .failure(.disconnected("the D-Bus connection is closed")))
                }
            }
        } onCancel: {
            // Either the call is registered (cancel it on the bus thread) or it will see the mark.
            let registered = id.withLock { stored -> UInt64? in
                defer { if stored == nil { stored = UInt64.max } }
                return stored
            }
            if let registered { thread.submit { _ in thread.cancelCall(registered) } }
        }
        return try result.get()
    }

    /// Like ``call(destination:path:interface:member:_:timeout:)`` with `path` and `interface`
    /// following the project's convention: bus name `org.vmtools.X`, path `/org/vmtools/X`,
    /// interface = bus name.
    public func call(
        service: String, member: String, _ arguments: [DBusValue] = [], timeout: Duration = .seconds(25)
    ) async throws(DBusError) -> [DBusValue] {
        let path = "/" + service.split(separator: ".").joined(separator: "/")
        return try await call(
            destination: service, path: path, interface: service, member: member, arguments, timeout: timeout)
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return 1 }
        return UInt64(clamping: seconds) &* 1_000_000 &+ UInt64(clamping: attoseconds / 1_000_000_000_000)
    }
}

/// sd-bus's reply callback for ``DBusConnection/call(destination:path:interface:member:_:timeout:)``.
private func replyTrampoline(
    _ message: OpaquePointer?, _ userdata: UnsafeMutableRawPointer?, _ error: UnsafeMutablePointer<sd_bus_error>?
) -> Int32 {
    guard let message, let userdata else { return 0 }
    let call = Unmanaged<PendingCall>.fromOpaque(userdata).takeUnretainedValue()
    call.thread.completeCall(call.id, reply: message)
    return 0
}
