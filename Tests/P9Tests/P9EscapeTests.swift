import Foundation
import Synchronization
import Testing

@testable import P9

#if canImport(Glibc)
    import Glibc
#endif

/// Every attempt to reach outside the export must fail, and `outside` (and the directory that
/// holds the export) must be exactly as before.
@Suite("P9 confinement")
struct P9EscapeTests {
    /// Runs `body` on a fresh session and checks that nothing outside the share changed.
    func confined(readOnly: Bool = false, _ body: (P9Sandbox, P9TestClient) throws -> Void) throws {
        let (sandbox, client) = try session(readOnly: readOnly)
        let before = sandbox.snapshot(sandbox.outside)
        let baseBefore = try FileManager.default.contentsOfDirectory(atPath: sandbox.base).sorted()
        try body(sandbox, client)
        #expect(sandbox.snapshot(sandbox.outside) == before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: sandbox.base).sorted() == baseBefore)
        #expect(sandbox.read(sandbox.outside + "/secret") == P9Sandbox.secret)
    }

    @Test("walking .. past the root stays at the root")
    func dotDot() throws {
        try confined { sandbox, client in
            try FileManager.default.createDirectory(atPath: sandbox.share + "/sub", withIntermediateDirectories: false)
            let root = try client.getattr(0).qid
            let qids = try client.walk("../../..", to: 1)
            #expect(qids == [root, root, root])
            #expect(try client.getattr(1).qid == root)
            #expect(try client.walk("sub/../../..", to: 2).last == root)
            #expect(try client.errorOf(.walk(fid: 0, newFid: 3, names: ["outside"])) == ENOENT)
            #expect(try client.call(.walk(fid: 0, newFid: 3, names: ["..", "outside"])).walkCount == 1)
            #expect(try client.call(.walk(fid: 0, newFid: 3, names: ["..", "..", "outside", "secret"])).walkCount == 2)
            #expect(try client.errorOf(.getattr(fid: 3, mask: 0)) == EBADF)
            #expect(try client.errorOf(.walk(fid: 0, newFid: 4, names: ["../outside"])) == EINVAL)
        }
    }

