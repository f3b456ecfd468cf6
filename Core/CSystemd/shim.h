// libsystemd (Debian's libsystemd-dev): sd-bus, sd-daemon and sd-journal, plus the one thing Swift
// cannot do with them: build sd_bus_vtable entries at run time (the SD_BUS_VTABLE_* macros
// initialise a union with designated initialisers and reference sd_bus_object_vtable_format).
// Everything else (message readers and appenders, sd_notify, sd_journal_sendv) is non-variadic
// and called from Swift directly.
#ifndef CSYSTEMD_SHIM_H
#define CSYSTEMD_SHIM_H

#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

// MARK: - vtable entries
// `names` (methods, signals) are the argument names, each followed by a NUL, inputs then
// outputs; "" when unnamed. Every string must outlive the vtable.

static inline sd_bus_vtable csystemd_vtable_start(uint64_t flags) {
    sd_bus_vtable entry;
    memset(&entry, 0, sizeof(entry));
    sd_bus_vtable start = SD_BUS_VTABLE_START(flags);
    entry = start;
    return entry;
}

static inline sd_bus_vtable csystemd_vtable_method(const char *member, const char *signature, const char *result,
                                                   const char *names, sd_bus_message_handler_t handler,
                                                   uint64_t flags) {
    sd_bus_vtable entry;
    memset(&entry, 0, sizeof(entry));
    entry.type = _SD_BUS_VTABLE_METHOD;
    entry.flags = flags;
    entry.x.method.member = member;
    entry.x.method.signature = signature;
    entry.x.method.result = result;
    entry.x.method.handler = handler;
    entry.x.method.offset = 0;
    entry.x.method.names = names;
    return entry;
}

static inline sd_bus_vtable csystemd_vtable_signal(const char *member, const char *signature, const char *names,
                                                   uint64_t flags) {
    sd_bus_vtable entry;
    memset(&entry, 0, sizeof(entry));
    entry.type = _SD_BUS_VTABLE_SIGNAL;
    entry.flags = flags;
    entry.x.signal.member = member;
    entry.x.signal.signature = signature;
    entry.x.signal.names = names;
    return entry;
}

/// A property; writable when `set` is not NULL.
static inline sd_bus_vtable csystemd_vtable_property(const char *member, const char *signature,
                                                     sd_bus_property_get_t get, sd_bus_property_set_t set,
                                                     uint64_t flags) {
    sd_bus_vtable entry;
    memset(&entry, 0, sizeof(entry));
    entry.type = set ? _SD_BUS_VTABLE_WRITABLE_PROPERTY : _SD_BUS_VTABLE_PROPERTY;
    entry.flags = flags;
    entry.x.property.member = member;
    entry.x.property.signature = signature;
    entry.x.property.get = get;
    entry.x.property.set = set;
    entry.x.property.offset = 0;
    return entry;
}

static inline sd_bus_vtable csystemd_vtable_end(void) {
    sd_bus_vtable entry;
    memset(&entry, 0, sizeof(entry));
    entry.type = _SD_BUS_VTABLE_END;
    return entry;
}

#endif
