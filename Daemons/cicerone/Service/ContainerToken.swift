/// A container's token: 32 random bytes as 64 hex digits (stronger than a UUIDv4's 122 bits),
/// from the system's generator (getrandom(2) on Linux). A fresh one for every start, never
/// reused; held by the container (its `/dev/.container_token`, 0600) and cicerone (and its
/// `running.json`, 0600), and given by GetContainerToken to those who may manage containers.
enum ContainerToken {
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
    }

    /// Compares without stopping at the first difference, so timing says nothing about a token.
    static func matches(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for i in x.indices { difference |= x[i] ^ y[i] }
        return difference == 0
    }
}
