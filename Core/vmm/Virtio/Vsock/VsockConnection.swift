import EventLoop

/// Identifies a stream: the port on the host side and the port on the guest side.
struct VsockConnectionKey: Hashable, Sendable {
    var hostPort: UInt32
    var guestPort: UInt32
}

/// One stream between a guest socket and a host Unix socket, with both directions' credit.
///
/// Guest → host: bytes the host socket does not take at once wait in ``pendingToHost``, which the
/// guest cannot grow past ``VirtioVsock/bufferAllocation`` (its credit). Host → guest: the device
/// reads the host socket straight into the guest's receive buffers, as much as the guest's credit
/// allows; once that credit is spent it reads at most ``VirtioVsock/readAheadBytes`` more into
/// receive buffers it keeps (``readAhead``), which go to the guest first when credit returns.
struct VsockConnection: Sendable {
    enum State: Sendable, Equatable {
        /// A host client connected to the device's socket and has not yet sent `CONNECT <port>\n`.
        case awaitingConnectLine([UInt8])
        /// REQUEST sent to the guest; waiting for its RESPONSE.
        case connecting
        case established
    }

    let fd: Int32
    var key: VsockConnectionKey?
    var state: State
    /// The host client expects `OK <port>\n` once the guest accepts (a client of the CONNECT
    /// socket does; one of a per-port listener, which speaks the stream from the first byte,
    /// does not).
    var announcesAcceptance = true
    /// What the event loop watches the host socket for (``EventLoop/Interest``'s raw value);
    /// every socket starts out watched for reading.
    var watchedInterest = EventLoop.Interest.readable.rawValue
    /// When the REQUEST was queued, and when it reached a receive buffer (host-initiated
    /// streams), for the connect timeout: a guest is timed from when it could see the request.
    var requestedAtMilliseconds: UInt64 = 0
    var deliveredAtMilliseconds: UInt64?

    // Guest → host.
    /// Bytes received from the guest (its tx_cnt as we saw it).
    var receivedFromGuest: UInt32 = 0
    /// Bytes written to the host socket (our fwd_cnt).
    var forwarded: UInt32 = 0
    /// The fwd_cnt the guest last heard from us.
    var forwardedAnnounced: UInt32 = 0
    var pendingToHost: [UInt8] = []
    var guestStoppedSending = false
    var guestStoppedReceiving = false

    // Host → guest.
    var sentToGuest: UInt32 = 0
    var peerBufferAllocation: UInt32 = 0
    var peerForwardCount: UInt32 = 0
    /// The host socket has data (or EOF) the device has not read yet.
    var hostReadable = false
    /// The host socket reported its peer's end (or a failure): from then on only a read that
    /// returns nothing, not a short one, shows that everything was read.
    var hostEndReported = false
    var hostClosedSending = false
    /// Bytes read from the host socket ahead of the guest's credit (allocated on first use).
    var readAhead: VsockReadAhead?
    /// The error a read-ahead met (0: none), reported once the bytes read before it are sent.
    var hostReadError: Int32 = 0
    /// A read-ahead met the end of the stream, which the ordinary read reports once the bytes
    /// read before it are sent.
    var hostEndReadAhead = false
    /// Bytes waiting in ``readAhead``.
    var readAheadCount: Int { readAhead?.count ?? 0 }

    init(fd: Int32, key: VsockConnectionKey?, state: State) {
        self.fd = fd
        self.key = key
        self.state = state
    }

    /// Bytes the guest can still take (its buf_alloc minus what is in flight).
    var peerCredit: UInt32 {
        let inFlight = sentToGuest &- peerForwardCount
        return inFlight >= peerBufferAllocation ? 0 : peerBufferAllocation - inFlight
    }

    /// Bytes from the guest not yet written to the host.
    var unforwarded: UInt32 { receivedFromGuest &- forwarded }

    /// Takes the credit fields of a packet from the guest.
    mutating func updatePeerCredit(_ header: VsockHeader) {
        peerBufferAllocation = header.bufferAllocation
        peerForwardCount = header.forwardCount
    }

    /// After a read of the host socket that brought `count` of `asked` bytes: a short read
    /// emptied the socket (watched edge-triggered, a later arrival is reported anew), unless its
    /// end was reported: then only a read of nothing shows all was read.
    mutating func noteRead(_ count: Int, of asked: Int) {
        if count < asked && !hostEndReported { hostReadable = false }
    }

    /// Whether the device has host bytes the guest's credit lets it send now: read ahead (the
    /// oldest packet whole), or in the host socket.
    var wantsToSendData: Bool {
        guard state == .established && !guestStoppedReceiving else { return false }
        if let readAhead, !readAhead.isEmpty {
            return readAhead.firstPacket == nil ? peerCredit > 0 : readAheadIsDeliverable  // nil: spilled bytes
        }
        return peerCredit > 0 && hostReadable && !hostClosedSending
    }

    /// Whether the oldest packet read ahead fits the guest's credit now.
    var readAheadIsDeliverable: Bool {
        guard state == .established && !guestStoppedReceiving, let held = readAhead?.firstPacket else { return false }
        return held.length <= peerCredit
    }

    /// Whether the device should read the host socket ahead of the guest's credit: the credit is
    /// spent, or bytes read ahead wait for it (new ones go after them), and the socket has bytes.
    var wantsToReadAhead: Bool {
        state == .established && hostReadable && !hostClosedSending && !guestStoppedReceiving
            && hostReadError == 0 && !hostEndReadAhead && peerBufferAllocation > 0
            && readAheadCount < VirtioVsock.readAheadBytes && readAhead?.spilledCount ?? 0 == 0
            && (peerCredit == 0 || readAheadCount > 0)
    }
}
