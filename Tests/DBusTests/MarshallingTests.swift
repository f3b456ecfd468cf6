import XCTest

@testable import DBus

/// Values, signatures and typed conversion, without a bus.
final class MarshallingTests: XCTestCase {
    func testSignaturesComeFromValues() {
        XCTAssertEqual(DBusValue.options(["a": .uint32(1)]).signature, "a{sv}")
        XCTAssertEqual(DBusValue.array(element: "ai", []).signature, "aai")
        XCTAssertEqual(DBusValue.structure([.string("x"), .array([UInt32(1)])]).signature, "(sau)")
        XCTAssertEqual(DBusValue.signature(of: [.string("demo"), .options([:])]), "sa{sv}")
        XCTAssertEqual([String: [Int32]].dbusSignature, "a{sai}")
        XCTAssertEqual([String: DBusValue].dbusSignature, "a{sv}")
    }

    func testSignatureParsing() {
        XCTAssertEqual(DBusSignature.completeTypes("sa{sv}u"), ["s", "a{sv}", "u"])
        XCTAssertEqual(DBusSignature.completeTypes("a(sa{ia(yv)})h"), ["a(sa{ia(yv)})", "h"])
        XCTAssertEqual(DBusSignature.completeTypes(""), [])
        for bad in ["a", "(", "()", "a{vs}", "{sv}", "a{s}", "z", "(s", "a{sv"] {
            XCTAssertNil(DBusSignature.completeTypes(bad), bad)
        }
    }

    func testTypedConversionIsStrict() throws {
        XCTAssertEqual(try UInt32(dbusValue: .uint32(5)), 5)
        XCTAssertThrowsError(try UInt32(dbusValue: .int32(5))) { error in
            XCTAssertEqual((error as? DBusError)?.message, "expected u, got i")
        }
        let map: [String: [Int32]] = ["a": [1, 2]]
        XCTAssertEqual(try [String: [Int32]](dbusValue: map.dbusValue), map)
        XCTAssertEqual(try DBusValue(dbusValue: .variant(.string("x"))), .string("x"))
        XCTAssertEqual(try DBusObjectPath(dbusValue: .objectPath("/a")).rawValue, "/a")
    }

    func testOptionsReadTypedValues() throws {
        let options = try DBusOptions(.options(["memory_mib": .string("512"), "cpus": .uint32(2)]))
        XCTAssertEqual(try options.require("cpus", as: UInt32.self), 2)
        XCTAssertNil(try options.optional("kernel", as: String.self))
        XCTAssertEqual(try options.value("kernel", default: "/vmlinuz"), "/vmlinuz")
        XCTAssertThrowsError(try options.require("memory_mib", as: UInt32.self)) { error in
            XCTAssertEqual(error as? DBusError, .invalidArgs("option memory_mib must be u, got s"))
        }
        XCTAssertThrowsError(try options.require("kernel", as: String.self)) { error in
            XCTAssertEqual(error as? DBusError, .invalidArgs("missing option kernel"))
        }
        XCTAssertThrowsError(try DBusOptions(.array(element: "s", []))) { error in
            XCTAssertEqual(error as? DBusError, .invalidArgs("options must be a{sv}, got as"))
        }
        XCTAssertEqual(
            DBusOptions(["b": .bool(true), "a": .byte(1)]).dbusValue,
            .dictionary(
                key: "s", value: "v",
                [
                    DBusDictEntry(key: .string("a"), value: .variant(.byte(1))),
                    DBusDictEntry(key: .string("b"), value: .variant(.bool(true))),
                ]))
    }

    func testAMatchRuleQuotesItsValues() {
        XCTAssertEqual(
            DBusMatchRule(sender: "org.vmtools.Concierge", member: "VmStarted").description,
            "type='signal',sender='org.vmtools.Concierge',member='VmStarted'")
        XCTAssertEqual(DBusMatchRule(path: "/a'b").description, "type='signal',path='/a'\\''b'")
    }

    func testAnInterfaceWithABadSignatureIsRefused() {
        var interface = DBusInterface("org.vmtools.Test")
        interface.method("Broken", in: "a{vs}") { _ in [] }
        XCTAssertThrowsError(try interface.validate())
        var named = DBusInterface("org.vmtools.Test")
        named.method("Named", in: "ss", inputNames: ["only"]) { _ in [] }
        XCTAssertThrowsError(try named.validate())
    }
}
