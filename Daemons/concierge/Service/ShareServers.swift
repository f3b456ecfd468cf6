import DBus

/// Where concierge gets each VM's 9P server: seneschal (org.vmtools.Seneschal) in the daemon;
/// none in tests that do not share folders.
public protocol ShareServers: Sendable {
    /// Starts a server on `listener` (a listening Unix socket, where vmm sends the guest's
    /// connections to vsock port 16384) that serves as `uid`; returns its handle.
    func startServer(listener: Int32, uid: UInt32) async throws(ConciergeError) -> UInt32
    /// Stops a server; a server already gone is no error.
    func stopServer(_ handle: UInt32) async
}

/// ``ShareServers`` through seneschal on D-Bus (activated on the first call).
public struct SeneschalShareServers: ShareServers {
    public static let service = "org.vmtools.Seneschal"
    let connection: DBusConnection

    public init(connection: DBusConnection) { self.connection = connection }

    public func startServer(listener: Int32, uid: UInt32) async throws(ConciergeError) -> UInt32 {
        do {
            let fd = try DBusFileDescriptor(duplicating: listener)
            let reply = try await connection.call(
                service: Self.service, member: "StartServer", [.options(["fd": .fd(fd), "uid": .uint32(uid)])])
            guard case .uint32(let handle)? = reply.first else {
                throw ConciergeError.failed("seneschal answered \(reply)")
            }
            return handle
        } catch let error as DBusError {
            throw .failed("seneschal: \(error.message)")
        } catch let error as ConciergeError {
            throw error
        } catch {
            throw .failed("seneschal: \(error)")
        }
    }

    public func stopServer(_ handle: UInt32) async {
        _ = try? await connection.call(service: Self.service, member: "StopServer", [.uint32(handle)])
    }
}
