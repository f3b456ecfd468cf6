import Foundation
import Synchronization
import Testing

@testable import P9

#if canImport(Glibc)
    import Glibc
#endif

/// Holds chosen requests on the worker until the test opens the gate: Treadlink of fid 77 is the
/// "slow operation" (the fid does not exist, so it ends in EBADF once let through).
final class Gate: Sendable {
    let open = Atomic<Bool>(false)
    let waiting = Atomic<Int>(0)

    func hook(_ request: P9Request) {
        guard case .readlink(fid: 77) = request else { return }
        waiting.add(1, ordering: .relaxed)
        while !open.load(ordering: .relaxed) { usleep(1000) }
    }

    func waitForHeld(_ count: Int) {
        for _ in 0..<5000 where waiting.load(ordering: .relaxed) < count { usleep(1000) }
    }
}

extension P9TestClient {
    /// Whether a reply arrives within `milliseconds`.
    func replyPending(within milliseconds: Int32) -> Bool {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, milliseconds) > 0
    }
}

@Suite("P9 concurrency")
struct P9ConcurrencyTests {
    @Test("many tags in flight are each answered once")
    func manyTags() throws {
        let (sandbox, client) = try session()
        try sandbox.write(sandbox.share + "/f", "x")
        let tags = Set<UInt16>(100..<228)
        for tag in tags.sorted() {
            let request: P9Request =
                tag % 2 == 0
                ? .getattr(fid: 0, mask: P9.getattrBasic) : .walk(fid: 0, newFid: UInt32(tag), names: ["f"])
            try client.send(request, tag: tag)
        }
        var answered: [UInt16] = []
        for _ in tags {
            let reply = try #require(try client.receive())
            switch reply.response {
            case .getattr, .walk: answered.append(reply.tag)
            default: Issue.record("unexpected \(reply.response)")
            }
        }
        #expect(Set(answered) == tags)
        #expect(answered.count == tags.count)
    }

    @Test("a slow request does not hold up the others")
    func slowDoesNotBlock() throws {
        let gate = Gate()
        let (_, client) = try session { $0.beforeHandling = { gate.hook($0) } }
        try client.send(.readlink(fid: 77), tag: 1)
        gate.waitForHeld(1)
        for tag: UInt16 in 2...5 { try client.send(.getattr(fid: 0, mask: P9.getattrBasic), tag: tag) }
        var first: [UInt16] = []
        for _ in 2...5 { first.append(try #require(try client.receive()).tag) }
        #expect(Set(first) == [2, 3, 4, 5])
        gate.open.store(true, ordering: .relaxed)
        let slow = try #require(try client.receive())
        #expect(slow.tag == 1)
        #expect(slow.response == .error(errno: UInt32(EBADF)))
    }

    @Test("Tflush of a running request: its reply first, then Rflush")
    func flushRunning() throws {
        let gate = Gate()
        let (_, client) = try session { $0.beforeHandling = { gate.hook($0) } }
        try client.send(.readlink(fid: 77), tag: 10)
        gate.waitForHeld(1)
        try client.send(.flush(oldTag: 10), tag: 11)
        #expect(!client.replyPending(within: 200))
        gate.open.store(true, ordering: .relaxed)
        let reply = try #require(try client.receive())
        #expect(reply.tag == 10)
        let flush = try #require(try client.receive())
        #expect(flush.tag == 11)
        #expect(flush.response == .flush)
    }

    @Test("Tflush of a finished or unknown tag answers at once")
    func flushUnknown() throws {
        let (_, client) = try session()
        #expect(try client.call(.flush(oldTag: 999)) == .flush)
        try client.ok(.getattr(fid: 0, mask: 0))
        #expect(try client.call(.flush(oldTag: 1)) == .flush)
    }

    @Test("at most maxInFlight requests are in flight: the reader waits for a slot")
    func boundedInFlight() throws {
        let gate = Gate()
        let (sandbox, client) = try session {
            $0.beforeHandling = { gate.hook($0) }
            $0.maxInFlight = 2
        }
        _ = sandbox
        // Hold both slots.
        try client.send(.readlink(fid: 77), tag: 1)
        try client.send(.readlink(fid: 77), tag: 2)
        gate.waitForHeld(2)
        // The reader now waits for a slot: nothing more is read until one frees.
        try client.send(.getattr(fid: 0, mask: 0), tag: 3)
        #expect(!client.replyPending(within: 200))
        gate.open.store(true, ordering: .relaxed)
        var tags: [UInt16] = []
        for _ in 0..<3 { tags.append(try #require(try client.receive()).tag) }
        #expect(Set(tags) == [1, 2, 3])
    }

    @Test("a tag reused while in flight ends the session")
    func duplicateTag() throws {
        let gate = Gate()
        let (_, client) = try session { $0.beforeHandling = { gate.hook($0) } }
        try client.send(.readlink(fid: 77), tag: 5)
        gate.waitForHeld(1)
        try client.send(.getattr(fid: 0, mask: 0), tag: 5)
        // Let the reader see the duplicate while the first is still held.
        usleep(300_000)
        gate.open.store(true, ordering: .relaxed)
        // The held request still answers; then the session ends.
        var replies = 0
        while client.replyPending(within: 5000), try client.receive() != nil { replies += 1 }
        #expect(replies <= 1)
        for _ in 0..<200 where client.sessionEnd == nil { usleep(5000) }
        #expect(client.sessionEnd == .protocolError("tag 5 reused while in flight"))
    }

    @Test("parallel clients on one server each see their own fids")
    func parallelSessions() throws {
        let sandbox = try P9Sandbox()
        let server = try P9Server(root: sandbox.share)
        try sandbox.write(sandbox.share + "/f", "shared")
        let clients = try (0..<4).map { _ in try P9TestClient(server: server) }
        for client in clients { try client.start() }
        for (i, client) in clients.enumerated() {
            try client.walk("f", to: UInt32(10 + i))
            try client.open(UInt32(10 + i), flags: LFlags.readOnly)
        }
        for (i, client) in clients.enumerated() {
            #expect(try client.readAll(UInt32(10 + i)) == bytes("shared"))
            #expect(try client.errorOf(.getattr(fid: UInt32(10 + (i + 1) % 4), mask: 0)) == EBADF)
        }
    }
}
