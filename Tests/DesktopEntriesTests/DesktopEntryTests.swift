import Testing

@testable import DesktopEntries

@Suite("desktop entries and their Exec lines")
struct DesktopEntryTests {
    static let editor = """
        [Desktop Entry]
        Type=Application
        Name=Text Editor
        Name[de]=Texteditor
        Comment=Edit text files
        Keywords=text;plain;
        Keywords[de]=Text;
        Icon=org.example.Editor
        Exec=editor --new-window %F
        TryExec=editor
        Path=/srv
        Terminal=false
        MimeType=text/plain;text/x-csrc;
        Categories=Utility;TextEditor;
        StartupWMClass=Editor
        StartupNotify=true

        [Desktop Action new]
        Name=New
        Exec=editor --new
        """

    func entry(_ text: String, id: String = "org.example.Editor.desktop") throws -> DesktopEntry {
        try DesktopEntry(parsing: text, id: id, path: "/usr/share/applications/\(id)")
    }

    func app(exec: String, extra: String = "") throws -> DesktopEntry {
        try entry("[Desktop Entry]\nType=Application\nName=App\nName[fr]=Appli\nIcon=app-icon\n\(extra)Exec=\(exec)\n")
    }

    @Test("an application's fields, localized ones by locale")
    func fields() throws {
        let editor = try entry(Self.editor)
        #expect(editor.name == "Text Editor")
        #expect(editor.name(for: "de_DE.UTF-8") == "Texteditor")
        #expect(editor.name(for: "es_ES") == "Text Editor")
        #expect(editor.comments == ["": "Edit text files"])
        #expect(editor.keywords == ["": ["text", "plain"], "de": ["Text"]])
        #expect(editor.icon == "org.example.Editor")
        #expect(editor.tryExec == "editor")
        #expect(editor.workingDirectory == "/srv")
        #expect(!editor.terminal && !editor.noDisplay && !editor.isHidden)
        #expect(editor.mimeTypes == ["text/plain", "text/x-csrc"])
        #expect(editor.categories == ["Utility", "TextEditor"])
        #expect(editor.startupWMClass == "Editor")
        #expect(editor.startupNotify)
    }

    @Test("what is not an application, or has no Name or Type, is refused with why")
    func refused() {
        #expect(throws: DesktopEntryError.notAnApplication("Link")) {
            try entry("[Desktop Entry]\nType=Link\nName=x\nURL=https://example.org\n")
        }
        #expect(throws: DesktopEntryError.missingKey("Name")) { try entry("[Desktop Entry]\nType=Application\n") }
        #expect(throws: DesktopEntryError.missingKey("Type")) { try entry("[Desktop Entry]\nName=x\n") }
        #expect(throws: DesktopEntryError.missingGroup) { try entry("[Other]\nType=Application\nName=x\n") }
    }

    @Test("%F passes every path, file:// URLs decoded, other URLs left out")
    func manyFiles() throws {
        let lines = try entry(Self.editor).commandLines(
            opening: ["/tmp/a b.txt", "file:///tmp/c%20d.txt", "https://example.org/x", "file://localhost/e"])
        #expect(lines == [["editor", "--new-window", "/tmp/a b.txt", "/tmp/c d.txt", "/e"]])
    }

    @Test("%f with several files launches once per file; with none, the code is dropped")
    func singleFile() throws {
        let app = try app(exec: "app --open %f")
        #expect(try app.commandLines(opening: ["/a", "/b"]) == [["app", "--open", "/a"], ["app", "--open", "/b"]])
        #expect(try app.commandLines() == [["app", "--open"]])
    }

    @Test("%u and %U pass URLs as given")
    func urls() throws {
        #expect(try app(exec: "app %U").commandLines(opening: ["https://a", "/b"]) == [["app", "https://a", "/b"]])
        #expect(try app(exec: "app --url=%u").commandLines(opening: ["https://a"]) == [["app", "--url=https://a"]])
    }

    @Test("%i, %c, %k, %% and the deprecated codes")
    func otherCodes() throws {
        let app = try app(exec: "app %i --title=%c --from %k 100%% %d %m")
        #expect(
            try app.commandLines(locale: "fr_FR")
                == [["app", "--icon", "app-icon", "--title=Appli", "--from", app.path, "100%"]])
    }

    @Test("quoting: double quotes group, backslash escapes inside them (after the string escapes)")
    func quoting() throws {
        // In the file: sh -c "echo \\"hi there\\" \\$HOME" → string escapes → sh -c "echo \"hi there\" \$HOME"
        let app = try app(exec: #"sh -c "echo \\"hi there\\" \\$HOME"  "two  spaces""#)
        #expect(try app.commandLines() == [["sh", "-c", "echo \"hi there\" $HOME", "two  spaces"]])
        #expect(try self.app(exec: #"app """#).commandLines() == [["app", ""]])
    }

    @Test(
        "malformed Exec lines are refused with why",
        arguments: [
            ("app \"unclosed", "a quote is not closed"),
            ("app --x=%F", "%F must stand alone as an argument"),
            ("app %z", "unknown field code %z"),
            ("app 100%", "a lone % at the end of '100%'"),
            ("%f", "it does not start with a program"),
            (#"app "\\q""#, "inside quotes only \\\", \\`, \\$ and \\\\ are escapes, not \\q"),
        ])
    func badExec(exec: String, why: String) throws {
        let app = try app(exec: exec)
        #expect(throws: DesktopEntryError.badExec(why)) { try app.commandLines(opening: ["/a"]) }
    }

    @Test("no Exec: not launchable")
    func noExec() throws {
        let app = try entry("[Desktop Entry]\nType=Application\nName=x\n")
        #expect(throws: DesktopEntryError.notLaunchable("it has no Exec line")) { try app.commandLines() }
    }
}
