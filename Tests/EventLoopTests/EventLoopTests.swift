import EventLoop
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Waits up to about two seconds for `condition`.
func eventually(_ condition: () -> Bool) -> Bool {
    for _ in 0..<200 {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

@Suite("EventFD")
struct EventFDTests {
    @Test("signals add up and a drain clears them")
    func counter() throws {
        let event = try EventFD()
        #expect(event.drain() == 0)
        event.signal()
        event.signal()
        #expect(event.drain() == 2)
        #expect(event.drain() == 0)
    }
}

@Suite("EventLoop")
struct EventLoopTests {
    @Test("a handler runs on the loop thread for each signal of its descriptor")
    func runsHandlers() throws {
        let loop = try EventLoop(name: "test-loop")
        let event = try EventFD()
        let runs = Atomic<Int>(0)
        let onLoopThread = Atomic<Bool>(true)
        let caller = pthread_self()
        try loop.add(event.fd) {
            event.drain()
            if pthread_equal(pthread_self(), caller) != 0 { onLoopThread.store(false, ordering: .relaxed) }
            runs.add(1, ordering: .relaxed)
            return .keep
        }
        try loop.start()
        event.signal()
        #expect(eventually { runs.load(ordering: .relaxed) == 1 })
        event.signal()
        #expect(eventually { runs.load(ordering: .relaxed) == 2 })
        loop.stop()
        let allOnLoopThread = onLoopThread.load(ordering: .relaxed)
        #expect(allOnLoopThread)
    }

    @Test("a handler that returns .remove is not called again, and others still are")
    func removal() throws {
        let loop = try EventLoop(name: "test-loop")
        let once = try EventFD()
        let other = try EventFD()
        let onceRuns = Atomic<Int>(0)
        let otherRuns = Atomic<Int>(0)
        try loop.add(once.fd) {
            onceRuns.add(1, ordering: .relaxed)
            return .remove  // not drained: a level-triggered loop would call it again if still watched
        }
        try loop.add(other.fd) {
            other.drain()
            otherRuns.add(1, ordering: .relaxed)
            return .keep
        }
        try loop.start()
        once.signal()
        #expect(eventually { onceRuns.load(ordering: .relaxed) == 1 })
        other.signal()
        #expect(eventually { otherRuns.load(ordering: .relaxed) == 1 })
        usleep(50_000)
        #expect(onceRuns.load(ordering: .relaxed) == 1)
        loop.stop()
    }

    @Test("remove() stops a handler from outside the loop")
    func removeFromOutside() throws {
        let loop = try EventLoop(name: "test-loop")
        let event = try EventFD()
        let runs = Atomic<Int>(0)
        try loop.add(event.fd) {
            event.drain()
            runs.add(1, ordering: .relaxed)
            return .keep
        }
        try loop.start()
        loop.remove(event.fd)
        event.signal()
        usleep(100_000)
        #expect(runs.load(ordering: .relaxed) == 0)
        loop.stop()
    }

    @Test("adding a descriptor that is not open fails with the call named")
    func badDescriptor() throws {
        let loop = try EventLoop(name: "test-loop")
        #expect(throws: EventLoopError.system("epoll_ctl(ADD, fd 9999)", errno: EBADF)) {
            try loop.add(9999) { .keep }
        }
    }

    @Test("stop() ends a loop that is blocked waiting")
    func stopWhileIdle() throws {
        let loop = try EventLoop(name: "test-loop")
        try loop.start()
        usleep(20_000)
        loop.stop()
    }
}

@Suite("LoopSignal")
struct LoopSignalTests {
    @Test("raised from another thread, the work runs on the loop's thread")
    func fromOutside() throws {
        let loop = try EventLoop(name: "test-loop")
        let signal = try LoopSignal()
        let runs = Atomic<Int>(0)
        let onLoop = Atomic<Bool>(true)
        try loop.add(signal) {
            if !loop.isCurrentThread { onLoop.store(false, ordering: .relaxed) }
            runs.add(1, ordering: .relaxed)
        }
        try loop.start()
        #expect(!loop.isCurrentThread)
        signal.raise()
        #expect(eventually { runs.load(ordering: .relaxed) == 1 })
        signal.raise()
        #expect(eventually { runs.load(ordering: .relaxed) == 2 })
        loop.stop()
        let allOnLoop = onLoop.load(ordering: .relaxed)
        #expect(allOnLoop)
    }

    @Test("raised on the loop's thread, the work runs after the handler, once per batch, with no eventfd write")
    func fromInside() throws {
        let loop = try EventLoop(name: "test-loop")
        let signal = try LoopSignal()
        let trigger = try EventFD()
        let order = Mutex<[String]>([])
        try loop.add(signal) { order.withLock { $0.append("work") } }
        try loop.add(trigger.fd) {
            trigger.drain()
            signal.raise()
            signal.raise()  // still queued: adds nothing
            order.withLock { $0.append("handler") }
            return .keep
        }
        try loop.start()
        trigger.signal()
        #expect(eventually { order.withLock { $0.count } == 2 })
        usleep(50_000)
        #expect(order.withLock { $0 } == ["handler", "work"])
        trigger.signal()
        #expect(eventually { order.withLock { $0.count } == 4 })
        loop.stop()
        // Raised on the loop's thread only: its eventfd was never written.
        #expect(signal.takeEventfdWakeups() == 0)
    }

    @Test("work that a signal's work raises runs before the loop serves ready descriptors again")
    func chainedSignals() throws {
        let loop = try EventLoop(name: "test-loop")
        let first = try LoopSignal()
        let second = try LoopSignal()
        let trigger = try EventFD()
        let other = try EventFD()
        let order = Mutex<[String]>([])
        try loop.add(second) { order.withLock { $0.append("second") } }
        try loop.add(first) {
            order.withLock { $0.append("first") }
            other.signal()  // ready at once: it must still wait for the second signal's work
            second.raise()
        }
        try loop.add(other.fd) {
            other.drain()
            order.withLock { $0.append("other") }
            return .keep
        }
        try loop.add(trigger.fd) {
            trigger.drain()
            order.withLock { $0.append("handler") }
            first.raise()
            return .keep
        }
        try loop.start()
        trigger.signal()
        #expect(eventually { order.withLock { $0.count } == 4 })
        loop.stop()
        #expect(order.withLock { $0 } == ["handler", "first", "second", "other"])
        #expect(first.takeEventfdWakeups() == 0 && second.takeEventfdWakeups() == 0)
    }

    @Test("work that keeps raising its own signal does not keep ready descriptors waiting")
    func reraise() throws {
        let loop = try EventLoop(name: "test-loop")
        let signal = try LoopSignal()
        let trigger = try EventFD()
        let runs = Atomic<Int>(0)
        let served = Atomic<Bool>(false)
        // It raises itself until the descriptor below is served again: without turns for
        // descriptors between rounds of signals, it would never stop.
        try loop.add(signal) {
            runs.add(1, ordering: .relaxed)
            if !served.load(ordering: .relaxed) { signal.raise() }
        }
        try loop.add(trigger.fd) {
            trigger.drain()
            if runs.load(ordering: .relaxed) == 0 {
                signal.raise()
            } else {
                served.store(true, ordering: .relaxed)
            }
            return .keep
        }
        try loop.start()
        trigger.signal()
        #expect(eventually { runs.load(ordering: .relaxed) > 0 })
        trigger.signal()
        #expect(eventually { served.load(ordering: .relaxed) })
        usleep(20_000)  // a run queued before the descriptor was served may still come
        let stopped = runs.load(ordering: .relaxed)
        usleep(20_000)
        loop.stop()
        #expect(runs.load(ordering: .relaxed) == stopped, "the signal ran on after the descriptor was served")
    }
}
