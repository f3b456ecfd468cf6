import CGuestSystem
import GRPCCore
import GuestProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// GetPackageInfo from Debian's package database, through `dpkg-query` (the container's own).
struct PackageQuery: Sendable {
    var launcher: ApplicationLauncher

    /// The package that owns `path`, or the package named `name`.
    func info(_ request: Vmtools_Container_PackageInfoRequest) throws(RPCError) -> Vmtools_Container_PackageInfo {
        let name: String
        switch request.query {
        case .filePath(let path):
            guard path.hasPrefix("/") else {
                throw RPCError(code: .invalidArgument, message: "file_path must be absolute, not '\(path)'")
            }
            // "package[:arch]: /path" (or "a, b: /path" for a path two packages share).
            let output = try run(["dpkg-query", "--search", "--", path])
            guard
                let owner = output.split(separator: "\n").first?.split(separator: ":").first?
                    .split(separator: ",").first?.trimmingCharacters(in: " ")
            else { throw RPCError(code: .notFound, message: "no installed package owns \(path)") }
            name = owner
        case .packageName(let package):
            guard !package.isEmpty, package.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") }),
                !package.hasPrefix("-")
            else { throw RPCError(code: .invalidArgument, message: "'\(package)' is not a package name") }
            name = package
        case nil:
            throw RPCError(code: .invalidArgument, message: "name a file_path or a package_name")
        }
        let format =
            "${Package}\\n${Version}\\n${Architecture}\\n${Installed-Size}\\n${Homepage}\\n${binary:Summary}\\n${Description}"
        let output = try run(["dpkg-query", "--show", "--showformat=\(format)", "--", name])
        let fields = output.split(separator: "\n", maxSplits: 6, omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 6, !fields[0].isEmpty else {
            throw RPCError(code: .notFound, message: "no installed package named \(name)")
        }
        var info = Vmtools_Container_PackageInfo()
        info.packageID = "\(fields[0]);\(fields[1]);\(fields[2]);installed"
        info.size = (UInt64(fields[3]) ?? 0) * 1024
        info.projectURL = fields[4]
        info.summary = fields[5]
        // The long description: its first line repeats the summary.
        info.description_p =
            fields.count > 6
            ? fields[6].split(separator: "\n").dropFirst().map {
                $0.trimmingCharacters(in: " ") == "." ? "" : $0.trimmingCharacters(in: " ")
            }.joined(separator: "\n") : ""
        return info
    }

    /// Runs a query and returns its standard output (empty when it found nothing).
    func run(_ argv: [String]) throws(RPCError) -> String {
        guard (try? launcher.resolve(argv[0])) != nil else {
            throw RPCError(
                code: .unimplemented, message: "this container has no \(argv[0]): GetPackageInfo reads Debian packages")
        }
        var fds: [Int32] = [-1, -1]
        let made = cgs_pipe(&fds)
        guard made == 0 else {
            throw RPCError(code: .internalError, message: "pipe: \(ApplicationLauncher.reason(-made))")
        }
        defer { close(fds[0]) }
        // Not waited for: its output ends when it does, and the ChildReaper collects it.
        do { _ = try launcher.launch(argv, stdout: fds[1]) } catch {
            close(fds[1])
            throw error
        }
        close(fds[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while output.count < 1 << 20 {
            let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            output += buffer[..<n]
        }
        return String(decoding: output, as: UTF8.self)
    }
}

extension StringProtocol {
    func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
