// MARK: - Status

extension VirtioVsock {
    /// `"control":N,"replies":N,"connections":[...]`: packets waiting for receive buffers, and each stream's
    /// state and credit in both directions (at most `limit` streams), for `vmm status`.
    public func statusJSON(limit: Int = 32) -> String {
        state.withLock { state in
            let streams = state.connections.values.sorted { $0.fd < $1.fd }.prefix(limit).map { c in
                let phase: String
                switch c.state {
                case .awaitingConnectLine: phase = "awaiting-connect"
                case .connecting: phase = "connecting"
                case .established: phase = "established"
                }
                return
                    #"{"guest_port":\#(c.key?.guestPort ?? 0),"host_port":\#(c.key?.hostPort ?? 0),"state":"\#(phase)","peer_credit":\#(c.peerCredit),"to_host_pending":\#(c.pendingToHost.count),"unforwarded":\#(c.unforwarded),"read_ahead":\#(c.readAheadCount),"host_readable":\#(c.hostReadable),"host_closed":\#(c.hostClosedSending),"guest_shut_send":\#(c.guestStoppedSending),"guest_shut_recv":\#(c.guestStoppedReceiving)}"#
            }
            return
                #""control":\#(state.control.count),"replies":\#(state.replies.count),"connections":[\#(streams.joined(separator: ","))]"#
        }
    }
}