    @Test("absolute and relative symlinks pointing out are never followed", arguments: [true, false])
    func symlinksOut(absolute: Bool) throws {
        try confined { sandbox, client in
            let dirTarget = absolute ? sandbox.outside : "../outside"
            let fileTarget = absolute ? sandbox.outside + "/secret" : "../outside/secret"
            try FileManager.default.createSymbolicLink(atPath: sandbox.share + "/dir", withDestinationPath: dirTarget)
            try FileManager.default.createSymbolicLink(atPath: sandbox.share + "/file", withDestinationPath: fileTarget)
            // Through the link: the walk stops at the symlink.
            #expect(try client.call(.walk(fid: 0, newFid: 1, names: ["dir", "secret"])).walkCount == 1)
            #expect(try client.errorOf(.getattr(fid: 1, mask: 0)) == EBADF)
            // The link itself: a symlink, not its target.
            try client.walk("file", to: 2)
            let a = try client.getattr(2)
            #expect(a.qid.type == P9.qidSymlink)
            #expect(a.mode & 0o170000 == 0o120000)
            #expect(try client.errorOf(.lopen(fid: 2, flags: LFlags.readOnly)) == ELOOP)
            #expect(try client.errorOf(.lopen(fid: 2, flags: LFlags.readWrite)) == ELOOP)
            #expect(try client.errorOf(.read(fid: 2, offset: 0, count: 100)) == EBADF)
            #expect(try client.call(.readlink(fid: 2)) == .readlink(target: fileTarget))
            var truncate = P9SetAttributes()
            truncate.valid = P9.setattrSize
            #expect(try client.errorOf(.setattr(fid: 2, attributes: truncate)) == EINVAL)
            var chmod = P9SetAttributes()
            chmod.valid = P9.setattrMode
            chmod.mode = 0o777
            #expect(try client.errorOf(.setattr(fid: 2, attributes: chmod)) == EOPNOTSUPP)
            var times = P9SetAttributes()
            times.valid = P9.setattrMTime | P9.setattrMTimeSet
            times.mtimeSeconds = 12345
            try client.ok(.setattr(fid: 2, attributes: times))
            #expect(try client.errorOf(.xattrcreate(fid: 2, name: "user.x", size: 1, flags: 0)) == EPERM)
            #expect(try client.errorOf(.xattrwalk(fid: 2, newFid: 9, name: "user.x")) == ENODATA)
            // Using the directory link as a directory.
            try client.walk("dir", to: 3)
            #expect(try client.errorOf(.lopen(fid: 3, flags: LFlags.directory)) == ELOOP)
            #expect(try client.errorOf(.mkdir(dirFid: 3, name: "made", mode: 0o755, gid: 0)) == ENOTDIR)
            #expect(try client.errorOf(.lcreate(fid: 3, name: "made", flags: 1, mode: 0o644, gid: 0)) == ENOTDIR)
            #expect(try client.errorOf(.symlink(fid: 3, name: "made", target: "x", gid: 0)) == ENOTDIR)
            #expect(
                try client.errorOf(.mknod(dirFid: 3, name: "made", mode: 0o100644, major: 0, minor: 0, gid: 0))
                    == ENOTDIR)
            #expect(try client.errorOf(.unlinkat(dirFid: 3, name: "secret", flags: 0)) == ENOTDIR)
            #expect(
                try client.errorOf(.renameat(oldDirFid: 3, oldName: "secret", newDirFid: 0, newName: "stolen"))
                    == ENOTDIR)
            #expect(try client.errorOf(.link(dirFid: 3, fid: 0, name: "made")) != nil)
            // Creating over the file link does not write through it.
            try client.walk("", to: 4)
            #expect(
                try client.errorOf(
                    .lcreate(fid: 4, name: "file", flags: LFlags.writeOnly | LFlags.truncate, mode: 0o644, gid: 0))
                    == ELOOP)
            // A hard link of the link is a link to the symlink, never to the file outside.
            try client.ok(.link(dirFid: 0, fid: 2, name: "hard"))
            #expect(try #require(lstatOf(sandbox.share + "/hard")).st_mode & S_IFMT == S_IFLNK)
            #expect(try #require(lstatOf(sandbox.outside + "/secret")).st_nlink == 1)
            #expect(try client.errorOf(.link(dirFid: 0, fid: 2, name: "../hard")) == EINVAL)
            // Removing the link removes the link only.
            try client.ok(.unlinkat(dirFid: 0, name: "file", flags: 0))
            try client.ok(.remove(fid: 3))
            #expect(lstatOf(sandbox.share + "/dir") == nil)
        }
    }

    @Test("names with a slash, ., .. or NUL are refused by every creating and removing call")
    func badNames() throws {
        try confined { sandbox, client in
            try sandbox.write(sandbox.share + "/f", "f")
            try client.walk("f", to: 1)
            for name in ["../x", "..", ".", "a/b", "", "/abs", "x\u{0}y", "../outside/secret"] {
                #expect(try client.errorOf(.mkdir(dirFid: 0, name: name, mode: 0o755, gid: 0)) == EINVAL)
                #expect(try client.errorOf(.symlink(fid: 0, name: name, target: "t", gid: 0)) == EINVAL)
                #expect(
                    try client.errorOf(.mknod(dirFid: 0, name: name, mode: 0o100644, major: 0, minor: 0, gid: 0))
                        == EINVAL)
                #expect(try client.errorOf(.link(dirFid: 0, fid: 1, name: name)) == EINVAL)
                #expect(try client.errorOf(.rename(fid: 1, dirFid: 0, name: name)) == EINVAL)
                #expect(
                    try client.errorOf(.renameat(oldDirFid: 0, oldName: "f", newDirFid: 0, newName: name)) == EINVAL)
                #expect(
                    try client.errorOf(.renameat(oldDirFid: 0, oldName: name, newDirFid: 0, newName: "g")) == EINVAL)
                #expect(try client.errorOf(.unlinkat(dirFid: 0, name: name, flags: 0)) == EINVAL)
                try client.walk("", to: 2)
                #expect(try client.errorOf(.lcreate(fid: 2, name: name, flags: 1, mode: 0o644, gid: 0)) == EINVAL)
                try client.ok(.clunk(fid: 2))
            }
            #expect(sandbox.read(sandbox.share + "/f") == "f")
        }
    }

    @Test("a symlink swapped in during walks never lets a read reach outside")
    func swapRace() throws {
        try confined { sandbox, client in
            let swap = sandbox.share + "/swap"
            let parked = sandbox.share + "/parked"
            try FileManager.default.createDirectory(atPath: swap, withIntermediateDirectories: false)
            try sandbox.write(swap + "/secret", "inside")
            let stop = Atomic<Bool>(false)
            let flips = Atomic<Int>(0)
            let outside = sandbox.outside
            let flipper = Thread {
                while !stop.load(ordering: .relaxed) {
                    rename(swap, parked)
                    symlink(outside, swap)
                    usleep(50)
                    unlink(swap)
                    rename(parked, swap)
                    flips.add(1, ordering: .relaxed)
                    usleep(100)
                }
            }
            flipper.start()
            defer { stop.store(true, ordering: .relaxed) }
            var reads = 0
            var attempts = 0
            // At least 400 attempts, and on until some walks got through (a busy machine may
            // let the flipper win many in a row).
            while attempts < 400 || (reads < 10 && attempts < 20000) {
                attempts += 1
                guard case .walk(let qids) = try client.call(.walk(fid: 0, newFid: 5, names: ["swap", "secret"])) else {
                    continue
                }
                if qids.count == 2 {
                    if try client.errorOf(.lopen(fid: 5, flags: LFlags.readOnly)) == nil {
                        #expect(try client.readAll(5) == bytes("inside"))
                        reads += 1
                    }
                    try client.ok(.clunk(fid: 5))
                }
            }
            stop.store(true, ordering: .relaxed)
            while FileManager.default.fileExists(atPath: parked) { usleep(1000) }
            #expect(reads > 0)
            #expect(flips.load(ordering: .relaxed) > 0)
        }
    }

    @Test("renaming a parent during access keeps every fid inside; .. follows the walk, not the host")
    func renameParent() throws {
        try confined { sandbox, client in
            try FileManager.default.createDirectory(atPath: sandbox.share + "/a/b", withIntermediateDirectories: true)
            try sandbox.write(sandbox.share + "/a/b/file", "deep")
            let root = try client.getattr(0).qid
            try client.walk("a/b", to: 1)
            try client.ok(.renameat(oldDirFid: 0, oldName: "a", newDirFid: 0, newName: "a2"))
            #expect(try client.walk("file", to: 2, from: 1).count == 1)
            try client.open(2, flags: LFlags.readOnly)
            #expect(try client.readAll(2) == bytes("deep"))
            #expect(try client.walk("../../../..", to: 3, from: 1).last == root)
            // The host moves the directory out of the share: .. from it still ends at the root.
            try FileManager.default.moveItem(atPath: sandbox.share + "/a2", toPath: sandbox.base + "/moved")
            defer { try? FileManager.default.moveItem(atPath: sandbox.base + "/moved", toPath: sandbox.share + "/a2") }
            #expect(try client.walk("../../..", to: 4, from: 1).last == root)
            #expect(try client.errorOf(.walk(fid: 4, newFid: 5, names: ["outside"])) == ENOENT)
            try FileManager.default.moveItem(atPath: sandbox.base + "/moved", toPath: sandbox.share + "/a2")
        }
    }

    @Test("a read-only share refuses every change with EROFS and still serves reads")
    func readOnly() throws {
        try confined(readOnly: true) { sandbox, client in
            try FileManager.default.createDirectory(atPath: sandbox.share + "/d", withIntermediateDirectories: false)
            try sandbox.write(sandbox.share + "/f", "content")
            let before = sandbox.snapshot(sandbox.share)
            try client.walk("f", to: 1)
            try client.walk("d", to: 2)
            var attributes = P9SetAttributes()
            attributes.valid = P9.setattrMode | P9.setattrSize
            attributes.mode = 0o777
            let changes: [P9Request] = [
                .lopen(fid: 1, flags: LFlags.writeOnly),
                .lopen(fid: 1, flags: LFlags.readWrite),
                .lopen(fid: 1, flags: LFlags.readOnly | LFlags.truncate),
                .lcreate(fid: 2, name: "new", flags: 1, mode: 0o644, gid: 0),
                .mkdir(dirFid: 0, name: "new", mode: 0o755, gid: 0),
                .symlink(fid: 0, name: "new", target: "f", gid: 0),
                .mknod(dirFid: 0, name: "new", mode: 0o010644, major: 0, minor: 0, gid: 0),
                .link(dirFid: 0, fid: 1, name: "new"),
                .rename(fid: 1, dirFid: 2, name: "new"),
                .renameat(oldDirFid: 0, oldName: "f", newDirFid: 0, newName: "new"),
                .unlinkat(dirFid: 0, name: "f", flags: 0),
                .unlinkat(dirFid: 0, name: "d", flags: P9.unlinkRemoveDirectory),
                .setattr(fid: 1, attributes: attributes),
                .xattrcreate(fid: 1, name: "user.x", size: 1, flags: 0),
            ]
            for request in changes {
                #expect(try client.errorOf(request) == EROFS, "\(request)")
            }
            try client.walk("f", to: 3)
            #expect(try client.errorOf(.remove(fid: 3)) == EROFS)
            #expect(try client.errorOf(.getattr(fid: 3, mask: 0)) == EBADF)
            // Reads still work.
            try client.open(1, flags: LFlags.readOnly)
            #expect(try client.readAll(1) == bytes("content"))
            try client.ok(.statfs(fid: 0))
            try client.walk("", to: 4)
            try client.open(4, flags: LFlags.readOnly)
            #expect(try client.readdirAll(4).count == 4)
            #expect(sandbox.snapshot(sandbox.share) == before)
        }
    }
}
