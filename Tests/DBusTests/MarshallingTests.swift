import Testing

@testable import DBus

/// Values, signatures and typed conversion, without a bus.
@Suite struct MarshallingTests {
    @Test func signaturesComeFromValues() {
        #expect(DBusValue.options(["a": .uint32(1)]).signature == "a{sv}")
        #expect(DBusValue.array(element: "ai", []).signature == "aai")
        #expect(DBusValue.structure([.string("x"), .array([UInt32(1)])]).signature == "(sau)")
        #expect(DBusValue.signature(of: [.string("demo"), .options([:])]) == "sa{sv}")
        #expect([String: [Int32]].dbusSignature == "a{sai}")
        #expect([String: DBusValue].dbusSignature == "a{sv}")
    }

    @Test func signatureParsing() {
        #expect(DBusSignature.completeTypes("sa{sv}u") == ["s", "a{sv}", "u"])
        #expect(DBusSignature.completeTypes("a(sa{ia(yv)})h") == ["a(sa{ia(yv)})", "h"])
        #expect(DBusSignature.completeTypes("") == [])
        for bad in ["a", "(", "()", "a{vs}", "{sv}", "a{s}", "z", "(s", "a{sv"] {
            #expect(DBusSignature.completeTypes(bad) == nil, "\(bad)")
        }
    }

    @Test func typedConversionIsStrict() throws {
        #expect(try UInt32(dbusValue: .uint32(5)) == 5)
        let error = #expect(throws: DBusError.self) { try UInt32(dbusValue: .int32(5)) }
        #expect(error?.message == "expected u, got i")
        let map: [String: [Int32]] = ["a": [1, 2]]
        #expect(try [String: [Int32]](dbusValue: map.dbusValue) == map)
        #expect(try DBusValue(dbusValue: .variant(.string("x"))) == .string("x"))
        #expect(try DBusObjectPath(dbusValue: .objectPath("/a")).rawValue == "/a")
    }

    @Test func optionsReadTypedValues() throws {
        let options = try DBusOptions(.options(["memory_mib": .string("512"), "cpus": .uint32(2)]))
        #expect(try options.require("cpus", as: UInt32.self) == 2)
        #expect(try options.optional("kernel", as: String.self) == nil)
        #expect(try options.value("kernel", default: "/vmlinuz") == "/vmlinuz")
        #expect(throws: DBusError.invalidArgs("option memory_mib must be u, got s")) {
            try options.require("memory_mib", as: UInt32.self)
        }
        #expect(throws: DBusError.invalidArgs("missing option kernel")) {
            try options.require("kernel", as: String.self)
        }
        #expect(throws: DBusError.invalidArgs("options must be a{sv}, got as")) {
            try DBusOptions(.array(element: "s", []))
        }
        #expect(
            DBusOptions(["b": .bool(true), "a": .byte(1)]).dbusValue
                == .dictionary(
                    key: "s", value: "v",
                    [
                        DBusDictEntry(key: .string("a"), value: .variant(.byte(1))),
                        DBusDictEntry(key: .string("b"), value: .variant(.bool(true))),
                    ]))
    }

    @Test func aMatchRuleQuotesItsValues() {
        #expect(
            DBusMatchRule(sender: "org.vmtools.Concierge", member: "VmStarted").description
                == "type='signal',sender='org.vmtools.Concierge',member='VmStarted'")
        #expect(DBusMatchRule(path: "/a'b").description == "type='signal',path='/a'\\''b'")
    }

    @Test func anInterfaceWithABadSignatureIsRefused() {
        var interface = DBusInterface("org.vmtools.Test")
        interface.method("Broken", in: "a{vs}") { _ in [] }
        #expect(throws: (any Error).self) { try interface.validate() }
        var named = DBusInterface("org.vmtools.Test")
        named.method("Named", in: "ss", inputNames: ["only"]) { _ in [] }
        #expect(throws: (any Error).self) { try named.validate() }
    }
}
