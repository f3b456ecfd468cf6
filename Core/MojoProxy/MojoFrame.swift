import SwiftProtobuf

/// Why bytes from the other proxy are not a message; the link that sent them is closed.
public enum MojoFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The length prefix exceeds ``MojoFrame/maxMessageSize``.
    case tooLarge(Int)
    /// The bytes are not a serialized Message.
    case malformed(String)
    /// A Message that breaks the protocol's rules (named).
    case invalid(String)

    public var description: String {
        switch self {
        case .tooLarge(let size): return "a message of \(size) bytes (at most \(MojoFrame.maxMessageSize))"
        case .malformed(let why): return "a malformed message: \(why)"
        case .invalid(let why): return "an invalid message: \(why)"
        }
    }
}

/// The framing between the two proxies: a 4-byte little-endian length, then a serialized
/// `Vmtools_Mojo_Message`. Decoding checks sizes before it allocates and the message's fields
/// after, so that a confused or hostile peer gets its link closed, never a crash.
public enum MojoFrame {
    /// The protocol version both ends speak (Hello).
    public static let version: UInt32 = 1
    /// The largest payload of one Data, Pread or Pwrite (larger writes are split).
    public static let maxPayload = 256 * 1024
    /// The largest serialized message: a full payload and its fields.
    public static let maxMessageSize = maxPayload + 4096
    /// Descriptors one Data may carry (SCM_MAX_FD is 253; Mojo sends a handful).
    public static let maxTransferred = 64

    /// `message` framed for the link.
    public static func encode(_ message: Vmtools_Mojo_Message) throws(MojoFrameError) -> [UInt8] {
        let body: [UInt8]
        do { body = try message.serializedBytes() } catch { throw .malformed("\(error)") }
        guard body.count <= maxMessageSize else { throw .tooLarge(body.count) }
        let n = UInt32(body.count)
        return [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n >> 16 & 0xFF), UInt8(n >> 24)] + body
    }

    /// The message in `body` (a frame without its length), checked.
    public static func decode(_ body: some Collection<UInt8>) throws(MojoFrameError) -> Vmtools_Mojo_Message {
        guard body.count <= maxMessageSize else { throw .tooLarge(body.count) }
        let message: Vmtools_Mojo_Message
        do { message = try Vmtools_Mojo_Message(serializedBytes: Array(body)) } catch {
            throw .malformed("\(error)")
        }
        try validate(message)
        return message
    }

    /// The rules a decoded message must keep beyond its wire format.
    static func validate(_ message: Vmtools_Mojo_Message) throws(MojoFrameError) {
        guard let command = message.command else { throw .invalid("no command") }
        switch command {
        case .hello: break
        case .connectRequest(let request):
            guard request.cookie != 0 else { throw .invalid("ConnectRequest with cookie 0") }
        case .connectResponse(let response):
            guard response.cookie != 0 else { throw .invalid("ConnectResponse with cookie 0") }
            guard response.errorCode >= 0 else { throw .invalid("ConnectResponse with errno \(response.errorCode)") }
            guard response.errorCode != 0 || response.handle != 0 else {
                throw .invalid("ConnectResponse without a handle")
            }
        case .data(let data):
            guard data.handle != 0 else { throw .invalid("Data for handle 0") }
            guard data.payload.count <= maxPayload else { throw .invalid("Data of \(data.payload.count) bytes") }
            guard data.transferred.count <= maxTransferred else {
                throw .invalid("Data with \(data.transferred.count) descriptors")
            }
            for fd in data.transferred {
                guard fd.handle != 0 else { throw .invalid("a transferred descriptor with handle 0") }
                guard case .some = FileKind(fd.type) else { throw .invalid("a descriptor of unknown type \(fd.type)") }
            }
        case .close(let close):
            guard close.handle != 0, close.errorCode >= 0 else { throw .invalid("Close of handle 0 or errno < 0") }
        case .credit(let credit):
            guard credit.handle != 0, credit.bytes > 0, credit.bytes <= UInt64(Int32.max) else {
                throw .invalid("Credit of \(credit.bytes) bytes for handle \(credit.handle)")
            }
        case .preadRequest(let request):
            guard request.cookie != 0, request.handle != 0, request.count <= UInt64(maxPayload),
                request.offset <= UInt64(Int64.max)
            else { throw .invalid("PreadRequest out of range") }
        case .preadResponse(let response):
            guard response.cookie != 0, response.errorCode >= 0, response.blob.count <= maxPayload else {
                throw .invalid("PreadResponse out of range")
            }
        case .pwriteRequest(let request):
            guard request.cookie != 0, request.handle != 0, request.blob.count <= maxPayload,
                request.offset <= UInt64(Int64.max)
            else { throw .invalid("PwriteRequest out of range") }
        case .pwriteResponse(let response):
            guard response.cookie != 0, response.errorCode >= 0, response.bytesWritten <= UInt64(maxPayload) else {
                throw .invalid("PwriteResponse out of range")
            }
        case .fstatRequest(let request):
            guard request.cookie != 0, request.handle != 0 else { throw .invalid("FstatRequest out of range") }
        case .fstatResponse(let response):
            guard response.cookie != 0, response.errorCode >= 0 else { throw .invalid("FstatResponse out of range") }
        case .ftruncateRequest(let request):
            guard request.cookie != 0, request.handle != 0, request.length <= UInt64(Int64.max) else {
                throw .invalid("FtruncateRequest out of range")
            }
        case .ftruncateResponse(let response):
            guard response.cookie != 0, response.errorCode >= 0 else {
                throw .invalid("FtruncateResponse out of range")
            }
        }
    }
}

