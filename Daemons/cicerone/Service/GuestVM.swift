import DBus

/// A running VM as cicerone knows it: what concierge said in NotifyVmStarted (or GetVmInfo).
public struct GuestVM: Sendable, Equatable {
    public var name: String
    public var cid: UInt32
    /// The VM's vsock socket (vmm's `CONNECT <port>` convention): cicerone reaches each garcon
    /// through it, and listens beside it at `<vsock socket>_8889`, where vmm sends the guest's
    /// connections to host port 8889.
    public var vsockSocket: String
    /// maitred's plain socket (vmm `--vsock-listen 8888:...`).
    public var maitredSocket: String

    public init(name: String, cid: UInt32, vsockSocket: String, maitredSocket: String) {
        self.name = name
        self.cid = cid
        self.vsockSocket = vsockSocket
        self.maitredSocket = maitredSocket
    }

    /// cicerone's ContainerListener port (ARCHITECTURE.md), and where vmm sends it.
    public static let listenerPort: UInt32 = 8889
    public var listenerSocket: String { "\(vsockSocket)_\(Self.listenerPort)" }

    /// From concierge's VM description (`a{sv}`: cid, vsock_socket, maitred_socket; other keys
    /// are ignored, as GetVmInfo says more than cicerone needs).
    public init(name: String, info: DBusOptions) throws(CiceroneError) {
        do {
            let vsock: String = try info.require("vsock_socket")
            let maitred: String = try info.require("maitred_socket")
            guard vsock.hasPrefix("/"), maitred.hasPrefix("/") else {
                throw CiceroneError.invalid("VM \(name): vsock_socket and maitred_socket must be absolute paths")
            }
            self.init(name: name, cid: try info.require("cid"), vsockSocket: vsock, maitredSocket: maitred)
        } catch let error as DBusError {
            throw .invalid("VM \(name)'s description: \(error.message)")
        } catch let error as CiceroneError {
            throw error
        } catch {
            throw .invalid("VM \(name)'s description: \(error)")
        }
    }
}

/// Where cicerone learns of a VM it was not told about (started before cicerone ran, or a
/// request that came before concierge's notification): concierge's GetVmInfo.
public protocol VMDirectory: Sendable {
    /// The VM named `name`, or nil when it does not run; throws when that cannot be told.
    func vm(named name: String) async throws -> GuestVM?
}

/// ``VMDirectory`` through concierge on D-Bus.
public struct ConciergeVMDirectory: VMDirectory {
    public static let service = "org.vmtools.Concierge"
    let connection: DBusConnection

    public init(connection: DBusConnection) { self.connection = connection }

    public func vm(named name: String) async throws -> GuestVM? {
        let reply: [DBusValue]
        do {
            reply = try await connection.call(service: Self.service, member: "GetVmInfo", [.string(name)])
        } catch  where error.name == ServiceError(.notFound, "").dbusName {
            return nil
        }
        guard let first = reply.first else { return nil }
        let info = try DBusOptions(first)
        guard try info.optional("state", as: String.self) == "running" else { return nil }
        return try GuestVM(name: name, info: info)
    }
}
