import ArgumentParser
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import GuestClient

#if canImport(Glibc)
    import Glibc
#endif

typealias GuestEndpointChoice = GuestEndpoint
typealias HTTP2Transport = HTTP2ClientTransport.Posix

/// Writes bytes to a standard descriptor, all of them.
func writeOut(_ bytes: [UInt8], to fd: Int32) {
    var offset = 0
    while offset < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        offset += n
    }
}

/// Prints an error the way every subcommand does and picks the exit status.
func reportFailure(_ error: any Error) -> ExitCode {
    switch error {
    case let error as RPCError:
        writeOut(Array("vmtoolsctl: \(error.message) (\(error.code))\n".utf8), to: 2)
    case let error as GuestClientError:
        writeOut(Array("vmtoolsctl: \(error)\n".utf8), to: 2)
    default:
        writeOut(Array("vmtoolsctl: \(error)\n".utf8), to: 2)
    }
    return ExitCode(1)
}

/// Runs a guest call; failures print and exit 1.
func guestCall<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    do { return try await body() } catch { throw reportFailure(error) }
}
