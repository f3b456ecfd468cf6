import Testing

@testable import DesktopEntries

@Suite("desktop entry key files")
struct KeyFileTests {
    @Test("groups, keys, comments, blank lines, spaces around =, CRLF")
    func basics() throws {
        let file = try KeyFile(
            parsing:
                "# a comment\r\n\n[Desktop Entry]\r\nName = Editor\nType=Application\n  # indented comment\n[Other]\nName=x\n"
        )
        #expect(file.string("Name", in: "Desktop Entry") == "Editor")
        #expect(file.string("Type", in: "Desktop Entry") == "Application")
        #expect(file.string("Name", in: "Other") == "x")
        #expect(file.string("Missing", in: "Desktop Entry") == nil)
    }

    @Test("string escapes \\s \\n \\t \\r \\\\, and other backslashes kept for the next layer")
    func escapes() throws {
        let file = try KeyFile(parsing: #"[G]"# + "\n" + #"K=a\sb\nc\td\re\\f\;g\"# + "\n")
        #expect(file.string("K", in: "G") == "a b\nc\td\re\\f\\;g\\")
    }

    @Test("lists split on ; with \\; as a literal, a trailing ; and empty items dropped")
    func lists() throws {
        let file = try KeyFile(parsing: "[G]\nL=text/plain;a\\;b;;image/png;\nE=\n")
        #expect(file.list("L", in: "G") == ["text/plain", "a;b", "image/png"])
        #expect(file.list("E", in: "G") == [])
        #expect(file.list("None", in: "G") == [])
    }

    @Test("localized values fall back lang_COUNTRY@MODIFIER, lang_COUNTRY, lang@MODIFIER, lang, then none")
    func locales() throws {
        let file = try KeyFile(
            parsing: "[G]\nName=Default\nName[de]=Deutsch\nName[de_AT]=Österreich\nName[sr@latin]=Latinica\n")
        #expect(file.localizedString("Name", in: "G", locale: "de_AT.UTF-8") == "Österreich")
        #expect(file.localizedString("Name", in: "G", locale: "de_CH.UTF-8") == "Deutsch")
        #expect(file.localizedString("Name", in: "G", locale: "sr_RS@latin") == "Latinica")
        #expect(file.localizedString("Name", in: "G", locale: "fr_FR") == "Default")
        #expect(file.localizedString("Name", in: "G", locale: "C") == "Default")
        #expect(file.localizedString("Name", in: "G", locale: nil) == "Default")
        #expect(
            file.localizations("Name", in: "G")
                == ["": "Default", "de": "Deutsch", "de_AT": "Österreich", "sr@latin": "Latinica"])
    }

    @Test("booleans: only true is true")
    func booleans() throws {
        let file = try KeyFile(parsing: "[G]\nA=true\nB=false\nC=yes\nD= true \n")
        #expect(file.boolean("A", in: "G"))
        #expect(!file.boolean("B", in: "G"))
        #expect(!file.boolean("C", in: "G"))
        #expect(file.boolean("D", in: "G"))
        #expect(!file.boolean("Missing", in: "G"))
    }

    @Test("a repeated key or group merges, the later value wins")
    func repeats() throws {
        let file = try KeyFile(parsing: "[G]\nA=1\nB=2\n[H]\nX=1\n[G]\nA=3\n")
        #expect(file.string("A", in: "G") == "3")
        #expect(file.string("B", in: "G") == "2")
    }

    @Test(
        "malformed lines are errors that name the line",
        arguments: [
            ("Name=x\n", 1, "a key before the first group"),
            ("[G]\njust words\n", 2, "expected Key=Value"),
            ("[G\nA=1\n", 1, "a group header must be [Name]"),
            ("[G]\n\nKey With Space=1\n", 3, "invalid key 'Key With Space'"),
            ("[G]\nA[=1\n", 2, "invalid key 'A['"),
            ("[G]\n=1\n", 2, "invalid key ''"),
            ("[a[b]]\n", 1, "a group name may not hold [, ] or control characters"),
        ])
    func malformed(text: String, line: Int, why: String) {
        #expect(throws: DesktopEntryError.malformedLine(line, why)) { try KeyFile(parsing: text) }
    }

    @Test("a file over 1 MiB is refused, not parsed")
    func tooLarge() {
        let text = "[G]\n" + String(repeating: "A=1\n", count: (1 << 20) / 4 + 1)
        #expect(throws: DesktopEntryError.tooLarge(text.utf8.count)) { try KeyFile(parsing: text) }
    }
}
