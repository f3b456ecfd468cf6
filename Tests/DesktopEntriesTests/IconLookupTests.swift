import Foundation
import Testing

@testable import DesktopEntries

@Suite("finding application icons")
struct IconLookupTests {
    static let png: [UInt8] = IconLookup.pngSignature + [0, 0, 0, 13] + Array("IHDR".utf8)
    static let svg = Array(#"<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>"#.utf8)

    @Test("the exact size wins, then scalable, then the nearest larger, then the nearest smaller")
    func sizes() throws {
        let tree = try TemporaryTree()
        let share = "\(tree.root)/share"
        let exact = try tree.write("share/icons/hicolor/48x48/apps/app.png", Self.png)
        let scalable = try tree.write("share/icons/hicolor/scalable/apps/app.svg", Self.svg)
        let larger = try tree.write("share/icons/hicolor/64x64/apps/app.png", Self.png)
        let smaller = try tree.write("share/icons/hicolor/16x16/apps/app.png", Self.png)
        try tree.write("share/icons/hicolor/256x256/apps/app.png", Self.png)
        let lookup = IconLookup(dataDirectories: [share])
        #expect(lookup.find("app", size: 48)?.path == exact)
        #expect(lookup.find("app", size: 48)?.format == .png)
        #expect(lookup.find("app", size: 24, scale: 2)?.path == exact, "24 at scale 2 is 48 pixels")
        #expect(lookup.find("app", size: 32)?.path == scalable)
        try FileManager.default.removeItem(atPath: scalable)
        #expect(lookup.find("app", size: 32)?.path == exact, "48 is the nearest larger")
        #expect(lookup.find("app", size: 56)?.path == larger)
        #expect(lookup.find("app", size: 1024)?.path == "\(share)/icons/hicolor/256x256/apps/app.png")
        #expect(lookup.find("app", size: 8)?.path == smaller)
    }

    @Test("a named theme comes before hicolor; <context>/<size> layouts count; pixmaps come last")
    func themesAndPixmaps() throws {
        let tree = try TemporaryTree()
        let themed = try tree.write("share/icons/Papirus/apps/48x48/app.svg", Self.svg)
        try tree.write("share/icons/hicolor/48x48/apps/app.png", Self.png)
        let pixmap = try tree.write("pixmaps/other.png", Self.png)
        let lookup = IconLookup(
            dataDirectories: ["\(tree.root)/share"], themes: ["Papirus"], pixmapDirectories: ["\(tree.root)/pixmaps"])
        #expect(lookup.find("app", size: 48)?.path == themed)
        #expect(lookup.find("app.png", size: 48)?.path == themed, "an extension in Icon= is ignored")
        #expect(lookup.find("other", size: 48)?.path == pixmap)
        #expect(lookup.find("missing", size: 48) == nil)
    }

    @Test("an absolute Icon path is read as is; content that is no PNG or SVG is no icon")
    func pathsAndContent() throws {
        let tree = try TemporaryTree()
        let absolute = try tree.write("elsewhere/logo.png", Self.png)
        try tree.write("share/icons/hicolor/48x48/apps/fake.png", "GIF89a not really")
        let lookup = IconLookup(dataDirectories: ["\(tree.root)/share"], pixmapDirectories: [])
        #expect(lookup.find(absolute, size: 48)?.bytes == Self.png)
        #expect(lookup.find("fake", size: 48) == nil)
        #expect(lookup.find("../../../elsewhere/logo", size: 48) == nil, "a name with / is not a theme icon")
    }

    @Test("size folder names", arguments: [("48x48", 48), ("24x24@2", 48), ("scalable", 0)])
    func folderSizes(name: String, size: Int) {
        #expect(IconLookup.folderSize(name) == size)
    }

    @Test("folders that are no size", arguments: ["symbolic", "48x32", "48", "x48", "48x48@0", "0x0", "apps"])
    func notSizes(name: String) {
        #expect(IconLookup.folderSize(name) == nil)
    }
}
