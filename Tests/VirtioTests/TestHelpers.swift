import PCI
import Synchronization

/// Collects the values a device hands to a callback.
final class Collected<Value: Sendable>: Sendable {
    private let storage = Mutex<[Value]>([])

    func append(_ value: Value) { storage.withLock { $0.append(value) } }

    var values: [Value] { storage.withLock { $0 } }
}

/// One MSI message as a signaler received it.
struct MSIMessage: Equatable, Sendable {
    let address: UInt64
    let data: UInt32
}

/// Records every MSI message it is asked to deliver.
final class RecordingSignaler: MSISignaler {
    let messages = Collected<MSIMessage>()

    func signal(vector: Int, address: UInt64, data: UInt32) {
        messages.append(MSIMessage(address: address, data: data))
    }
}
