import MojoProxy
import Testing

@Suite("mojo-proxy framing")
struct MojoFrameTests {
    static func data(
        _ handle: Int64, _ payload: [UInt8], transferring kinds: [Vmtools_Mojo_FileDescriptor.TypeEnum] = []
    )
        -> Vmtools_Mojo_Message
    {
        var message = Vmtools_Mojo_Message()
        message.data.handle = handle
        message.data.payload = .init(payload)
        message.data.transferred = kinds.enumerated().map { i, kind in
            var fd = Vmtools_Mojo_FileDescriptor()
            fd.type = kind
            fd.handle = Int64(-(i + 1))
            return fd
        }
        return message
    }

    @Test("messages survive encode and decode, also fed a byte at a time")
    func roundTrip() throws {
        var connect = Vmtools_Mojo_Message()
        connect.connectRequest.cookie = -7
        connect.connectRequest.channel = 3
        var credit = Vmtools_Mojo_Message()
        credit.credit.handle = 5
        credit.credit.bytes = 65536
        let messages = [connect, Self.data(5, Array(0..<200), transferring: [.streamSocket, .regularFile]), credit]
        var stream: [UInt8] = []
        for message in messages { stream += try MojoFrame.encode(message) }
        var reader = MojoFrameReader()
        var decoded: [Vmtools_Mojo_Message] = []
        for byte in stream {
            reader.append([byte])
            while let message = try reader.next() { decoded.append(message) }
        }
        #expect(decoded == messages)
        #expect(reader.pending == 0)
    }

    @Test("a length beyond the limit is refused before anything is buffered for it")
    func tooLarge() {
        var reader = MojoFrameReader()
        reader.append([0xFF, 0xFF, 0xFF, 0x7F])
        #expect(throws: MojoFrameError.tooLarge(0x7FFF_FFFF)) { try reader.next() }
        #expect(throws: MojoFrameError.self) {
            try MojoFrame.encode(Self.data(1, [UInt8](repeating: 0, count: MojoFrame.maxMessageSize + 1)))
        }
    }

    @Test("garbage and messages that break the rules are errors, never crashes")
    func invalid() throws {
        #expect(throws: MojoFrameError.self) { try MojoFrame.decode([0xFF, 0xFF, 0xFF]) }
        #expect(throws: MojoFrameError.invalid("no command")) { try MojoFrame.decode([]) }
        let cases: [Vmtools_Mojo_Message] = [
            Self.data(0, [1]),  // handle 0
            Self.data(1, [UInt8](repeating: 0, count: MojoFrame.maxPayload + 1)),
            Self.data(1, [], transferring: [.unknown]),
            Self.data(1, [], transferring: Array(repeating: .streamSocket, count: MojoFrame.maxTransferred + 1)),
            {
                var m = Vmtools_Mojo_Message()
                m.connectResponse.cookie = 1  // neither an errno nor a handle
                return m
            }(),
            {
                var m = Vmtools_Mojo_Message()
                m.preadRequest.cookie = 1
                m.preadRequest.handle = 2
                m.preadRequest.count = UInt64(MojoFrame.maxPayload) + 1
                return m
            }(),
            {
                var m = Vmtools_Mojo_Message()
                m.credit.handle = 1  // zero bytes
                return m
            }(),
        ]
        for message in cases {
            let body = Array(try message.serializedBytes() as [UInt8])
            #expect(throws: MojoFrameError.self, "\(message)") { try MojoFrame.decode(body) }
        }
    }
}