/// The kinds of descriptor the proxies recreate on the other side.
public enum FileKind: Sendable, Equatable {
    case streamSocket, seqpacketSocket, datagramSocket, fifoRead, fifoWrite, regularFile

    init?(_ type: Vmtools_Mojo_FileDescriptor.TypeEnum) {
        switch type {
        case .streamSocket: self = .streamSocket
        case .seqpacketSocket: self = .seqpacketSocket
        case .dgramSocket: self = .datagramSocket
        case .fifoRead: self = .fifoRead
        case .fifoWrite: self = .fifoWrite
        case .regularFile: self = .regularFile
        case .unknown, .UNRECOGNIZED: return nil
        }
    }

    var wireType: Vmtools_Mojo_FileDescriptor.TypeEnum {
        switch self {
        case .streamSocket: return .streamSocket
        case .seqpacketSocket: return .seqpacketSocket
        case .datagramSocket: return .dgramSocket
        case .fifoRead: return .fifoRead
        case .fifoWrite: return .fifoWrite
        case .regularFile: return .regularFile
        }
    }
}

/// Splits a byte stream from the link into message bodies: feed it what arrives, take whole
/// frames out. It never holds more than one frame and its prefix.
public struct MojoFrameReader: Sendable {
    private var buffer: [UInt8] = []

    public init() {}

    /// Appends bytes that arrived.
    public mutating func append(_ bytes: some Sequence<UInt8>) { buffer.append(contentsOf: bytes) }

    /// The next whole message, nil when more bytes are needed.
    public mutating func next() throws(MojoFrameError) -> Vmtools_Mojo_Message? {
        guard buffer.count >= 4 else { return nil }
        let size = Int(buffer[0]) | Int(buffer[1]) << 8 | Int(buffer[2]) << 16 | Int(buffer[3]) << 24
        guard size <= MojoFrame.maxMessageSize else { throw .tooLarge(size) }
        guard buffer.count >= 4 + size else { return nil }
        let message = try MojoFrame.decode(buffer[4..<4 + size])
        buffer.removeFirst(4 + size)
        return message
    }

    /// Bytes held that do not yet make a frame.
    public var pending: Int { buffer.count }
}
